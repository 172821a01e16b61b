// The poll() backend (any POSIX system; on Linux it is selected with -DASYNC_IO_POLLER=poll).
//
// The registrations live in a table guarded by a mutex; `wait` polls a snapshot of it (an array
// of pollfd, the notifier's read end first), rebuilt only when the table changed. Modes: level
// is native, oneshot is emulated (a reported registration is disarmed until the next `modify`);
// edge and edge_oneshot are not supported (ENOTSUP): the reactor emulates edge on top of
// oneshot.
//
// Concurrency: `add`/`modify`/`remove` bump a generation counter under the mutex and, if the
// waiter is inside poll() at that moment, wake it through the notifier. The waiter then rebuilds
// its snapshot and polls again, without returning to its caller (an internal wake-up is not a
// notification). A result for a registration that changed while poll() ran is dropped (each
// registration carries the generation of its last change, the snapshot remembers it), so a
// removed fd is never reported and a re-armed oneshot one is not disarmed by a stale result.
//
// An fd closed behind the poller's back (POLLNVAL) is reported once as ready in every direction
// it is registered for, so that the caller's next operation on it runs and fails with EBADF,
// and is then disarmed like a oneshot registration: it cannot make `wait` spin.
//
// Timeouts: ppoll with a timespec where the OS has it (Linux, the BSDs), else poll with the
// timeout rounded up to whole milliseconds; either way `wait` loops until the deadline has
// really passed.
#include "notifier.hpp"
#include "poller.hpp"
#include "poller_internal.hpp"

#include <atomic>
#include <cerrno>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <poll.h>

#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
    defined(__DragonFly__)
#  define ASYNC_IO_HAVE_PPOLL 1
#endif

namespace async_io::detail {
namespace {

#if defined(POLLRDHUP)
constexpr short readable_request = POLLIN | POLLPRI | POLLRDHUP;
constexpr short readable_report = POLLIN | POLLPRI | POLLHUP | POLLERR | POLLRDHUP;
#else
constexpr short readable_request = POLLIN | POLLPRI;
constexpr short readable_report = POLLIN | POLLPRI | POLLHUP | POLLERR;
#endif
constexpr short writable_request = POLLOUT;
constexpr short writable_report = POLLOUT | POLLWRBAND | POLLHUP | POLLERR;
#if defined(POLLRDHUP)
constexpr short read_closed_report = POLLHUP | POLLRDHUP;  // the peer shut down its side
#else
constexpr short read_closed_report = POLLHUP;
#endif

short poll_events(Interest interest) noexcept {
    short events = 0;
    if (interest.readable) events = static_cast<short>(events | readable_request);
    if (interest.writable) events = static_cast<short>(events | writable_request);
    return events;
}

class PollPoller final : public Poller {
public:
    explicit PollPoller(NotifierKind kind) : notifier_(kind) {
        snapshot_.push_back(pollfd{notifier_.read_fd(), POLLIN, 0});
        snapshot_stamps_.push_back(0);
    }

    void add(int fd, std::uint64_t key, Interest interest, PollMode mode) override {
        constexpr const char* what = "poll: add";
        check(fd, key, mode, what);
        // poll() reports a bad fd only as POLLNVAL at wait time; tell the caller now.
        if (::fcntl(fd, F_GETFD) < 0) throw_poller_error(errno, what);
        std::lock_guard lock(mutex_);
        const auto [it, inserted] = table_.try_emplace(fd, Registration{key, interest, mode, 0});
        if (!inserted) throw_poller_error(EEXIST, what);
        it->second.stamp = changed_locked();
    }

    void modify(int fd, std::uint64_t key, Interest interest, PollMode mode) override {
        constexpr const char* what = "poll: modify";
        check(fd, key, mode, what);
        std::lock_guard lock(mutex_);
        const auto it = table_.find(fd);
        if (it == table_.end()) throw_poller_error(ENOENT, what);
        it->second = Registration{key, interest, mode, changed_locked()};
    }

    void remove(int fd) override {
        constexpr const char* what = "poll: remove";
        if (notifier_.owns(fd)) throw_poller_error(EINVAL, what);
        std::lock_guard lock(mutex_);
        if (table_.erase(fd) == 0) throw_poller_error(ENOENT, what);
        changed_locked();
    }

    std::size_t wait(std::span<PollEvent> out,
                     std::optional<std::chrono::nanoseconds> timeout) override {
        if (out.empty()) throw_poller_error(EINVAL, "poll: wait with an empty event buffer");
        WaitDeadline deadline(timeout);
        for (;;) {
            {
                std::lock_guard lock(mutex_);
                if (snapshot_generation_ != generation_) rebuild_snapshot_locked();
                in_poll_ = true;
            }
            const int n = poll_once(deadline);
            const int poll_errno = errno;

            std::size_t count = 0;
            bool notified = false;
            {
                std::lock_guard lock(mutex_);
                in_poll_ = false;
                // A wake from add/modify/remove was written under the mutex, so it is in the fd
                // by now even if poll() returned before it arrived.
                if ((n > 0 && snapshot_[0].revents != 0) || wake_pending_) {
                    wake_pending_ = false;
                    // The drain may eat a user's token too: clear the flag after it (see
                    // epoll.cpp), and report the notification.
                    notifier_.drain();
                    notified = notified_.exchange(false, std::memory_order_acq_rel);
                }
                if (n > 0) count = collect_locked(out);
            }
            if (n < 0 && poll_errno != EINTR) throw_poller_error(poll_errno, "poll");
            if (count > 0 || notified) return count;
            if (!deadline.update()) return 0;
        }
    }

    void notify() noexcept override {
        if (!notified_.exchange(true, std::memory_order_acq_rel)) notifier_.wake();
    }

    bool supports(PollMode mode) const noexcept override {
        return mode == PollMode::oneshot || mode == PollMode::level;
    }
    const char* name() const noexcept override { return "poll"; }

private:
    struct Registration {
        std::uint64_t key;
        Interest interest;  // none once a oneshot registration has fired
        PollMode mode;
        std::uint64_t stamp;  // the generation of its last add/modify
    };

    void check(int fd, std::uint64_t key, PollMode mode, const char* what) const {
        check_poller_key(key, what);
        if (!supports(mode)) throw_poller_error(ENOTSUP, what);
        if (notifier_.owns(fd)) throw_poller_error(EINVAL, what);
    }

    /// Records a change to the table; wakes the waiter if it is polling the old snapshot.
    std::uint64_t changed_locked() noexcept {
        ++generation_;
        if (in_poll_ && !wake_pending_) {
            wake_pending_ = true;
            notifier_.wake();
        }
        return generation_;
    }

    void rebuild_snapshot_locked() {
        snapshot_.resize(1);  // keeps the notifier
        snapshot_stamps_.resize(1);
        for (const auto& [fd, reg] : table_) {
            const short events = poll_events(reg.interest);
            if (events == 0) continue;  // poll() would still report POLLHUP/POLLERR/POLLNVAL
            snapshot_.push_back(pollfd{fd, events, 0});
            snapshot_stamps_.push_back(reg.stamp);
        }
        snapshot_generation_ = generation_;
    }

    int poll_once(const WaitDeadline& deadline) noexcept {
        const auto nfds = static_cast<nfds_t>(snapshot_.size());
#if defined(ASYNC_IO_HAVE_PPOLL)
        timespec ts;
        return ::ppoll(snapshot_.data(), nfds, deadline.as_timespec(ts), nullptr);
#else
        return ::poll(snapshot_.data(), nfds, deadline.as_millis_rounded_up());
#endif
    }

    /// Converts the snapshot's results into `out` and disarms what must be disarmed.
    std::size_t collect_locked(std::span<PollEvent> out) {
        std::size_t count = 0;
        for (std::size_t i = 1; i < snapshot_.size() && count < out.size(); ++i) {
            pollfd& p = snapshot_[i];
            if (p.revents == 0 || p.fd < 0) continue;
            const auto it = table_.find(p.fd);
            // Removed or changed while poll() ran: the next round polls its new state.
            if (it == table_.end() || it->second.stamp != snapshot_stamps_[i]) continue;
            Registration& reg = it->second;
            PollEvent ev{reg.key, false, false};
            bool disarm = reg.mode == PollMode::oneshot;
            if ((p.revents & POLLNVAL) != 0) {
                ev.readable = reg.interest.readable;
                ev.writable = reg.interest.writable;
                disarm = true;
            } else {
                ev.readable = reg.interest.readable && (p.revents & readable_report) != 0;
                ev.writable = reg.interest.writable && (p.revents & writable_report) != 0;
                ev.read_closed = ev.readable && (p.revents & read_closed_report) != 0;
                ev.write_closed = ev.writable && (p.revents & POLLHUP) != 0;
            }
            if (!ev.readable && !ev.writable) continue;
            out[count++] = ev;
            if (disarm) {
                reg.interest = Interest::none();
                p.fd = -1;  // the snapshot stays in step with the table without a rebuild
            }
        }
        return count;
    }

    Notifier notifier_;
    /// Set by `notify` when it writes a token, cleared by `wait` after draining the notifier.
    std::atomic<bool> notified_{false};

    std::mutex mutex_;
    // Guarded by mutex_.
    std::unordered_map<int, Registration> table_;
    std::uint64_t generation_ = 0;
    bool in_poll_ = false;       // the waiter is inside poll() with its snapshot
    bool wake_pending_ = false;  // a wake for a change has been written and not yet drained

    // Owned by the waiting thread (one at a time, by contract); read and written under mutex_
    // except during poll() itself, when no one else touches them.
    std::vector<pollfd> snapshot_;
    std::vector<std::uint64_t> snapshot_stamps_;
    std::uint64_t snapshot_generation_ = 0;
};

}  // namespace

std::unique_ptr<Poller> make_poll_poller(NotifierKind notifier) {
    return std::make_unique<PollPoller>(notifier);
}

}  // namespace async_io::detail
