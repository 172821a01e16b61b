// UnixStream, UnixListener and UnixDatagram.
#include "net/socket_ops.hpp"

#include <cerrno>

#include <sys/socket.h>
#include <sys/un.h>

namespace async_io::net {

namespace {

/// socket(AF_UNIX, type) bound to `addr`; throws std::system_error ("bind <addr>").
OwnedFd bound_socket(int type, const UnixSocketAddr& addr) {
    const int fd = detail::open_socket(AF_UNIX, type, false);
    if (fd < 0) detail::throw_addr_error(-fd, "bind", addr);
    OwnedFd owned = OwnedFd::from_raw_fd(fd);
    if (::bind(fd, static_cast<const sockaddr*>(addr.data()), static_cast<socklen_t>(addr.size())) != 0) {
        detail::throw_addr_error(errno, "bind", addr);
    }
    return owned;
}

}  // namespace

// ---- UnixStream ---------------------------------------------------------------------------

UnixStream UnixStream::from_raw_fd(native_handle_type fd) { return UnixStream(OwnedFd::from_raw_fd(fd)); }

UnixStream UnixStream::connect(std::string_view path) {
    return connect(UnixSocketAddr::from_pathname(path));
}

UnixStream UnixStream::connect(const UnixSocketAddr& addr) {
    const int fd = detail::open_socket(AF_UNIX, SOCK_STREAM, false);
    if (fd < 0) detail::throw_addr_error(-fd, "connect", addr);
    UnixStream stream(OwnedFd::from_raw_fd(fd));
    int r = detail::sys_connect(fd, addr);
    if (r == -EINPROGRESS) r = detail::wait_connect(fd);
    if (r < 0) detail::throw_addr_error(-r, "connect", addr);
    return stream;
}

UnixStream UnixStream::connect_nonblocking(const UnixSocketAddr& addr) {
    const int fd = detail::open_socket(AF_UNIX, SOCK_STREAM, true);
    if (fd < 0) detail::throw_addr_error(-fd, "connect", addr);
    UnixStream stream(OwnedFd::from_raw_fd(fd));
    const int r = detail::sys_connect(fd, addr);
    if (r < 0 && r != -EINPROGRESS && !detail::is_would_block(r)) {
        detail::throw_addr_error(-r, "connect", addr);
    }
    return stream;
}

UnixStream UnixStream::connect_nonblocking(std::string_view path) {
    return connect_nonblocking(UnixSocketAddr::from_pathname(path));
}

std::pair<UnixStream, UnixStream> UnixStream::pair() {
    auto [a, b] = detail::open_socket_pair(SOCK_STREAM);
    return {UnixStream(std::move(a)), UnixStream(std::move(b))};
}

std::size_t UnixStream::read(std::span<std::byte> buf) {
    if (buf.empty()) return 0;  // recv(2) of 0 bytes would wait for data
    return detail::check_io(detail::sys_recv(native_handle(), buf, 0), "read");
}

std::size_t UnixStream::write(std::span<const std::byte> buf) {
    return detail::check_io(detail::sys_send(native_handle(), buf), "write");
}

std::size_t UnixStream::peek(std::span<std::byte> buf) {
    if (buf.empty()) return 0;
    return detail::check_io(detail::sys_recv(native_handle(), buf, MSG_PEEK), "peek");
}

void UnixStream::shutdown(Shutdown how) { detail::shutdown_socket(native_handle(), how); }

UnixSocketAddr UnixStream::local_addr() const { return detail::local_unix_addr(native_handle()); }

UnixSocketAddr UnixStream::peer_addr() const { return detail::peer_unix_addr(native_handle()); }

// ---- UnixListener -------------------------------------------------------------------------

UnixListener UnixListener::from_raw_fd(native_handle_type fd) {
    return UnixListener(OwnedFd::from_raw_fd(fd));
}

UnixListener UnixListener::bind(std::string_view path) {
    return bind(UnixSocketAddr::from_pathname(path));
}

UnixListener UnixListener::bind(const UnixSocketAddr& addr) {
    UnixListener listener(bound_socket(SOCK_STREAM, addr));
    if (::listen(listener.native_handle(), SOMAXCONN) != 0) {
        detail::throw_addr_error(errno, "listen", addr);
    }
    return listener;
}

std::pair<UnixStream, UnixSocketAddr> UnixListener::accept() {
    UnixSocketAddr peer;
    const int fd = detail::sys_accept(native_handle(), false, &peer);
    if (fd < 0) detail::throw_os_error(-fd, "accept");
    return {UnixStream(OwnedFd::from_raw_fd(fd)), peer};
}

std::optional<std::pair<UnixStream, UnixSocketAddr>> UnixListener::try_accept(bool nonblocking) {
    UnixSocketAddr peer;
    const int fd = detail::sys_accept(native_handle(), nonblocking, &peer);
    if (fd < 0) {
        if (detail::is_would_block(fd)) return std::nullopt;
        detail::throw_os_error(-fd, "accept");
    }
    return std::pair{UnixStream(OwnedFd::from_raw_fd(fd)), peer};
}

UnixSocketAddr UnixListener::local_addr() const { return detail::local_unix_addr(native_handle()); }

// ---- UnixDatagram -------------------------------------------------------------------------

UnixDatagram UnixDatagram::from_raw_fd(native_handle_type fd) {
    return UnixDatagram(OwnedFd::from_raw_fd(fd));
}

UnixDatagram UnixDatagram::bind(std::string_view path) {
    return bind(UnixSocketAddr::from_pathname(path));
}

UnixDatagram UnixDatagram::bind(const UnixSocketAddr& addr) {
    return UnixDatagram(bound_socket(SOCK_DGRAM, addr));
}

UnixDatagram UnixDatagram::unbound() {
    const int fd = detail::open_socket(AF_UNIX, SOCK_DGRAM, false);
    if (fd < 0) detail::throw_os_error(-fd, "socket");
    return UnixDatagram(OwnedFd::from_raw_fd(fd));
}

std::pair<UnixDatagram, UnixDatagram> UnixDatagram::pair() {
    auto [a, b] = detail::open_socket_pair(SOCK_DGRAM);
    return {UnixDatagram(std::move(a)), UnixDatagram(std::move(b))};
}

void UnixDatagram::connect(std::string_view path) { connect(UnixSocketAddr::from_pathname(path)); }

void UnixDatagram::connect(const UnixSocketAddr& addr) {
    const int r = detail::sys_connect(native_handle(), addr);
    if (r < 0) detail::throw_addr_error(-r, "connect", addr);
}

std::size_t UnixDatagram::send_to(std::span<const std::byte> buf, std::string_view path) {
    return send_to(buf, UnixSocketAddr::from_pathname(path));
}

std::size_t UnixDatagram::send_to(std::span<const std::byte> buf, const UnixSocketAddr& addr) {
    const auto r = detail::sys_sendto(native_handle(), buf, addr);
    if (r < 0) detail::throw_addr_error(static_cast<int>(-r), "send_to", addr);
    return static_cast<std::size_t>(r);
}

std::pair<std::size_t, UnixSocketAddr> UnixDatagram::recv_from(std::span<std::byte> buf) {
    UnixSocketAddr from;
    const auto n = detail::check_io(detail::sys_recvfrom(native_handle(), buf, 0, &from), "recv_from");
    return {n, from};
}

std::pair<std::size_t, UnixSocketAddr> UnixDatagram::peek_from(std::span<std::byte> buf) {
    UnixSocketAddr from;
    const auto n =
        detail::check_io(detail::sys_recvfrom(native_handle(), buf, MSG_PEEK, &from), "peek_from");
    return {n, from};
}

std::size_t UnixDatagram::send(std::span<const std::byte> buf) {
    return detail::check_io(detail::sys_send(native_handle(), buf), "send");
}

std::size_t UnixDatagram::recv(std::span<std::byte> buf) {
    return detail::check_io(detail::sys_recv(native_handle(), buf, 0), "recv");
}

std::size_t UnixDatagram::peek(std::span<std::byte> buf) {
    return detail::check_io(detail::sys_recv(native_handle(), buf, MSG_PEEK), "peek");
}

void UnixDatagram::shutdown(Shutdown how) { detail::shutdown_socket(native_handle(), how); }

UnixSocketAddr UnixDatagram::local_addr() const { return detail::local_unix_addr(native_handle()); }

UnixSocketAddr UnixDatagram::peer_addr() const { return detail::peer_unix_addr(native_handle()); }

}  // namespace async_io::net
