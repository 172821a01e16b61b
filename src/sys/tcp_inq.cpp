// TCP_INQ: Linux (4.18+) reports, with every recvmsg, how many bytes are left in the socket's
// receive queue. With it a read that fills the caller's buffer exactly can still tell that it
// drained the socket, so the next read waits for the next event instead of trying a syscall that
// can only fail with EAGAIN: the readiness cache then costs exactly one read per event, as a
// hand-written epoll loop does. Elsewhere (or when the option is refused) the functions below
// report "unknown" and the library falls back to the short-read rule.
#include <async_io/detail/io_awaiter.hpp>

#include <cerrno>
#include <cstring>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

namespace async_io::detail {

bool enable_tcp_inq(native_handle_type fd) noexcept {
#if defined(__linux__) && defined(TCP_INQ)
    const int one = 1;
    return ::setsockopt(fd, IPPROTO_TCP, TCP_INQ, &one, sizeof one) == 0;
#else
    (void)fd;
    return false;
#endif
}

std::ptrdiff_t sys_recv_inq(native_handle_type fd, std::span<std::byte> buf, int* inq) noexcept {
#if defined(__linux__) && defined(TCP_CM_INQ)
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t r;
    do {
        r = ::recvmsg(fd, &msg, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    // The buffer has room for one control message, so there is no second to look for (walking
    // them with CMSG_NXTHDR cost a fifth of this function's instructions, libc's recvmsg included).
    const cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_len >= CMSG_LEN(sizeof(int)) && c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
        std::memcpy(inq, CMSG_DATA(c), sizeof(int));
    } else {
        *inq = -1;
    }
    return r;
#else
    *inq = -1;
    return sys_recv(fd, buf, 0);
#endif
}

}  // namespace async_io::detail
