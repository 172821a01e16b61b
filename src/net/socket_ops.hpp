// Private helpers shared by the socket types' implementations (tcp.cpp, udp.cpp, unix.cpp):
// creating sockets the library's way (close-on-exec, no SIGPIPE), socket options, addresses of
// a socket, and the error messages that name an address.
#pragma once

#include <async_io/net.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace async_io::detail {

/// socket(domain, type) with close-on-exec, non-blocking if asked, and SO_NOSIGPIPE where the
/// OS has no MSG_NOSIGNAL: the new fd, or -errno.
int open_socket(int domain, int type, bool nonblocking) noexcept;
/// socketpair(AF_UNIX, type) the same way. Throws std::system_error ("socketpair").
std::pair<OwnedFd, OwnedFd> open_socket_pair(int type);

/// Throws std::system_error(err) with the message "<op> <addr>".
[[noreturn]] void throw_addr_error(int err, const char* op, const net::SocketAddr& addr);
[[noreturn]] void throw_addr_error(int err, const char* op, const net::UnixSocketAddr& addr);

/// For a blocking connect that sys_connect reported as -EINPROGRESS (interrupted by a signal):
/// waits until it is over and returns its outcome, 0 or -errno.
int wait_connect(native_handle_type fd) noexcept;

/// setsockopt / getsockopt of an int-valued option; throw std::system_error (`what`).
void set_int_option(native_handle_type fd, int level, int name, int value, const char* what);
int get_int_option(native_handle_type fd, int level, int name, const char* what);

/// IP_TTL or IPV6_UNICAST_HOPS, whichever fits the socket's family.
void set_ttl(native_handle_type fd, std::uint32_t ttl);
std::uint32_t get_ttl(native_handle_type fd);

/// getsockname / getpeername; throw std::system_error ("getsockname", "getpeername").
net::SocketAddr local_inet_addr(native_handle_type fd);
net::SocketAddr peer_inet_addr(native_handle_type fd);
net::UnixSocketAddr local_unix_addr(native_handle_type fd);
net::UnixSocketAddr peer_unix_addr(native_handle_type fd);

/// shutdown(2); throws std::system_error ("shutdown").
void shutdown_socket(native_handle_type fd, net::Shutdown how);

/// The AF_INET / AF_INET6 of `addr`.
int domain_of(const net::SocketAddr& addr) noexcept;

/// `text` in double quotes for an error message: control and non-ASCII bytes, '"' and the
/// backslash written as \xHH; text longer than `quoted_limit` bytes is cut there and followed
/// by `..." (N bytes)`, so that a megabyte of junk does not become a megabyte of message.
inline constexpr std::size_t quoted_limit = 256;
std::string quoted(std::string_view text);

/// Why `host` cannot be a host name or numeric address for resolve(), or nullptr. Pure (no
/// lookup): it catches the mistakes getaddrinfo would only answer after a DNS round trip with
/// an unhelpful "Name or service not known": an empty host, a NUL byte, a "host:port" string,
/// an IPv6 address in brackets.
const char* host_problem(std::string_view host) noexcept;

}  // namespace async_io::detail
