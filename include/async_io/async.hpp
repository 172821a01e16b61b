// Async<T>: an awaitable wrapper over a non-blocking socket or any other pollable fd. This header
// also gives a user everything else the library has (Task, block_on, Timer, combinators,
// executors, the net types): `#include <async_io/async.hpp>` is all a program needs.
//
// fork(): the child of a process that uses this library may use it afresh. Its first use creates
// a new reactor (and the async-io thread, if it needs one), so the child never waits in the
// parent's epoll instance or takes the parent's events. What was created before the fork is the
// parent's: in the child, an Async from before (or an idle Timer, a plain socket, an OwnedFd) may
// only be destroyed, which closes the child's copy of the fd and leaves the parent's registration
// alone; tasks, awaited Timers, executors, JoinHandles and the block_on calls of other threads
// must be neither used nor destroyed there (leave them: exec, or _exit). fork() may be called
// from inside a coroutine, but the child must not go on with that task (its runner belongs to
// the parent): it may run a new block_on, then exec or _exit. The child of a multi-threaded
// process calls malloc, which needs a libc that supports it after fork (glibc and musl do).
#pragma once

#include <async_io/block_on.hpp>
#include <async_io/combinators.hpp>
#include <async_io/detail/io_awaiter.hpp>
#include <async_io/detail/reactor.hpp>
#include <async_io/detail/sys.hpp>
#include <async_io/executor.hpp>
#include <async_io/fd.hpp>
#include <async_io/io.hpp>
#include <async_io/net.hpp>
#include <async_io/task.hpp>
#include <async_io/timer.hpp>

#include <cerrno>
#include <concepts>
#include <cstddef>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <memory>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace async_io {

namespace detail {

template <class T>
concept has_native_handle = requires(const T& t) {
    { t.native_handle() } -> std::convertible_to<native_handle_type>;
};

/// How a byte stream of type T reads and writes: sockets with recv/send (send never raises
/// SIGPIPE), other fds with read/write (write made SIGPIPE-free for pipes and FIFOs).
enum class StreamKind : std::uint8_t { tcp, socket, pipe, other };

template <class T>
inline constexpr bool is_socket_stream_v =
    std::is_same_v<T, net::TcpStream> || std::is_same_v<T, net::UnixStream>;
template <class T>
inline constexpr bool is_stream_v = is_socket_stream_v<T> || std::is_same_v<T, OwnedFd>;
template <class T>
inline constexpr bool is_datagram_v = std::is_same_v<T, net::UdpSocket> || std::is_same_v<T, net::UnixDatagram>;

inline std::ptrdiff_t stream_read(StreamKind k, int fd, std::span<std::byte> b) noexcept {
    return k == StreamKind::socket || k == StreamKind::tcp ? sys_recv(fd, b, 0) : sys_read(fd, b);
}
inline std::ptrdiff_t stream_write(StreamKind k, int fd, std::span<const std::byte> b) noexcept {
    switch (k) {
        case StreamKind::tcp:
        case StreamKind::socket: return sys_send(fd, b);
        case StreamKind::pipe: return sys_write_nosigpipe(fd, b);
        case StreamKind::other: break;
    }
    return sys_write(fd, b);
}

// One read; `inq` is what TCP_INQ reported (-1: unknown).
inline std::ptrdiff_t stream_read(StreamKind k, int fd, std::span<std::byte> b, int& inq) noexcept {
    if (k == StreamKind::tcp) return sys_recv_inq(fd, b, &inq);
    inq = -1;
    return stream_read(k, fd, b);
}

struct ReadOp {
    static constexpr bool marks_read = true;
    StreamKind kind;
    int fd;
    std::span<std::byte> buf;
    int inq = -1;
    bool empty_buffer() const noexcept { return buf.empty(); }
    // TCP: TCP_INQ only while reads fill their buffers (Source::short_reads); a short read needs
    // no queue report to know it drained the socket.
    std::ptrdiff_t attempt(Source& s) noexcept {
        if (kind != StreamKind::tcp) return stream_read(kind, fd, buf, inq);
        const bool was_short = s.short_reads.load(std::memory_order_relaxed) != 0;
        const std::ptrdiff_t r = was_short ? sys_recv(fd, buf, 0) : sys_recv_inq(fd, buf, &inq);
        if (r > 0 && (static_cast<std::size_t>(r) < buf.size()) != was_short)
            s.short_reads.store(was_short ? 0 : 1, std::memory_order_relaxed);
        return r;
    }
    bool drained(std::ptrdiff_t r) const noexcept {
        return r > 0 && (static_cast<std::size_t>(r) < buf.size() || inq == 0);
    }
    std::size_t finish(std::ptrdiff_t r) const { return check_io(r, "read"); }
};
struct WriteOp {
    static constexpr bool marks_write = true;
    StreamKind kind;
    int fd;
    std::span<const std::byte> buf;
    bool empty_buffer() const noexcept { return buf.empty(); }
    std::ptrdiff_t attempt() noexcept { return stream_write(kind, fd, buf); }
    bool drained(std::ptrdiff_t r) const noexcept { return r > 0 && static_cast<std::size_t>(r) < buf.size(); }
    std::size_t finish(std::ptrdiff_t r) const { return check_io(r, "write"); }
};
struct PeekOp {
    int fd;
    std::span<std::byte> buf;
    bool stream;  // an empty buffer yields 0 at once; on a datagram socket it waits for one
    bool empty_buffer() const noexcept { return stream && buf.empty(); }
    std::ptrdiff_t attempt() noexcept { return sys_recv(fd, buf, sys_msg_peek()); }
    bool drained(std::ptrdiff_t) const noexcept { return false; }  // a peek consumes nothing
    std::size_t finish(std::ptrdiff_t r) const { return check_io(r, "peek"); }
};
// read_exact: keeps reading until the buffer is full; EOF first is an error.
struct ReadExactOp {
    static constexpr bool marks_read = true;
    StreamKind kind;
    int fd;
    std::span<std::byte> buf;
    std::size_t done = 0;
    int inq = -1;
    bool empty_buffer() const noexcept { return buf.empty(); }
    std::ptrdiff_t attempt() noexcept {
        while (done < buf.size()) {
            const std::ptrdiff_t r = stream_read(kind, fd, buf.subspan(done), inq);
            if (r == 0) return -ENODATA;  // reported as io_errc::unexpected_eof below
            if (r < 0) return r;
            done += static_cast<std::size_t>(r);
        }
        return static_cast<std::ptrdiff_t>(done);
    }
    bool drained(std::ptrdiff_t r) const noexcept { return r > 0 && inq == 0; }
    void finish(std::ptrdiff_t r) const {
        if (r == -ENODATA) throw std::system_error(make_error_code(io_errc::unexpected_eof), "read_exact");
        check_io(r, "read_exact");
    }
};
struct WriteAllOp {
    static constexpr bool marks_write = true;
    StreamKind kind;
    int fd;
    std::span<const std::byte> buf;
    std::size_t done = 0;
    bool empty_buffer() const noexcept { return buf.empty(); }
    bool drained(std::ptrdiff_t) const noexcept { return false; }
    std::ptrdiff_t attempt() noexcept {
        while (done < buf.size()) {
            const std::ptrdiff_t r = stream_write(kind, fd, buf.subspan(done));
            if (r < 0) return r;
            done += static_cast<std::size_t>(r);
        }
        return static_cast<std::ptrdiff_t>(done);
    }
    void finish(std::ptrdiff_t r) const { check_io(r, "write_all"); }
};
template <class Addr>
struct RecvFromOp {
    int fd;
    std::span<std::byte> buf;
    int flags;
    const char* what;
    Addr from{};
    bool drained(std::ptrdiff_t) const noexcept { return false; }
    std::ptrdiff_t attempt() noexcept { return sys_recvfrom(fd, buf, flags, &from); }
    std::pair<std::size_t, Addr> finish(std::ptrdiff_t r) { return {check_io(r, what), std::move(from)}; }
};
template <class Addr>
struct SendToOp {
    int fd;
    std::span<const std::byte> buf;
    const Addr* to;
    bool drained(std::ptrdiff_t) const noexcept { return false; }
    std::ptrdiff_t attempt() noexcept { return sys_sendto(fd, buf, *to); }
    std::size_t finish(std::ptrdiff_t r) const {
        if (r < 0) throw_os_error(static_cast<int>(-r), "send_to " + to->to_string());
        return static_cast<std::size_t>(r);
    }
};
struct SendOp {
    int fd;
    std::span<const std::byte> buf;
    bool drained(std::ptrdiff_t) const noexcept { return false; }
    std::ptrdiff_t attempt() noexcept { return sys_send(fd, buf); }
    std::size_t finish(std::ptrdiff_t r) const { return check_io(r, "send"); }
};
struct RecvOp {
    int fd;
    std::span<std::byte> buf;
    int flags;
    const char* what;
    bool drained(std::ptrdiff_t) const noexcept { return false; }
    std::ptrdiff_t attempt() noexcept { return sys_recv(fd, buf, flags); }
    std::size_t finish(std::ptrdiff_t r) const { return check_io(r, what); }
};

/// Why epoll refused `fd` with EPERM, for Async's message: the kinds of file it cannot poll.
inline const char* unpollable_kind(native_handle_type fd) noexcept {
    switch (fd_kind(fd)) {
        case FdKind::regular: return "regular files cannot be polled";
        case FdKind::directory: return "a directory cannot be polled";
        case FdKind::char_device: return "this character device cannot be polled";
        case FdKind::block_device: return "a block device cannot be polled";
        default: return "this kind of file cannot be polled";
    }
}

/// read_with/write_with: runs a user's function; would-block is a thrown std::system_error
/// equal to std::errc::operation_would_block (or resource_unavailable_try_again).
template <class T, class F>
struct UserOp {
    using R = std::invoke_result_t<F&, T&>;
    T* io;
    F f;
    std::optional<std::conditional_t<std::is_void_v<R>, bool, std::conditional_t<std::is_reference_v<R>, std::reference_wrapper<std::remove_reference_t<R>>, R>>> value;
    std::exception_ptr error;
    bool drained(std::ptrdiff_t) const noexcept { return false; }
    std::ptrdiff_t attempt() noexcept {
        try {
            if constexpr (std::is_void_v<R>) {
                f(*io);
                value.emplace(true);
            } else {
                value.emplace(f(*io));
            }
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::operation_would_block ||
                e.code() == std::errc::resource_unavailable_try_again)
                return -EAGAIN;
            error = std::current_exception();
        } catch (...) {
            error = std::current_exception();
        }
        return 0;
    }
    R finish(std::ptrdiff_t r) {
        if (error) std::rethrow_exception(error);
        if (r < 0) throw_os_error(static_cast<int>(-r), "wait for readiness");
        if constexpr (std::is_void_v<R>) {
            return;
        } else if constexpr (std::is_reference_v<R>) {
            return value->get();
        } else {
            return std::move(*value);
        }
    }
};

}  // namespace detail

/// An awaitable wrapper over an I/O object T that owns a pollable fd: any `net` socket type,
/// `OwnedFd` (pipe ends, FIFOs, ttys, eventfd, timerfd, inotify, signalfd), or a user's own type
/// with `native_handle()`.
///
/// - Construction puts the fd in non-blocking mode and registers it with the process's reactor
///   (created on first use), once per fd; destruction deregisters it, then destroys T (closing
///   the fd).
/// - Operations are optimistic: each tries its syscall first and waits only if it would block
///   (would-block never reaches the caller; EOF is a read of 0 bytes; writes never raise
///   SIGPIPE). While the fd is known not ready, an operation waits without any syscall.
/// - Any number of coroutines may wait on one Async at once, readers and writers alike
///   (on any threads); every waiter of a direction is woken by each event for it.
/// - Each operation's awaiter lives in the awaiting coroutine frame (no allocation). Destroying
///   the awaiting coroutine mid-wait deregisters that waiter at once; the Async stays usable.
///   The Async must outlive every operation awaiting it and must not be moved meanwhile.
/// - The awaiting coroutine is resumed on the thread that runs its task, never on the reactor's.
/// - Errors: std::system_error with the OS error, its message naming the operation.
/// - The fd closed behind the Async's back (close(2) on its number): operations that run their
///   syscall fail with bad_file_descriptor (or with whatever the number now refers to), but a
///   wait that needs an event may never end, because epoll drops a closed fd's registration
///   without reporting anything (the poll() backend reports it): cancel such a wait
///   (`timeout`). Destroying the Async afterwards is safe (tests/faults.cpp).
template <class T>
    requires detail::has_native_handle<T>
class Async {
public:
    /// Wraps `io`: sets O_NONBLOCK and registers its fd. Throws std::system_error if the fd
    /// cannot be polled: "regular files cannot be polled" (EPERM; directories and some devices
    /// likewise, each named so), a closed fd or an `io` that owns none (EBADF), an fd that
    /// another Async already holds (EEXIST: then `io` is released without closing the fd, so
    /// that the first Async keeps working).
    explicit Async(T io) : io_(std::move(io)) {
        const int fd = io_.native_handle();
        check_owns_fd(fd);
        if (const int r = detail::set_nonblocking(fd, true); r < 0) {
            detail::throw_os_error(-r, "Async: set_nonblocking(fd " + std::to_string(fd) + ")" +
                                           (r == -EBADF ? " (not an open file descriptor)" : ""));
        }
        init();
    }

    /// As the constructor, for an `io` that is already in non-blocking mode (saves a syscall).
    static Async new_nonblocking(T io) { return Async(adopt_tag{}, std::move(io)); }

    Async(Async&& o) noexcept : io_(std::move(o.io_)), source_(std::exchange(o.source_, nullptr)), kind_(o.kind_) {}
    Async& operator=(Async&& o) noexcept {
        if (this != &o) {
            deregister();
            io_ = std::move(o.io_);
            source_ = std::exchange(o.source_, nullptr);
            kind_ = o.kind_;
        }
        return *this;
    }
    ~Async() { deregister(); }

    /// The wrapped object. Using it directly for I/O is fine (it is non-blocking).
    const T& get_ref() const noexcept { return io_; }
    T& get_ref() noexcept { return io_; }
    T& get_mut() noexcept { return io_; }
    /// Deregisters and returns the object (still in non-blocking mode).
    T into_inner() && {
        deregister();
        return std::move(io_);
    }

    /// Completes when the fd is readable (see detail::ReadyAwaiter: may be a false positive).
    [[nodiscard]] detail::ReadyAwaiter readable() noexcept { return {source_, detail::Direction::read}; }
    /// Completes when the fd is writable (may be a false positive).
    [[nodiscard]] detail::ReadyAwaiter writable() noexcept { return {source_, detail::Direction::write}; }

    /// Runs `f(io)` until it does not report would-block (by throwing std::system_error equal to
    /// std::errc::operation_would_block), waiting for readability in between; yields its result
    /// or rethrows anything else it throws. `f` may run several times.
    template <class F>
        requires std::invocable<F&, T&>
    [[nodiscard]] auto read_with(F f) {
        return detail::IoAwaiter<detail::UserOp<T, F>>(source_, detail::Direction::read,
                                                       detail::UserOp<T, F>{&io_, std::move(f), {}, {}});
    }
    /// As read_with, waiting for writability.
    template <class F>
        requires std::invocable<F&, T&>
    [[nodiscard]] auto write_with(F f) {
        return detail::IoAwaiter<detail::UserOp<T, F>>(source_, detail::Direction::write,
                                                       detail::UserOp<T, F>{&io_, std::move(f), {}, {}});
    }
    /// Rust's read_with_mut/write_with_mut: the same as read_with/write_with here.
    template <class F>
    [[nodiscard]] auto read_with_mut(F f) { return read_with(std::move(f)); }
    template <class F>
    [[nodiscard]] auto write_with_mut(F f) { return write_with(std::move(f)); }

    // ---- byte streams: TcpStream, UnixStream, OwnedFd ------------------------------------------

    // An empty buffer: every stream operation below completes at once (read and write yield
    // 0), without a syscall, whatever the state of the fd.

    /// Reads at most `buf.size()` bytes; yields how many (0 = end of file, or an empty `buf`).
    [[nodiscard]] auto read(std::span<std::byte> buf) noexcept
        requires detail::is_stream_v<T>
    {
        return detail::IoAwaiter<detail::ReadOp>(source_, detail::Direction::read,
                                                 {kind_, fd(), buf});
    }
    /// Writes at most `buf.size()` bytes; yields how many.
    [[nodiscard]] auto write(std::span<const std::byte> buf) noexcept
        requires detail::is_stream_v<T>
    {
        return detail::IoAwaiter<detail::WriteOp>(source_, detail::Direction::write,
                                                  {kind_, fd(), buf});
    }
    /// Reads exactly `buf.size()` bytes; throws io_errc::unexpected_eof if the stream ends first
    /// (the bytes read so far are in `buf`).
    [[nodiscard]] auto read_exact(std::span<std::byte> buf) noexcept
        requires detail::is_stream_v<T>
    {
        return detail::IoAwaiter<detail::ReadExactOp>(source_, detail::Direction::read,
                                                      {kind_, fd(), buf});
    }
    /// Writes all of `buf`.
    [[nodiscard]] auto write_all(std::span<const std::byte> buf) noexcept
        requires detail::is_stream_v<T>
    {
        return detail::IoAwaiter<detail::WriteAllOp>(source_, detail::Direction::write,
                                                     {kind_, fd(), buf});
    }
    /// Reads until end of file, appending to `out`; yields the number of bytes appended.
    Task<std::size_t> read_to_end(std::string& out)
        requires detail::is_stream_v<T>
    {
        std::size_t total = 0;
        for (;;) {
            const std::size_t old = out.size();
            out.resize(old + std::max<std::size_t>(4096, old / 2));
            std::size_t n;
            try {
                n = co_await read(std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()) + old,
                                                       out.size() - old));
            } catch (...) {
                out.resize(old);
                throw;
            }
            out.resize(old + n);
            if (n == 0) co_return total;
            total += n;
        }
    }
    /// Reads without consuming (MSG_PEEK); yields how many bytes were copied. On a stream, an
    /// empty `buf` yields 0 at once; on a datagram socket it waits for a datagram (as recv(2)).
    [[nodiscard]] auto peek(std::span<std::byte> buf) noexcept
        requires(detail::is_socket_stream_v<T> || detail::is_datagram_v<T>)
    {
        constexpr bool stream = detail::is_socket_stream_v<T>;
        return detail::IoAwaiter<detail::PeekOp>(source_,
                                                 detail::Direction::read, {fd(), buf, stream});
    }

    // ---- listeners ------------------------------------------------------------------------------

    /// Accepts a connection: yields the new stream (registered, non-blocking, close-on-exec) and
    /// the peer's address.
    [[nodiscard]] auto accept() noexcept
        requires(std::is_same_v<T, net::TcpListener> || std::is_same_v<T, net::UnixListener>)
    {
        using Stream = std::conditional_t<std::is_same_v<T, net::TcpListener>, net::TcpStream, net::UnixStream>;
        using Addr = std::conditional_t<std::is_same_v<T, net::TcpListener>, net::SocketAddr, net::UnixSocketAddr>;
        struct AcceptOp {
            int fd;
            Addr peer{};
            bool drained(std::ptrdiff_t) const noexcept { return false; }
            std::ptrdiff_t attempt() noexcept { return detail::sys_accept(fd, true, &peer); }
            std::pair<Async<Stream>, Addr> finish(std::ptrdiff_t r) {
                detail::check_io(r, "accept");
                Stream s = Stream::from_raw_fd(static_cast<int>(r));
                return {Async<Stream>::new_nonblocking(std::move(s)), std::move(peer)};
            }
        };
        return detail::IoAwaiter<AcceptOp>(source_, detail::Direction::read, AcceptOp{fd()});
    }

    /// Rust's `incoming()`: the endless sequence of accepted connections, without their peer
    /// addresses. `co_await incoming.next()` accepts the next one (as accept() does); the
    /// listener must outlive the sequence.
    class Incoming {
    public:
        explicit Incoming(Async& listener) noexcept : listener_(&listener) {}
        auto next() -> Task<std::remove_cvref_t<decltype(std::declval<Async&>().accept().await_resume().first)>> {
            auto accepted = co_await listener_->accept();
            co_return std::move(accepted.first);
        }

    private:
        Async* listener_;
    };
    [[nodiscard]] Incoming incoming() noexcept
        requires(std::is_same_v<T, net::TcpListener> || std::is_same_v<T, net::UnixListener>)
    {
        return Incoming(*this);
    }

    /// A listener bound to `addr` (port 0: any free port, see get_ref().local_addr()).
    static Async bind(const net::SocketAddr& addr)
        requires std::is_same_v<T, net::TcpListener>
    {
        return Async(net::TcpListener::bind(addr));
    }
    static Async bind(const net::SocketAddr& addr)
        requires std::is_same_v<T, net::UdpSocket>
    {
        return Async(net::UdpSocket::bind(addr));
    }
    static Async bind(std::string_view path)
        requires(std::is_same_v<T, net::UnixListener> || std::is_same_v<T, net::UnixDatagram>)
    {
        return Async(T::bind(path));
    }
    static Async bind(const net::UnixSocketAddr& addr)
        requires(std::is_same_v<T, net::UnixListener> || std::is_same_v<T, net::UnixDatagram>)
    {
        return Async(T::bind(addr));
    }

    // ---- connecting -----------------------------------------------------------------------------

    /// Connects to `addr` without blocking the thread. Throws std::system_error from the
    /// connect (e.g. std::errc::connection_refused); never yields an unconnected stream.
    static Task<Async> connect(net::SocketAddr addr)
        requires std::is_same_v<T, net::TcpStream>
    {
        Async s(net::TcpStream::connect_nonblocking(addr));
        co_await s.finish_connect("connect " + addr.to_string());
        co_return s;
    }
    static Task<Async> connect(net::UnixSocketAddr addr)
        requires std::is_same_v<T, net::UnixStream>
    {
        Async s(net::UnixStream::connect_nonblocking(addr));
        co_await s.finish_connect("connect " + addr.to_string());
        co_return s;
    }
    static Task<Async> connect(std::string_view path)
        requires std::is_same_v<T, net::UnixStream>
    {
        return connect(net::UnixSocketAddr::from_pathname(path));
    }
    /// A connected pair of Unix sockets.
    static std::pair<Async, Async> pair()
        requires(std::is_same_v<T, net::UnixStream> || std::is_same_v<T, net::UnixDatagram>)
    {
        auto [a, b] = T::pair();
        return {Async(std::move(a)), Async(std::move(b))};
    }
    /// An unbound Unix datagram socket.
    static Async unbound()
        requires std::is_same_v<T, net::UnixDatagram>
    {
        return Async(net::UnixDatagram::unbound());
    }

    // ---- datagrams ------------------------------------------------------------------------------

    [[nodiscard]] auto send_to(std::span<const std::byte> buf, const net::SocketAddr& to) noexcept
        requires std::is_same_v<T, net::UdpSocket>
    {
        return detail::IoAwaiter<detail::SendToOp<net::SocketAddr>>(source_, detail::Direction::write, {fd(), buf, &to});
    }
    [[nodiscard]] auto send_to(std::span<const std::byte> buf, const net::UnixSocketAddr& to) noexcept
        requires std::is_same_v<T, net::UnixDatagram>
    {
        return detail::IoAwaiter<detail::SendToOp<net::UnixSocketAddr>>(source_, detail::Direction::write, {fd(), buf, &to});
    }
    /// Receives one datagram; yields its length and sender. The excess of a datagram larger
    /// than `buf` is discarded: with an empty `buf` it waits for a datagram, drops it, yields 0.
    [[nodiscard]] auto recv_from(std::span<std::byte> buf) noexcept
        requires detail::is_datagram_v<T>
    {
        return detail::IoAwaiter<detail::RecvFromOp<addr_type>>(source_, detail::Direction::read,
                                                                {fd(), buf, 0, "recv_from"});
    }
    /// As recv_from, leaving the datagram queued.
    [[nodiscard]] auto peek_from(std::span<std::byte> buf) noexcept
        requires detail::is_datagram_v<T>
    {
        return detail::IoAwaiter<detail::RecvFromOp<addr_type>>(source_, detail::Direction::read,
                                                                {fd(), buf, detail::sys_msg_peek(), "peek_from"});
    }
    /// After get_ref().connect(addr): sends to / receives from the connected peer.
    [[nodiscard]] auto send(std::span<const std::byte> buf) noexcept
        requires detail::is_datagram_v<T>
    {
        return detail::IoAwaiter<detail::SendOp>(source_, detail::Direction::write, {fd(), buf});
    }
    [[nodiscard]] auto recv(std::span<std::byte> buf) noexcept
        requires detail::is_datagram_v<T>
    {
        return detail::IoAwaiter<detail::RecvOp>(source_, detail::Direction::read, {fd(), buf, 0, "recv"});
    }

private:
    using addr_type = std::conditional_t<std::is_same_v<T, net::UnixDatagram>, net::UnixSocketAddr, net::SocketAddr>;
    struct adopt_tag {};
    Async(adopt_tag, T io) : io_(std::move(io)) {
        check_owns_fd(io_.native_handle());
        init();
    }

    static void check_owns_fd(int fd) {
        if (fd < 0) {
            detail::throw_os_error(EBADF, "Async: the object owns no file descriptor (fd " +
                                              std::to_string(fd) + ": empty or moved-from)");
        }
    }

    int fd() const noexcept { return io_.native_handle(); }

    void init() {
        const int fd = io_.native_handle();
        if constexpr (std::is_same_v<T, net::TcpStream>) {
            kind_ = detail::enable_tcp_inq(fd) ? detail::StreamKind::tcp : detail::StreamKind::socket;
        } else if constexpr (detail::is_socket_stream_v<T> || detail::is_datagram_v<T>) {
            kind_ = detail::StreamKind::socket;
        } else if constexpr (std::is_same_v<T, OwnedFd>) {
            const auto k = detail::fd_kind(fd);
            kind_ = k == detail::FdKind::socket ? detail::StreamKind::socket
                    : (k == detail::FdKind::fifo) ? detail::StreamKind::pipe
                                                  : detail::StreamKind::other;
        }
        try {
            source_ = detail::add_source(fd);
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::file_exists) {
                if constexpr (requires { (void)io_.release(); }) (void)io_.release();
            }
            if (e.code() == std::errc::operation_not_permitted && !detail::is_regular_file(fd)) {
                detail::throw_os_error(EPERM, "Async: cannot register fd " + std::to_string(fd) +
                                                  " with the reactor (" + detail::unpollable_kind(fd) +
                                                  ")");
            }
            throw;
        }
    }

    // Waits for a non-blocking connect to finish and reports its outcome.
    Task<void> finish_connect(std::string what) {
        co_await writable();
        if (const int err = detail::get_socket_error(fd()); err != 0) detail::throw_os_error(-err, what);
    }

    void deregister() noexcept {
        if (source_) detail::remove_source(std::exchange(source_, nullptr));
    }

    T io_;
    detail::Source* source_ = nullptr;
    detail::StreamKind kind_ = detail::StreamKind::other;
};

}  // namespace async_io

namespace async_io::net {

/// Resolves `host` (a name or a numeric address) to socket addresses with `port`, like
/// net::resolve, without blocking the reactor or the calling thread: the lookup (getaddrinfo,
/// which can block for seconds) runs on a thread of its own, and the awaiting coroutine is woken
/// through a pipe when it finishes.
///
/// - Completes with the addresses, or throws what net::resolve throws (std::system_error in
///   net::resolve_category() for a name that does not resolve).
/// - Destroying the awaiting coroutine cancels the wait at once; the lookup thread then finishes
///   on its own and frees what it shares with the awaiter (nothing dangles).
/// - The caller resumes on the thread that runs its task.
inline Task<std::vector<SocketAddr>> resolve_async(std::string host, std::uint16_t port) {
    struct Shared {
        std::vector<SocketAddr> addrs;
        std::exception_ptr error;
        OwnedFd signal;  // the pipe's write end, owned by the lookup thread's copy
    };
    auto [rd, wr] = async_io::pipe(true);
    Async<OwnedFd> done(std::move(rd));
    auto shared = std::make_shared<Shared>();
    shared->signal = std::move(wr);
    std::thread([shared, host = std::move(host), port] {
        try {
            shared->addrs = resolve(host, port);
        } catch (...) {
            shared->error = std::current_exception();
        }
        const std::byte b{1};
        (void)detail::sys_write_nosigpipe(shared->signal.native_handle(), {&b, 1});  // the reader may be gone
        shared->signal = OwnedFd{};  // close: a reader that went away sees nothing more
    }).detach();
    std::byte b{};
    (void)co_await done.read({&b, 1});  // the write (or the close) happens after the result
    // Moved out: the exception is then freed by the thread that handles it, never by the lookup
    // thread's late release of `shared` (which, with libc++abi's uninstrumented reference count,
    // ThreadSanitizer reported as a race with the handler reading what()).
    if (shared->error) std::rethrow_exception(std::exchange(shared->error, nullptr));
    co_return std::move(shared->addrs);
}

}  // namespace async_io::net
