// The fd-level system calls of detail/sys.hpp: -errno returns, EINTR retried, no SIGPIPE where
// promised. The address-taking socket calls are in socket_calls.cpp.
#include <async_io/detail/sys.hpp>
#include "sys/posix.hpp"

#include <cerrno>
#include <csignal>
#include <ctime>

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace async_io::detail {


std::ptrdiff_t sys_read(native_handle_type fd, std::span<std::byte> buf) noexcept {
    return retry_eintr([&] { return ::read(fd, buf.data(), buf.size()); });
}

std::ptrdiff_t sys_write(native_handle_type fd, std::span<const std::byte> buf) noexcept {
    return retry_eintr([&] { return ::write(fd, buf.data(), buf.size()); });
}

std::ptrdiff_t sys_write_nosigpipe(native_handle_type fd, std::span<const std::byte> buf) noexcept {
    // Block SIGPIPE for this thread around the write. If the write raised one (EPIPE) and none
    // was pending before, consume it so that unblocking does not deliver it. A SIGPIPE already
    // pending for another reason stays pending.
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t old_mask;
    if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask) != 0) return -EINVAL;
    bool was_pending = false;
    if (sigset_t pending; sigpending(&pending) == 0) was_pending = sigismember(&pending, SIGPIPE) == 1;

    auto r = retry_eintr([&] { return ::write(fd, buf.data(), buf.size()); });

    if (r == -EPIPE && !was_pending) {
        const timespec zero{};
        while (sigtimedwait(&pipe_set, nullptr, &zero) == -1 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return r;
}

std::ptrdiff_t sys_recv(native_handle_type fd, std::span<std::byte> buf, int flags) noexcept {
    return retry_eintr([&] { return ::recv(fd, buf.data(), buf.size(), flags); });
}

std::ptrdiff_t sys_send(native_handle_type fd, std::span<const std::byte> buf) noexcept {
    return retry_eintr([&] { return ::send(fd, buf.data(), buf.size(), no_sigpipe_flag); });
}

int sys_msg_peek() noexcept { return MSG_PEEK; }

int set_nonblocking(native_handle_type fd, bool nonblocking) noexcept {
#if defined(__linux__)
    // One syscall instead of fcntl's get-then-set.
    int on = nonblocking ? 1 : 0;
    return static_cast<int>(retry_eintr([&] { return ::ioctl(fd, FIONBIO, &on); }));
#else
    auto flags = retry_eintr([&] { return ::fcntl(fd, F_GETFL); });
    if (flags < 0) return static_cast<int>(flags);
    const int wanted = nonblocking ? (static_cast<int>(flags) | O_NONBLOCK)
                                   : (static_cast<int>(flags) & ~O_NONBLOCK);
    if (wanted == flags) return 0;
    return static_cast<int>(retry_eintr([&] { return ::fcntl(fd, F_SETFL, wanted); }));
#endif
}

int get_nonblocking(native_handle_type fd) noexcept {
    auto flags = retry_eintr([&] { return ::fcntl(fd, F_GETFL); });
    if (flags < 0) return static_cast<int>(flags);
    return (flags & O_NONBLOCK) != 0 ? 1 : 0;
}

int set_cloexec(native_handle_type fd, bool cloexec) noexcept {
    auto flags = retry_eintr([&] { return ::fcntl(fd, F_GETFD); });
    if (flags < 0) return static_cast<int>(flags);
    const int wanted = cloexec ? (static_cast<int>(flags) | FD_CLOEXEC)
                               : (static_cast<int>(flags) & ~FD_CLOEXEC);
    if (wanted == flags) return 0;
    return static_cast<int>(retry_eintr([&] { return ::fcntl(fd, F_SETFD, wanted); }));
}

int get_cloexec(native_handle_type fd) noexcept {
    auto flags = retry_eintr([&] { return ::fcntl(fd, F_GETFD); });
    if (flags < 0) return static_cast<int>(flags);
    return (flags & FD_CLOEXEC) != 0 ? 1 : 0;
}

FdKind fd_kind(native_handle_type fd) noexcept {
    struct stat st {};
    if (retry_eintr([&] { return ::fstat(fd, &st); }) < 0) return FdKind::invalid;
    switch (st.st_mode & S_IFMT) {
        case S_IFREG: return FdKind::regular;
        case S_IFDIR: return FdKind::directory;
        case S_IFIFO: return FdKind::fifo;
        case S_IFSOCK: return FdKind::socket;
        case S_IFCHR: return FdKind::char_device;
        case S_IFBLK: return FdKind::block_device;
        default: return FdKind::other;
    }
}

bool is_regular_file(native_handle_type fd) noexcept { return fd_kind(fd) == FdKind::regular; }

int sys_close(native_handle_type fd) noexcept {
    if (::close(fd) == 0 || errno == EINTR) return 0;
    return -errno;
}

}  // namespace async_io::detail
