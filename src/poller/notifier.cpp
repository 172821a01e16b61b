// POSIX only: the Windows backend (IOCP) wakes its port with a posted completion instead.
#if !defined(_WIN32)

#include "notifier.hpp"

#include <cerrno>
#include <cstdint>

#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#  include <sys/eventfd.h>
#endif

#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
    defined(__DragonFly__)
#  define ASYNC_IO_HAVE_PIPE2 1
#endif

namespace async_io::detail {
namespace {

#if !defined(ASYNC_IO_HAVE_PIPE2)
void set_fd_flags(int fd) {
    const int fd_flags = ::fcntl(fd, F_GETFD);
    if (fd_flags < 0 || ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) < 0) {
        throw_poller_error(errno, "notifier pipe: fcntl(FD_CLOEXEC)");
    }
    const int fl_flags = ::fcntl(fd, F_GETFL);
    if (fl_flags < 0 || ::fcntl(fd, F_SETFL, fl_flags | O_NONBLOCK) < 0) {
        throw_poller_error(errno, "notifier pipe: fcntl(O_NONBLOCK)");
    }
}
#endif

}  // namespace

Notifier::Notifier(NotifierKind kind) {
#if defined(__linux__)
    if (kind == NotifierKind::automatic) {
        const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0) throw_poller_error(errno, "notifier: eventfd");
        read_ = PollerFd(fd);
        return;
    }
#else
    (void)kind;
#endif
    int fds[2];
#if defined(ASYNC_IO_HAVE_PIPE2)
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) throw_poller_error(errno, "notifier: pipe2");
    read_ = PollerFd(fds[0]);
    write_ = PollerFd(fds[1]);
#else
    // No pipe2: there is a window in which a concurrent fork+exec inherits these fds.
    if (::pipe(fds) < 0) throw_poller_error(errno, "notifier: pipe");
    read_ = PollerFd(fds[0]);
    write_ = PollerFd(fds[1]);
    set_fd_flags(fds[0]);
    set_fd_flags(fds[1]);
#endif
}

void Notifier::wake() noexcept {
    if (is_eventfd()) {
        const std::uint64_t one = 1;
        for (;;) {
            if (::write(read_.get(), &one, sizeof one) >= 0) return;
            if (errno == EINTR) continue;
            // EAGAIN: the counter is saturated (only possible when it is never drained, after
            // 2^64 - 2 wakes). Reset it, and write again so that the wake is not lost.
            if (errno == EAGAIN) {
                drain();
                continue;
            }
            return;
        }
    }
    const unsigned char token = 1;
    // EAGAIN means the pipe is full, hence readable already: the wake is not lost.
    while (::write(write_.get(), &token, 1) < 0 && errno == EINTR) {
    }
}

void Notifier::drain() noexcept {
    if (is_eventfd()) {
        std::uint64_t count;
        while (::read(read_.get(), &count, sizeof count) < 0 && errno == EINTR) {
        }
        return;
    }
    unsigned char buf[64];
    for (;;) {
        const auto n = ::read(read_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        // A short read (or EAGAIN) means the pipe was empty at that instant; a later token
        // makes the fd readable again.
        if (n < static_cast<ssize_t>(sizeof buf)) return;
    }
}

}  // namespace async_io::detail

#endif  // !defined(_WIN32)
