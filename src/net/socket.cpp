// What the socket types share: SocketBase, socket creation, options and addresses.
#include "net/socket_ops.hpp"
#include "sys/posix.hpp"

#include <cerrno>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace async_io::detail {

namespace {

/// Makes a freshly created socket close-on-exec, non-blocking if asked, and SIGPIPE-free, where
/// socket() could not do it itself: 0 or -errno.
int finish_new_socket([[maybe_unused]] int fd, [[maybe_unused]] bool nonblocking) noexcept {
    int err = 0;
#if !defined(SOCK_CLOEXEC)
    err = set_cloexec(fd, true);
    if (err == 0 && nonblocking) err = set_nonblocking(fd, true);
#endif
#if defined(SO_NOSIGPIPE)
    int one = 1;
    if (err == 0 && ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) != 0) err = -errno;
#endif
    return err;
}

int socket_type_flags([[maybe_unused]] bool nonblocking) noexcept {
#if defined(SOCK_CLOEXEC)
    return SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
#else
    return 0;
#endif
}

/// getsockname or getpeername into a sockaddr_storage.
template <typename Addr, typename Call>
Addr socket_name(native_handle_type fd, Call call, const char* what) {
    sockaddr_storage storage{};
    socklen_t len = sizeof storage;
    if (call(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) throw_last_os_error(what);
    auto addr = Addr::from_raw(&storage, len);
    if (!addr) throw_os_error(EAFNOSUPPORT, what);
    return *addr;
}

}  // namespace

int open_socket(int domain, int type, bool nonblocking) noexcept {
    const auto r = retry_eintr([&] { return ::socket(domain, type | socket_type_flags(nonblocking), 0); });
    if (r < 0) return static_cast<int>(r);
    const int fd = static_cast<int>(r);
    if (const int err = finish_new_socket(fd, nonblocking); err != 0) {
        sys_close(fd);
        return err;
    }
    return fd;
}

std::pair<OwnedFd, OwnedFd> open_socket_pair(int type) {
    int fds[2];
    if (::socketpair(AF_UNIX, type | socket_type_flags(false), 0, fds) != 0) {
        throw_last_os_error("socketpair");
    }
    std::pair<OwnedFd, OwnedFd> ends{OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])};
    for (int fd : fds) {
        if (const int err = finish_new_socket(fd, false); err != 0) throw_os_error(-err, "socketpair");
    }
    return ends;
}

void throw_addr_error(int err, const char* op, const net::SocketAddr& addr) {
    throw_os_error(err, std::string(op) + " " + addr.to_string());
}

void throw_addr_error(int err, const char* op, const net::UnixSocketAddr& addr) {
    throw_os_error(err, std::string(op) + " " + addr.to_string());
}

int wait_connect(native_handle_type fd) noexcept {
    pollfd p{fd, POLLOUT, 0};
    for (;;) {
        const int r = ::poll(&p, 1, -1);
        if (r > 0) break;
        if (r < 0 && errno != EINTR) return -errno;
    }
    return get_socket_error(fd);
}

void set_int_option(native_handle_type fd, int level, int name, int value, const char* what) {
    if (::setsockopt(fd, level, name, &value, sizeof value) != 0) throw_last_os_error(what);
}

int get_int_option(native_handle_type fd, int level, int name, const char* what) {
    int value = 0;
    socklen_t len = sizeof value;
    if (::getsockopt(fd, level, name, &value, &len) != 0) throw_last_os_error(what);
    return value;
}

namespace {

/// The family of the socket `fd` (from getsockname), to pick between IPv4 and IPv6 options.
bool is_ipv6_socket(native_handle_type fd, const char* what) {
    sockaddr_storage storage{};
    socklen_t len = sizeof storage;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) {
        throw_last_os_error(what);
    }
    return storage.ss_family == AF_INET6;
}

}  // namespace

void set_ttl(native_handle_type fd, std::uint32_t ttl) {
    // The option is an int: 2^32-1 would become -1, which the OS takes as "the default".
    if (ttl > 255) {
        throw std::invalid_argument("set_ttl(" + std::to_string(ttl) +
                                    "): a TTL (IPv6: hop limit) is at most 255");
    }
    const int value = static_cast<int>(ttl);
    const bool v6 = is_ipv6_socket(fd, "set_ttl");
    const int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
    const int name = v6 ? IPV6_UNICAST_HOPS : IP_TTL;
    if (::setsockopt(fd, level, name, &value, sizeof value) != 0) {
        const int err = errno;  // before building the message, which may allocate
        const char* option = v6 ? "setsockopt(IPV6_UNICAST_HOPS, " : "setsockopt(IP_TTL, ";
        throw_os_error(err, option + std::to_string(ttl) + ")");
    }
}

std::uint32_t get_ttl(native_handle_type fd) {
    if (is_ipv6_socket(fd, "ttl")) {
        return static_cast<std::uint32_t>(
            get_int_option(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, "getsockopt(IPV6_UNICAST_HOPS)"));
    }
    return static_cast<std::uint32_t>(get_int_option(fd, IPPROTO_IP, IP_TTL, "getsockopt(IP_TTL)"));
}

net::SocketAddr local_inet_addr(native_handle_type fd) {
    return socket_name<net::SocketAddr>(fd, ::getsockname, "getsockname");
}

net::SocketAddr peer_inet_addr(native_handle_type fd) {
    return socket_name<net::SocketAddr>(fd, ::getpeername, "getpeername");
}

net::UnixSocketAddr local_unix_addr(native_handle_type fd) {
    return socket_name<net::UnixSocketAddr>(fd, ::getsockname, "getsockname");
}

net::UnixSocketAddr peer_unix_addr(native_handle_type fd) {
    return socket_name<net::UnixSocketAddr>(fd, ::getpeername, "getpeername");
}

void shutdown_socket(native_handle_type fd, net::Shutdown how) {
    int os_how = SHUT_RDWR;
    switch (how) {
        case net::Shutdown::Read: os_how = SHUT_RD; break;
        case net::Shutdown::Write: os_how = SHUT_WR; break;
        case net::Shutdown::Both: os_how = SHUT_RDWR; break;
    }
    if (::shutdown(fd, os_how) != 0) throw_last_os_error("shutdown");
}

int domain_of(const net::SocketAddr& addr) noexcept { return addr.is_ipv4() ? AF_INET : AF_INET6; }

// ---- SocketBase ---------------------------------------------------------------------------

void SocketBase::set_nonblocking(bool nonblocking) {
    const int r = detail::set_nonblocking(fd_.native_handle(), nonblocking);
    if (r < 0) throw_os_error(-r, "set_nonblocking");
}

std::error_code SocketBase::take_error() {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        throw_last_os_error("getsockopt(SO_ERROR)");
    }
    if (err == 0) return {};
    return {err, std::system_category()};
}

}  // namespace async_io::detail
