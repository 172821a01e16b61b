// Notifier: the fd a backend polls alongside the user's fds so that another thread can wake a
// blocked `wait`. Internal to src/poller/.
//
// Contract:
//  - `wake()` may be called from any thread; it never blocks, never throws, and never fails in a
//    way that loses a wake-up (a full pipe is already readable; a saturated eventfd is reset
//    and written again).
//  - `drain()` is called by the waiting thread only, after the fd was seen readable (or after a
//    wake it knows was written): it consumes every pending token.
//  - The backends coalesce wakes with an atomic flag of their own (see `Poller::notify`), so
//    at most a few tokens are ever pending.
#pragma once

#include "poller.hpp"
#include "poller_internal.hpp"

namespace async_io::detail {

class Notifier {
public:
    /// Creates an eventfd (NotifierKind::automatic on Linux) or a self-pipe, both non-blocking
    /// and close-on-exec. Throws std::system_error.
    explicit Notifier(NotifierKind kind);

    /// The fd that becomes readable after `wake()`.
    int read_fd() const noexcept { return read_.get(); }
    /// Whether this is an eventfd: a counter that a token never "fills", so that an
    /// edge-triggered registration needs no `drain()` (see epoll.cpp).
    bool is_eventfd() const noexcept { return !write_; }
    /// Whether `fd` is one of the notifier's own fds (users may not register those).
    bool owns(int fd) const noexcept { return fd == read_.get() || (write_ && fd == write_.get()); }

    void wake() noexcept;
    void drain() noexcept;

private:
    PollerFd read_;
    PollerFd write_;  // empty for an eventfd (read_ is then also the write end)
};

}  // namespace async_io::detail
