// The internal polling layer (DESIGN.md, layer "poller"): one small interface, one backend per
// file in this folder. The reactor (src/reactor.cpp) is its only user besides the tests.
//
// Contract shared by every backend:
//  - A source is an fd plus a caller-chosen 64-bit key, registered at most once (`add` of an fd
//    that is already registered fails with EEXIST and leaves the first registration working).
//  - `add`, `modify`, `remove` and `notify` may be called from any thread at any time, also while
//    another thread is blocked in `wait`; a change made during a `wait` takes effect in that wait
//    or, at the latest, in the next one.
//  - `wait` is called by one thread at a time (the reactor lock guarantees it; the backends keep
//    internal scratch state that relies on it). It returns when at least one event was stored,
//    when `notify` was called (since the last return of `wait`), or when the timeout has fully
//    elapsed; it never returns early on a timeout, and EINTR is retried with the remaining time,
//    never surfaced. A timeout of std::nullopt waits forever; zero does not block.
//  - `notify` is coalesced: any number of calls before a `wait` make that one `wait` return once.
//    A notification is not reported as an event.
//  - Modes: `oneshot` reports an fd once and then disarms its interest until the next `modify`;
//    `level` reports it at every `wait` while it is ready; `edge` reports it when it becomes
//    ready; `edge_oneshot` both. A backend that does not support a mode throws
//    std::system_error(ENOTSUP) from `add`/`modify`; `supports(mode)` tells beforehand.
//  - Readable means: data, EOF/hang-up (the peer closed) or an error is pending; writable means:
//    space to write, or an error/hang-up is pending (so that the operation runs and reports it).
//    On an error or hang-up, epoll may also report a direction the registration did not ask for,
//    even for Interest::none() (the kernel always reports EPOLLERR/EPOLLHUP: once in the oneshot
//    and edge modes, at every wait in level mode); the poll() backend reports only those asked.
//  - The key std::uint64_t(-1) is reserved for the backends' own use: `add`/`modify` with it
//    throw EINVAL. So do `add`/`modify`/`remove` of the backend's own notifier fds.
#pragma once

#include <async_io/detail/export.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

namespace async_io::detail {

/// How a registration reports readiness; see the contract above.
enum class PollMode : std::uint8_t { oneshot, level, edge, edge_oneshot };

/// Which directions a registration is interested in.
struct Interest {
    bool readable = false;
    bool writable = false;
    static constexpr Interest none() noexcept { return {false, false}; }
    static constexpr Interest read() noexcept { return {true, false}; }
    static constexpr Interest write() noexcept { return {false, true}; }
    static constexpr Interest both() noexcept { return {true, true}; }
    friend constexpr bool operator==(Interest, Interest) noexcept = default;
};

/// One readiness event: the key given at registration, and the directions that are ready.
/// `read_closed`/`write_closed` say that the direction is finished for good (the peer shut down
/// its writing side: EPOLLRDHUP/POLLRDHUP; hang-up: EPOLLHUP/POLLHUP; not set for a mere error):
/// every later operation in that direction returns at once (EOF or the error), so the reactor
/// keeps that direction ready from then on. They imply readable/writable respectively.
struct PollEvent {
    std::uint64_t key = 0;
    bool readable = false;
    bool writable = false;
    bool read_closed = false;
    bool write_closed = false;
};

/// The polling interface. Every method throws std::system_error on an OS error, with a message
/// that names the operation (e.g. "epoll_ctl(ADD)"), except where noted.
class Poller {
public:
    Poller() = default;
    Poller(const Poller&) = delete;
    Poller& operator=(const Poller&) = delete;
    virtual ~Poller() = default;

    /// Registers `fd` with `key`. Throws EEXIST if `fd` is already registered (the existing
    /// registration is unchanged), EPERM for a regular file on epoll, EBADF for a closed fd.
    virtual void add(int fd, std::uint64_t key, Interest interest, PollMode mode) = 0;
    /// Changes the key, interest and mode of a registered fd (re-arms a oneshot one).
    /// Throws ENOENT if `fd` is not registered.
    virtual void modify(int fd, std::uint64_t key, Interest interest, PollMode mode) = 0;
    /// Deregisters `fd`. Throws ENOENT if it is not registered.
    virtual void remove(int fd) = 0;

    /// Waits for events and stores at most `out.size()` of them in `out`; returns how many.
    /// See the contract above for when it returns. `out` must not be empty (EINVAL). Events
    /// that did not fit are not lost: they are reported by the next `wait`.
    virtual std::size_t wait(std::span<PollEvent> out,
                             std::optional<std::chrono::nanoseconds> timeout) = 0;

    /// Makes the current or next `wait` return. Any thread; never throws; async-signal-unsafe.
    virtual void notify() noexcept = 0;

    /// Whether `mode` is supported by this backend.
    virtual bool supports(PollMode mode) const noexcept = 0;

    /// The backend's name ("epoll", "poll", ...), for messages and tests.
    virtual const char* name() const noexcept = 0;
};

/// How a backend wakes a blocked `wait` from another thread.
enum class NotifierKind : std::uint8_t {
    automatic,  ///< the best the OS has (eventfd on Linux)
    pipe,       ///< a non-blocking self-pipe (forced in tests, as polling's CI does)
};

/// The backend this build of the library uses (chosen at configure time with
/// -DASYNC_IO_POLLER=auto|epoll|poll; -DASYNC_IO_POLLER_NOTIFIER=pipe forces the pipe notifier).
ASYNC_IO_API std::unique_ptr<Poller> make_default_poller();

/// The individual backends, for tests. Each is available only where the OS has it
/// (epoll: Linux/Android; poll: every POSIX system).
ASYNC_IO_API std::unique_ptr<Poller> make_epoll_poller(
    NotifierKind notifier = NotifierKind::automatic);
ASYNC_IO_API std::unique_ptr<Poller> make_poll_poller(
    NotifierKind notifier = NotifierKind::automatic);

}  // namespace async_io::detail
