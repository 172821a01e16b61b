// The epoll backend (Linux, Android).
//
// Every mode is native: oneshot = EPOLLONESHOT, edge = EPOLLET, edge_oneshot = both.
//
// Timeouts have nanosecond precision through epoll_pwait2 (Linux 5.11, glibc 2.35). Where the
// kernel refuses it (ENOSYS, or EPERM from a seccomp filter) the poller falls back, for good, to
// epoll_wait with the timeout rounded up to whole milliseconds; defining
// ASYNC_IO_POLLER_NO_EPOLL_PWAIT2 at build time forces that fallback (to test it). Either way
// `wait` loops until the deadline has really passed, so it never returns early.
//
// The notifier is registered in the epoll set under poller_reserved_key, which never reaches the
// caller. An eventfd is registered edge-triggered: every write to it is a new edge, so the
// waiter never needs to read it (mio's waker works the same way) and a notified `wait` costs no
// syscall beyond epoll's own. A pipe (NotifierKind::pipe) is level-triggered and drained, since
// a pipe that is never read fills up.
//
// Hot path of `wait` with nothing notified: one epoll_pwait2 (or epoll_wait), no allocation, and
// clock reads (vDSO, no syscall) only for a finite non-zero timeout.
#if defined(__linux__)

#include "notifier.hpp"
#include "poller.hpp"
#include "poller_internal.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <memory>

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(ASYNC_IO_POLLER_NO_EPOLL_PWAIT2)
// LLVM 16's ThreadSanitizer runtime intercepts glibc's epoll_pwait2 and, in the child of a fork()
// of a multi-threaded process, returns 0 although the kernel delivered an event (which is then
// lost: the fd is edge-triggered). Reduced: a thread running, fork(), in the child an epoll fd
// with a pipe that has data; epoll_pwait2 -> 0, a second epoll_wait -> 0 (LLVM 14's runtime and
// GCC 12's return 1). The raw syscall is not intercepted: clang TSan builds use it.
// tests/faults.cpp "after fork() the child runs on a fresh reactor..." is the test (libcxx-tsan).
#  if defined(__clang__) && defined(__has_feature)
#    if __has_feature(thread_sanitizer) && defined(SYS_epoll_pwait2) && defined(__LP64__)
#      define ASYNC_IO_EPOLL_PWAIT2_SYSCALL 1
#    endif
#  endif
#  if defined(ASYNC_IO_EPOLL_PWAIT2_SYSCALL)
#  elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#    define ASYNC_IO_EPOLL_PWAIT2_LIBC 1
#  elif defined(SYS_epoll_pwait2) && defined(__LP64__)
// No libc wrapper: the raw syscall takes a __kernel_timespec, which is timespec on LP64.
#    define ASYNC_IO_EPOLL_PWAIT2_SYSCALL 1
#  endif
#endif

namespace async_io::detail {
namespace {

constexpr std::uint32_t readable_request = EPOLLIN | EPOLLRDHUP;
constexpr std::uint32_t writable_request = EPOLLOUT;
constexpr std::uint32_t readable_report = EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP | EPOLLPRI;
constexpr std::uint32_t writable_report = EPOLLOUT | EPOLLHUP | EPOLLERR;

std::uint32_t epoll_flags(Interest interest, PollMode mode) noexcept {
    std::uint32_t flags = 0;
    if (interest.readable) flags |= readable_request;
    if (interest.writable) flags |= writable_request;
    switch (mode) {
        case PollMode::oneshot: flags |= EPOLLONESHOT; break;
        case PollMode::level: break;
        case PollMode::edge: flags |= EPOLLET; break;
        case PollMode::edge_oneshot: flags |= EPOLLET | EPOLLONESHOT; break;
    }
    return flags;
}

class EpollPoller final : public Poller {
public:
    explicit EpollPoller(NotifierKind kind) : notifier_(kind) {
        epoll_ = PollerFd(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_) throw_poller_error(errno, "epoll_create1");
        epoll_event ev{};
        ev.events = EPOLLIN | (notifier_.is_eventfd() ? EPOLLET : 0u);
        ev.data.u64 = poller_reserved_key;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, notifier_.read_fd(), &ev) < 0) {
            throw_poller_error(errno, "epoll_ctl(ADD) of the notifier");
        }
    }

    void add(int fd, std::uint64_t key, Interest interest, PollMode mode) override {
        control(EPOLL_CTL_ADD, fd, key, interest, mode, "epoll_ctl(ADD)");
    }

    void modify(int fd, std::uint64_t key, Interest interest, PollMode mode) override {
        control(EPOLL_CTL_MOD, fd, key, interest, mode, "epoll_ctl(MOD)");
    }

    void remove(int fd) override {
        if (notifier_.owns(fd)) throw_poller_error(EINVAL, "epoll_ctl(DEL)");
        epoll_event ev{};  // ignored, but kernels before 2.6.9 wanted it non-null
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &ev) < 0) {
            throw_poller_error(errno, "epoll_ctl(DEL)");
        }
    }

    std::size_t wait(std::span<PollEvent> out,
                     std::optional<std::chrono::nanoseconds> timeout) override {
        if (out.empty()) throw_poller_error(EINVAL, "epoll wait: empty event buffer");
        // Never take more events from the kernel than `out` holds: a oneshot or edge event
        // taken and then dropped would be lost. The notifier's event may take one slot.
        const int max_events = static_cast<int>(std::min(out.size(), events_.size()));
        WaitDeadline deadline(timeout);
        for (;;) {
            const int n = wait_once(max_events, deadline);
            if (n < 0) {
                if (errno != EINTR) throw_poller_error(errno, "epoll_wait");
                if (!deadline.update()) return 0;
                continue;
            }
            std::size_t count = 0;
            bool notified = false;
            for (int i = 0; i < n; ++i) {
                const epoll_event& ev = events_[static_cast<std::size_t>(i)];
                if (ev.data.u64 == poller_reserved_key) {
                    notified = true;
                    continue;
                }
                out[count++] = PollEvent{ev.data.u64, (ev.events & readable_report) != 0,
                                         (ev.events & writable_report) != 0,
                                         (ev.events & (EPOLLRDHUP | EPOLLHUP)) != 0,
                                         (ev.events & EPOLLHUP) != 0};
            }
            if (notified) {
                // Drain before clearing the flag: a `notify` that sets the flag after this
                // point writes a fresh token, which the drain cannot have eaten.
                if (!notifier_.is_eventfd()) notifier_.drain();
                // acq_rel: whatever the notifying thread did before `notify` is visible to
                // this thread's caller once `wait` returns.
                if (notified_.exchange(false, std::memory_order_acq_rel)) return count;
                // A token whose flag was already cleared: not a notification; keep waiting.
            }
            if (count > 0) return count;
            // A timeout (or a stale token): return only if the deadline has really passed.
            if (!deadline.update()) return 0;
        }
    }

    void notify() noexcept override {
        if (!notified_.exchange(true, std::memory_order_acq_rel)) notifier_.wake();
    }

    bool supports(PollMode) const noexcept override { return true; }
    const char* name() const noexcept override { return "epoll"; }

private:
    void control(int op, int fd, std::uint64_t key, Interest interest, PollMode mode,
                 const char* what) {
        check_poller_key(key, what);
        if (notifier_.owns(fd)) throw_poller_error(EINVAL, what);
        epoll_event ev{};
        ev.events = epoll_flags(interest, mode);
        ev.data.u64 = key;
        if (::epoll_ctl(epoll_.get(), op, fd, &ev) < 0) throw_poller_error(errno, what);
    }

    /// One epoll_pwait2/epoll_wait call into events_ for the time left in `deadline`.
    int wait_once(int max_events, const WaitDeadline& deadline) {
#if defined(ASYNC_IO_EPOLL_PWAIT2_LIBC) || defined(ASYNC_IO_EPOLL_PWAIT2_SYSCALL)
        if (have_pwait2_) {
            timespec ts;
            const timespec* tsp = deadline.as_timespec(ts);
#  if defined(ASYNC_IO_EPOLL_PWAIT2_LIBC)
            const int n = ::epoll_pwait2(epoll_.get(), events_.data(), max_events, tsp, nullptr);
#  else
            const int n = static_cast<int>(::syscall(SYS_epoll_pwait2, epoll_.get(),
                                                     events_.data(), max_events, tsp, nullptr, 0));
#  endif
            if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
            have_pwait2_ = false;  // no epoll_pwait2 in this kernel (or a sandbox forbids it)
        }
#endif
        return ::epoll_wait(epoll_.get(), events_.data(), max_events,
                            deadline.as_millis_rounded_up());
    }

    Notifier notifier_;
    PollerFd epoll_;
    /// Set by `notify` when it writes a token, cleared by `wait` when it sees the token: so only
    /// the first `notify` after a notified `wait` makes a syscall.
    std::atomic<bool> notified_{false};
    // Used by the waiting thread only (one at a time, by contract).
#if defined(ASYNC_IO_EPOLL_PWAIT2_LIBC) || defined(ASYNC_IO_EPOLL_PWAIT2_SYSCALL)
    bool have_pwait2_ = true;
#endif
    std::array<epoll_event, 1024> events_;
};

}  // namespace

std::unique_ptr<Poller> make_epoll_poller(NotifierKind notifier) {
    return std::make_unique<EpollPoller>(notifier);
}

}  // namespace async_io::detail

#endif  // defined(__linux__)
