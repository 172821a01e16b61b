// UdpSocket.
#include "net/socket_ops.hpp"

#include <cerrno>

#include <sys/socket.h>

namespace async_io::net {

UdpSocket UdpSocket::from_raw_fd(native_handle_type fd) { return UdpSocket(OwnedFd::from_raw_fd(fd)); }

UdpSocket UdpSocket::bind(const SocketAddr& addr) {
    const int fd = detail::open_socket(detail::domain_of(addr), SOCK_DGRAM, false);
    if (fd < 0) detail::throw_addr_error(-fd, "bind", addr);
    UdpSocket socket(OwnedFd::from_raw_fd(fd));
    if (::bind(fd, static_cast<const sockaddr*>(addr.data()), static_cast<socklen_t>(addr.size())) != 0) {
        detail::throw_addr_error(errno, "bind", addr);
    }
    return socket;
}

void UdpSocket::connect(const SocketAddr& addr) {
    const int r = detail::sys_connect(native_handle(), addr);
    if (r < 0) detail::throw_addr_error(-r, "connect", addr);
}

std::size_t UdpSocket::send_to(std::span<const std::byte> buf, const SocketAddr& addr) {
    const auto r = detail::sys_sendto(native_handle(), buf, addr);
    if (r < 0) detail::throw_addr_error(static_cast<int>(-r), "send_to", addr);
    return static_cast<std::size_t>(r);
}

std::pair<std::size_t, SocketAddr> UdpSocket::recv_from(std::span<std::byte> buf) {
    SocketAddr from;
    const auto n = detail::check_io(detail::sys_recvfrom(native_handle(), buf, 0, &from), "recv_from");
    return {n, from};
}

std::pair<std::size_t, SocketAddr> UdpSocket::peek_from(std::span<std::byte> buf) {
    SocketAddr from;
    const auto n =
        detail::check_io(detail::sys_recvfrom(native_handle(), buf, MSG_PEEK, &from), "peek_from");
    return {n, from};
}

std::size_t UdpSocket::send(std::span<const std::byte> buf) {
    return detail::check_io(detail::sys_send(native_handle(), buf), "send");
}

std::size_t UdpSocket::recv(std::span<std::byte> buf) {
    return detail::check_io(detail::sys_recv(native_handle(), buf, 0), "recv");
}

std::size_t UdpSocket::peek(std::span<std::byte> buf) {
    return detail::check_io(detail::sys_recv(native_handle(), buf, MSG_PEEK), "peek");
}

SocketAddr UdpSocket::local_addr() const { return detail::local_inet_addr(native_handle()); }

SocketAddr UdpSocket::peer_addr() const { return detail::peer_inet_addr(native_handle()); }

void UdpSocket::set_broadcast(bool broadcast) {
    detail::set_int_option(native_handle(), SOL_SOCKET, SO_BROADCAST, broadcast ? 1 : 0,
                           "setsockopt(SO_BROADCAST)");
}

bool UdpSocket::broadcast() const {
    return detail::get_int_option(native_handle(), SOL_SOCKET, SO_BROADCAST,
                                  "getsockopt(SO_BROADCAST)") != 0;
}

void UdpSocket::set_ttl(std::uint32_t ttl) { detail::set_ttl(native_handle(), ttl); }

std::uint32_t UdpSocket::ttl() const { return detail::get_ttl(native_handle()); }

}  // namespace async_io::net
