// Thin, non-throwing wrappers over the socket and fd system calls that the awaitables need on
// their hot paths, plus the error helpers every layer throws with. Implemented in src/sys/ so
// that users' translation units never include <sys/socket.h> or <unistd.h>.
//
// Return convention of every sys_* function (and of set_nonblocking, get_socket_error): the
// syscall's non-negative result on success, -errno on failure. EINTR is retried inside and never
// returned (connect is the exception: see sys_connect). Sends never raise SIGPIPE (they fail
// with -EPIPE instead); plain sys_write on a pipe can (see there). None of these functions
// blocks unless the fd is in blocking mode; none of them allocates or throws.
#pragma once

#include <async_io/detail/export.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>

namespace async_io {

/// The OS handle type of every owning type in this library (`int` on POSIX, `SOCKET` later on
/// Windows).
using native_handle_type = int;

namespace net {
class SocketAddr;
class UnixSocketAddr;
}  // namespace net

namespace detail {

/// Throws std::system_error(err, std::system_category(), what): `what` names the operation
/// ("connect 127.0.0.1:1", "epoll_ctl(ADD)") and becomes the message prefix, so what() reads
/// "connect 127.0.0.1:1: Connection refused"; the code compares equal to the matching std::errc.
[[noreturn]] ASYNC_IO_API void throw_os_error(int err, const char* what);
/// As above, with a message built at run time (only ever on the error path).
[[noreturn]] ASYNC_IO_API void throw_os_error(int err, const std::string& what);
/// throw_os_error(errno, what).
[[noreturn]] ASYNC_IO_API void throw_last_os_error(const char* what);

/// True when `r`, a return of the functions below, is -EAGAIN or -EWOULDBLOCK.
ASYNC_IO_API bool is_would_block(std::ptrdiff_t r) noexcept;

/// Turns a return `r` of the functions below into a size, throwing throw_os_error(-r, what) when
/// it is negative (would-block included: it then compares equal to
/// std::errc::operation_would_block, which is what `Async::read_with` callbacks report).
inline std::size_t check_io(std::ptrdiff_t r, const char* what) {
    if (r < 0) throw_os_error(static_cast<int>(-r), what);
    return static_cast<std::size_t>(r);
}

// ---- plain fd I/O -------------------------------------------------------------------------

/// read(2): bytes read (0 = EOF, or an empty `buf`), or -errno.
ASYNC_IO_API std::ptrdiff_t sys_read(native_handle_type fd, std::span<std::byte> buf) noexcept;
/// write(2): bytes written, or -errno. Plain write(2), the cheapest: on a pipe, FIFO or socket
/// whose reader is gone it raises SIGPIPE (unless the process ignores it). Use sys_send for
/// sockets and sys_write_nosigpipe for pipes and FIFOs; sys_write suits eventfd, timerfd, ttys
/// and regular files (fd_kind tells them apart).
ASYNC_IO_API std::ptrdiff_t sys_write(native_handle_type fd, std::span<const std::byte> buf) noexcept;
/// write(2) that never raises SIGPIPE on any fd: returns -EPIPE instead. Costs two extra
/// syscalls (SIGPIPE is blocked for the calling thread around the write, and a SIGPIPE that the
/// write raised is consumed before unblocking), so prefer sys_send for sockets and sys_write for
/// fds that cannot raise SIGPIPE (see fd_kind).
ASYNC_IO_API std::ptrdiff_t sys_write_nosigpipe(native_handle_type fd,
                                                std::span<const std::byte> buf) noexcept;
/// recv(2) with `flags` (e.g. MSG_PEEK given as sys_msg_peek()): bytes received (0 = EOF on a
/// stream, or an empty datagram), or -errno.
ASYNC_IO_API std::ptrdiff_t sys_recv(native_handle_type fd, std::span<std::byte> buf, int flags) noexcept;
/// send(2) with MSG_NOSIGNAL (or SO_NOSIGPIPE, set at socket creation, where the OS has no
/// MSG_NOSIGNAL): bytes sent, or -errno (-EPIPE for a closed peer, never a signal).
ASYNC_IO_API std::ptrdiff_t sys_send(native_handle_type fd, std::span<const std::byte> buf) noexcept;
/// The value of MSG_PEEK on this OS.
ASYNC_IO_API int sys_msg_peek() noexcept;

// ---- datagrams ----------------------------------------------------------------------------

/// recvfrom(2) with `flags` (0 or sys_msg_peek()): bytes received, or -errno. On success and if
/// `from` is not null, stores the sender's address there (an IPv4/IPv6 socket always has one; on
/// an unexpected family `*from` is left unchanged).
ASYNC_IO_API std::ptrdiff_t sys_recvfrom(native_handle_type fd, std::span<std::byte> buf, int flags,
                                         net::SocketAddr* from) noexcept;
/// recvfrom(2) on a Unix-domain socket; `*from` receives the sender (possibly unnamed).
ASYNC_IO_API std::ptrdiff_t sys_recvfrom(native_handle_type fd, std::span<std::byte> buf, int flags,
                                         net::UnixSocketAddr* from) noexcept;
/// sendto(2) with MSG_NOSIGNAL: bytes sent, or -errno.
ASYNC_IO_API std::ptrdiff_t sys_sendto(native_handle_type fd, std::span<const std::byte> buf,
                                       const net::SocketAddr& to) noexcept;
/// sendto(2) to a Unix-domain address: bytes sent, or -errno.
ASYNC_IO_API std::ptrdiff_t sys_sendto(native_handle_type fd, std::span<const std::byte> buf,
                                       const net::UnixSocketAddr& to) noexcept;

// ---- connections --------------------------------------------------------------------------

/// accept4(2) with SOCK_CLOEXEC, plus SOCK_NONBLOCK when `nonblocking` (so the new socket needs
/// no further syscall before it is registered with the reactor). Returns the new fd, or -errno
/// (-EAGAIN on a non-blocking listener with no pending connection). On success and if `peer`
/// is not null, stores the peer's address there.
ASYNC_IO_API int sys_accept(native_handle_type fd, bool nonblocking, net::SocketAddr* peer) noexcept;
/// As above for a Unix-domain listener; the peer is usually unnamed.
ASYNC_IO_API int sys_accept(native_handle_type fd, bool nonblocking, net::UnixSocketAddr* peer) noexcept;

/// connect(2): 0 when connected, -EINPROGRESS when the connection proceeds asynchronously (a
/// non-blocking socket, or a blocking one interrupted by a signal: POSIX says the connection
/// then continues, so EINTR is reported as -EINPROGRESS and never retried), -EAGAIN for a
/// non-blocking Unix-domain connect whose listener's backlog is full, or another -errno.
/// Completion is signalled by writability; get_socket_error then tells the outcome.
ASYNC_IO_API int sys_connect(native_handle_type fd, const net::SocketAddr& addr) noexcept;
/// As above for a Unix-domain address.
ASYNC_IO_API int sys_connect(native_handle_type fd, const net::UnixSocketAddr& addr) noexcept;

/// getsockopt(SO_ERROR), which also clears it: 0 when no error is pending, else -errno of the
/// pending error (e.g. -ECONNREFUSED after a failed non-blocking connect), or -errno of
/// getsockopt itself (e.g. -ENOTSOCK, -EBADF).
ASYNC_IO_API int get_socket_error(native_handle_type fd) noexcept;

// ---- fd properties ------------------------------------------------------------------------

/// Sets or clears O_NONBLOCK (one ioctl(FIONBIO) where available): 0, or -errno.
ASYNC_IO_API int set_nonblocking(native_handle_type fd, bool nonblocking) noexcept;
/// 1 if O_NONBLOCK is set, 0 if not, or -errno.
ASYNC_IO_API int get_nonblocking(native_handle_type fd) noexcept;
/// Sets or clears FD_CLOEXEC: 0, or -errno.
ASYNC_IO_API int set_cloexec(native_handle_type fd, bool cloexec) noexcept;
/// 1 if FD_CLOEXEC is set, 0 if not, or -errno.
ASYNC_IO_API int get_cloexec(native_handle_type fd) noexcept;

/// What an fd refers to (fstat's file type).
enum class FdKind : std::uint8_t {
    invalid,  ///< fstat failed (closed fd)
    regular,
    directory,
    fifo,  ///< pipe or FIFO
    socket,
    char_device,  ///< tty, /dev/null
    block_device,
    other,  ///< Linux anonymous-inode fds (eventfd, timerfd, signalfd, inotify, epoll)
};
/// The kind of `fd`; FdKind::invalid if fstat fails. Linux anonymous-inode fds (eventfd,
/// timerfd, signalfd, inotify, epoll) have a zero file type and are reported as `other`.
ASYNC_IO_API FdKind fd_kind(native_handle_type fd) noexcept;
/// fd_kind(fd) == FdKind::regular (epoll refuses those with EPERM; they are always "ready").
ASYNC_IO_API bool is_regular_file(native_handle_type fd) noexcept;

/// close(2): 0 or -errno. The fd is released in every case; EINTR is reported as success
/// (Linux and POSIX-2024 close the fd anyway, so retrying could close someone else's fd).
ASYNC_IO_API int sys_close(native_handle_type fd) noexcept;

}  // namespace detail
}  // namespace async_io
