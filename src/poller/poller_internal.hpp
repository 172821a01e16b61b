// Pieces shared by the POSIX backends (epoll.cpp, poll.cpp): an owning fd, the error helper, the
// reserved key and the deadline arithmetic of `Poller::wait`. Internal to src/poller/.
#pragma once

#include "poller.hpp"

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <system_error>

#include <time.h>
#include <unistd.h>

namespace async_io::detail {

/// The key a backend gives its own notifier fd. Users may not register it (EINVAL): epoll
/// reports only the key of an event, so this is how the notifier's events are told apart.
inline constexpr std::uint64_t poller_reserved_key = UINT64_MAX;

/// Throws std::system_error(err) whose message names the failed operation ("epoll_ctl(ADD)").
[[noreturn]] inline void throw_poller_error(int err, const char* what) {
    throw std::system_error(err, std::system_category(), what);
}

inline void check_poller_key(std::uint64_t key, const char* what) {
    if (key == poller_reserved_key) throw_poller_error(EINVAL, what);
}

/// An owned file descriptor, closed on destruction. Move-only.
class PollerFd {
public:
    PollerFd() noexcept = default;
    explicit PollerFd(int fd) noexcept : fd_(fd) {}
    PollerFd(PollerFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    PollerFd& operator=(PollerFd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = other.fd_;
            other.fd_ = -1;
        }
        return *this;
    }
    ~PollerFd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    void reset() noexcept {
        // close() must not be retried on EINTR on Linux (the fd is gone either way).
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int fd_ = -1;
};

/// The time left of one `wait` call, across the retries a backend makes (EINTR, internal
/// wake-ups, a kernel timeout that came back a hair early): it reads the clock only for a
/// finite, non-zero timeout, once at the start and once per retry. A timeout too large to be
/// represented as a steady_clock deadline is treated as infinite.
class WaitDeadline {
public:
    explicit WaitDeadline(std::optional<std::chrono::nanoseconds> timeout) noexcept {
        using std::chrono::steady_clock;
        if (!timeout) return;
        if (*timeout <= std::chrono::nanoseconds::zero()) {
            kind_ = Kind::zero;
            return;
        }
        const auto now = steady_clock::now();
        const auto span = std::chrono::ceil<steady_clock::duration>(*timeout);
        if (span > steady_clock::time_point::max() - now) return;  // too far: infinite
        kind_ = Kind::finite;
        left_ = *timeout;
        deadline_ = now + span;
    }

    bool is_infinite() const noexcept { return kind_ == Kind::infinite; }

    /// Recomputes the time left. Returns false when none is left (always for a zero timeout,
    /// never for an infinite one).
    bool update() noexcept {
        if (kind_ != Kind::finite) return kind_ == Kind::infinite;
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline_) return false;
        left_ = deadline_ - now;
        return true;
    }

    /// The time left as a timespec stored in `ts`, or nullptr for an infinite wait.
    const timespec* as_timespec(timespec& ts) const noexcept {
        if (kind_ == Kind::infinite) return nullptr;
        const auto ns = left_.count();
        ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        return &ts;
    }

    /// The time left in whole milliseconds, rounded up (so that a wait never ends early) and
    /// capped at INT_MAX (the caller then waits again); -1 for an infinite wait.
    int as_millis_rounded_up() const noexcept {
        if (kind_ == Kind::infinite) return -1;
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left_).count();
        return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
    }

private:
    enum class Kind : std::uint8_t { infinite, zero, finite };
    Kind kind_ = Kind::infinite;
    std::chrono::nanoseconds left_{0};
    std::chrono::steady_clock::time_point deadline_{};
};

}  // namespace async_io::detail
