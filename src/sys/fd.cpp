// OwnedFd and pipe().
#include <async_io/fd.hpp>
#include "sys/posix.hpp"

#include <cerrno>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace async_io {

OwnedFd OwnedFd::from_raw_fd(native_handle_type fd) {
    if (fd < 0) {
        throw std::invalid_argument("OwnedFd::from_raw_fd: invalid file descriptor " +
                                    std::to_string(fd) + " (must be >= 0)");
    }
    return OwnedFd(fd);
}

void OwnedFd::close() {
    if (fd_ < 0) return;
    const int r = detail::sys_close(std::exchange(fd_, -1));
    if (r < 0) detail::throw_os_error(-r, "close");
}

OwnedFd OwnedFd::try_clone() const {
    const auto r = detail::retry_eintr([&] { return ::fcntl(fd_, F_DUPFD_CLOEXEC, 0); });
    if (r < 0) detail::throw_os_error(static_cast<int>(-r), "dup");
    return OwnedFd(static_cast<native_handle_type>(r));
}

void OwnedFd::set_nonblocking(bool nonblocking) {
    const int r = detail::set_nonblocking(fd_, nonblocking);
    if (r < 0) detail::throw_os_error(-r, "set_nonblocking");
}

bool OwnedFd::is_nonblocking() const {
    const int r = detail::get_nonblocking(fd_);
    if (r < 0) detail::throw_os_error(-r, "fcntl(F_GETFL)");
    return r == 1;
}

std::size_t OwnedFd::read(std::span<std::byte> buf) {
    if (buf.empty()) return 0;  // on a socket, read(2) of 0 bytes would wait for data
    return detail::check_io(detail::sys_read(fd_, buf), "read");
}

std::size_t OwnedFd::write(std::span<const std::byte> buf) {
    return detail::check_io(detail::sys_write_nosigpipe(fd_, buf), "write");
}

std::pair<OwnedFd, OwnedFd> pipe(bool nonblocking) {
    int fds[2];
#if defined(O_CLOEXEC) && !defined(__APPLE__)
    if (::pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)) != 0) {
        detail::throw_last_os_error("pipe");
    }
    return {OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])};
#else
    if (::pipe(fds) != 0) detail::throw_last_os_error("pipe");
    std::pair<OwnedFd, OwnedFd> ends{OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])};
    for (int fd : fds) {
        int r = detail::set_cloexec(fd, true);
        if (r == 0 && nonblocking) r = detail::set_nonblocking(fd, true);
        if (r < 0) detail::throw_os_error(-r, "pipe");
    }
    return ends;
#endif
}

}  // namespace async_io
