// TcpStream and TcpListener.
#include "net/socket_ops.hpp"

#include <cerrno>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace async_io::net {

// ---- TcpStream ----------------------------------------------------------------------------

TcpStream TcpStream::from_raw_fd(native_handle_type fd) { return TcpStream(OwnedFd::from_raw_fd(fd)); }

TcpStream TcpStream::connect(const SocketAddr& addr) {
    const int fd = detail::open_socket(detail::domain_of(addr), SOCK_STREAM, false);
    if (fd < 0) detail::throw_addr_error(-fd, "connect", addr);
    TcpStream stream(OwnedFd::from_raw_fd(fd));
    int r = detail::sys_connect(fd, addr);
    if (r == -EINPROGRESS) r = detail::wait_connect(fd);
    if (r < 0) detail::throw_addr_error(-r, "connect", addr);
    return stream;
}

TcpStream TcpStream::connect_nonblocking(const SocketAddr& addr) {
    const int fd = detail::open_socket(detail::domain_of(addr), SOCK_STREAM, true);
    if (fd < 0) detail::throw_addr_error(-fd, "connect", addr);
    TcpStream stream(OwnedFd::from_raw_fd(fd));
    const int r = detail::sys_connect(fd, addr);
    if (r < 0 && r != -EINPROGRESS && !detail::is_would_block(r)) {
        detail::throw_addr_error(-r, "connect", addr);
    }
    return stream;
}

std::size_t TcpStream::read(std::span<std::byte> buf) {
    if (buf.empty()) return 0;  // recv(2) of 0 bytes would wait for data
    return detail::check_io(detail::sys_recv(native_handle(), buf, 0), "read");
}

std::size_t TcpStream::write(std::span<const std::byte> buf) {
    return detail::check_io(detail::sys_send(native_handle(), buf), "write");
}

std::size_t TcpStream::peek(std::span<std::byte> buf) {
    if (buf.empty()) return 0;
    return detail::check_io(detail::sys_recv(native_handle(), buf, MSG_PEEK), "peek");
}

void TcpStream::shutdown(Shutdown how) { detail::shutdown_socket(native_handle(), how); }

SocketAddr TcpStream::peer_addr() const { return detail::peer_inet_addr(native_handle()); }

SocketAddr TcpStream::local_addr() const { return detail::local_inet_addr(native_handle()); }

void TcpStream::set_nodelay(bool nodelay) {
    detail::set_int_option(native_handle(), IPPROTO_TCP, TCP_NODELAY, nodelay ? 1 : 0,
                           "setsockopt(TCP_NODELAY)");
}

bool TcpStream::nodelay() const {
    return detail::get_int_option(native_handle(), IPPROTO_TCP, TCP_NODELAY,
                                  "getsockopt(TCP_NODELAY)") != 0;
}

void TcpStream::set_ttl(std::uint32_t ttl) { detail::set_ttl(native_handle(), ttl); }

std::uint32_t TcpStream::ttl() const { return detail::get_ttl(native_handle()); }

// ---- TcpListener --------------------------------------------------------------------------

TcpListener TcpListener::from_raw_fd(native_handle_type fd) {
    return TcpListener(OwnedFd::from_raw_fd(fd));
}

TcpListener TcpListener::bind(const SocketAddr& addr) {
    const int fd = detail::open_socket(detail::domain_of(addr), SOCK_STREAM, false);
    if (fd < 0) detail::throw_addr_error(-fd, "bind", addr);
    TcpListener listener(OwnedFd::from_raw_fd(fd));
    // As Rust's std: a restarted server can bind again while old connections are in TIME_WAIT.
    int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        detail::throw_addr_error(errno, "setsockopt(SO_REUSEADDR) for", addr);
    }
    if (::bind(fd, static_cast<const sockaddr*>(addr.data()), static_cast<socklen_t>(addr.size())) != 0) {
        detail::throw_addr_error(errno, "bind", addr);
    }
    if (::listen(fd, SOMAXCONN) != 0) detail::throw_addr_error(errno, "listen", addr);
    return listener;
}

std::pair<TcpStream, SocketAddr> TcpListener::accept() {
    SocketAddr peer;
    const int fd = detail::sys_accept(native_handle(), false, &peer);
    if (fd < 0) detail::throw_os_error(-fd, "accept");
    return {TcpStream(OwnedFd::from_raw_fd(fd)), peer};
}

std::optional<std::pair<TcpStream, SocketAddr>> TcpListener::try_accept(bool nonblocking) {
    SocketAddr peer;
    const int fd = detail::sys_accept(native_handle(), nonblocking, &peer);
    if (fd < 0) {
        if (detail::is_would_block(fd)) return std::nullopt;
        detail::throw_os_error(-fd, "accept");
    }
    return std::pair{TcpStream(OwnedFd::from_raw_fd(fd)), peer};
}

SocketAddr TcpListener::local_addr() const { return detail::local_inet_addr(native_handle()); }

void TcpListener::set_ttl(std::uint32_t ttl) { detail::set_ttl(native_handle(), ttl); }

std::uint32_t TcpListener::ttl() const { return detail::get_ttl(native_handle()); }

}  // namespace async_io::net
