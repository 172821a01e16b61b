// The address-taking socket calls of detail/sys.hpp (recvfrom, sendto, accept, connect,
// SO_ERROR). Addresses cross this boundary as SocketAddr / UnixSocketAddr, whose raw bytes are
// the OS's sockaddr structures.
#include <async_io/detail/sys.hpp>
#include "sys/posix.hpp"
#include <async_io/net.hpp>

#include <cerrno>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace async_io::detail {

namespace {

/// Storage big enough for any address these calls receive, and its length.
struct RawAddr {
    sockaddr_storage storage{};
    socklen_t len = sizeof(sockaddr_storage);
    sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
};

void store(const RawAddr& raw, net::SocketAddr* out) noexcept {
    if (out == nullptr) return;
    if (auto addr = net::SocketAddr::from_raw(&raw.storage, raw.len)) *out = *addr;
}

void store(const RawAddr& raw, net::UnixSocketAddr* out) noexcept {
    if (out == nullptr) return;
    if (auto addr = net::UnixSocketAddr::from_raw(&raw.storage, raw.len)) {
        *out = *addr;
    } else {
        *out = net::UnixSocketAddr{};
    }
}

template <typename Addr>
std::ptrdiff_t recvfrom_impl(native_handle_type fd, std::span<std::byte> buf, int flags,
                             Addr* from) noexcept {
    RawAddr raw;
    auto r = retry_eintr([&] { return ::recvfrom(fd, buf.data(), buf.size(), flags, raw.get(), &raw.len); });
    if (r >= 0) store(raw, from);
    return r;
}

template <typename Addr>
std::ptrdiff_t sendto_impl(native_handle_type fd, std::span<const std::byte> buf,
                           const Addr& to) noexcept {
    return retry_eintr([&] {
        return ::sendto(fd, buf.data(), buf.size(), no_sigpipe_flag,
                        static_cast<const sockaddr*>(to.data()), static_cast<socklen_t>(to.size()));
    });
}

template <typename Addr>
int accept_impl(native_handle_type fd, bool nonblocking, Addr* peer) noexcept {
    RawAddr raw;
#if defined(SOCK_CLOEXEC) && !defined(__APPLE__)
    const int flags = SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    auto r = retry_eintr([&] { return ::accept4(fd, raw.get(), &raw.len, flags); });
    if (r < 0) return static_cast<int>(r);
#else
    auto r = retry_eintr([&] { return ::accept(fd, raw.get(), &raw.len); });
    if (r < 0) return static_cast<int>(r);
    const int new_fd = static_cast<int>(r);
    int err = set_cloexec(new_fd, true);
    // The BSDs let accepted sockets inherit O_NONBLOCK; set it explicitly either way.
    if (err == 0) err = set_nonblocking(new_fd, nonblocking);
#if defined(SO_NOSIGPIPE)
    int one = 1;
    if (err == 0 && ::setsockopt(new_fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) != 0) err = -errno;
#endif
    if (err != 0) {
        sys_close(new_fd);
        return err;
    }
#endif
    store(raw, peer);
    return static_cast<int>(r);
}

template <typename Addr>
int connect_impl(native_handle_type fd, const Addr& addr) noexcept {
    if (::connect(fd, static_cast<const sockaddr*>(addr.data()),
                  static_cast<socklen_t>(addr.size())) == 0) {
        return 0;
    }
    // An interrupted connect goes on asynchronously (POSIX); retrying would give EALREADY.
    if (errno == EINTR) return -EINPROGRESS;
    return -errno;
}

}  // namespace

std::ptrdiff_t sys_recvfrom(native_handle_type fd, std::span<std::byte> buf, int flags,
                            net::SocketAddr* from) noexcept {
    return recvfrom_impl(fd, buf, flags, from);
}

std::ptrdiff_t sys_recvfrom(native_handle_type fd, std::span<std::byte> buf, int flags,
                            net::UnixSocketAddr* from) noexcept {
    return recvfrom_impl(fd, buf, flags, from);
}

std::ptrdiff_t sys_sendto(native_handle_type fd, std::span<const std::byte> buf,
                          const net::SocketAddr& to) noexcept {
    return sendto_impl(fd, buf, to);
}

std::ptrdiff_t sys_sendto(native_handle_type fd, std::span<const std::byte> buf,
                          const net::UnixSocketAddr& to) noexcept {
    return sendto_impl(fd, buf, to);
}

int sys_accept(native_handle_type fd, bool nonblocking, net::SocketAddr* peer) noexcept {
    return accept_impl(fd, nonblocking, peer);
}

int sys_accept(native_handle_type fd, bool nonblocking, net::UnixSocketAddr* peer) noexcept {
    return accept_impl(fd, nonblocking, peer);
}

int sys_connect(native_handle_type fd, const net::SocketAddr& addr) noexcept {
    return connect_impl(fd, addr);
}

int sys_connect(native_handle_type fd, const net::UnixSocketAddr& addr) noexcept {
    return connect_impl(fd, addr);
}

int get_socket_error(native_handle_type fd) noexcept {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return -errno;
    return -err;
}

}  // namespace async_io::detail
