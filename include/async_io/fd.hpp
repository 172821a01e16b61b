// OwnedFd: the owning handle for any file descriptor (a pipe end, an eventfd, a timerfd, an
// inotify instance, a tty), and pipe(). Wrap one in `Async<OwnedFd>` to read and write it
// asynchronously; used alone it does plain blocking I/O.
#pragma once

#include <async_io/detail/export.hpp>
#include <async_io/detail/sys.hpp>

#include <cstddef>
#include <span>
#include <utility>

namespace async_io {

/// Owns one file descriptor and closes it when destroyed (close errors are ignored there; call
/// close() to see them). Move-only; a moved-from or default-constructed OwnedFd owns nothing and
/// its native_handle() is -1. read(), write() and the other operations may run concurrently on
/// one object (each is a syscall on the fd); moving, release(), close() and destruction must not
/// overlap any other use of that object.
class ASYNC_IO_API OwnedFd {
public:
    /// An OwnedFd that owns nothing.
    constexpr OwnedFd() noexcept = default;

    /// Adopts `fd`: the returned OwnedFd closes it. Changes nothing about the fd (its blocking
    /// mode and close-on-exec flag stay as they are). Throws std::invalid_argument if `fd` is
    /// negative. Does not check that `fd` is open: a closed one makes later calls fail with EBADF.
    static OwnedFd from_raw_fd(native_handle_type fd);

    /// Takes over `other`'s fd, leaving `other` empty.
    OwnedFd(OwnedFd&& other) noexcept : fd_(other.release()) {}
    /// Closes the fd this object owned (ignoring errors) and takes over `other`'s.
    OwnedFd& operator=(OwnedFd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = other.release();
        }
        return *this;
    }
    OwnedFd(const OwnedFd&) = delete;
    OwnedFd& operator=(const OwnedFd&) = delete;
    /// Closes the fd, if any, ignoring errors.
    ~OwnedFd() { reset(); }

    /// The fd, still owned by this object; -1 if it owns nothing.
    native_handle_type native_handle() const noexcept { return fd_; }
    /// Gives up ownership without closing: returns the fd (or -1) and leaves this object empty.
    [[nodiscard]] native_handle_type release() noexcept { return std::exchange(fd_, -1); }
    /// True if this object owns an fd.
    explicit operator bool() const noexcept { return fd_ >= 0; }

    /// Closes the fd now and leaves this object empty; does nothing if it is already empty. The
    /// fd is released even when close reports an error: throws std::system_error ("close") for
    /// EBADF (it was not open) or EIO; an EINTR is not an error (the fd is closed anyway).
    void close();

    /// A new OwnedFd for the same open file (fcntl F_DUPFD_CLOEXEC): close-on-exec, sharing the
    /// file offset and the O_NONBLOCK flag with this one. Throws std::system_error ("dup").
    [[nodiscard]] OwnedFd try_clone() const;

    /// Sets or clears O_NONBLOCK on the open file (shared by every duplicate of the fd).
    /// Throws std::system_error ("set_nonblocking").
    void set_nonblocking(bool nonblocking);
    /// Whether O_NONBLOCK is set. Throws std::system_error ("fcntl(F_GETFL)").
    bool is_nonblocking() const;

    /// read(2): reads up to buf.size() bytes and returns how many; 0 means end of file (or an
    /// empty `buf`: 0 at once, without a syscall). Blocks in blocking mode; in non-blocking mode
    /// throws std::system_error equal to std::errc::operation_would_block when nothing is
    /// available. Other errors: std::system_error ("read"). EINTR is retried.
    std::size_t read(std::span<std::byte> buf);
    /// write(2): writes up to buf.size() bytes and returns how many (possibly fewer). Blocks in
    /// blocking mode; in non-blocking mode throws std::system_error equal to
    /// std::errc::operation_would_block when no space is available. Never raises SIGPIPE: a pipe
    /// whose read end is closed gives std::errc::broken_pipe. Other errors: std::system_error
    /// ("write"). EINTR is retried.
    std::size_t write(std::span<const std::byte> buf);

private:
    explicit OwnedFd(native_handle_type fd) noexcept : fd_(fd) {}
    void reset() noexcept {
        if (fd_ >= 0) detail::sys_close(std::exchange(fd_, -1));
    }

    native_handle_type fd_ = -1;
};

/// Creates a pipe (pipe2 with O_CLOEXEC, plus O_NONBLOCK on both ends when `nonblocking`).
/// Returns {read end, write end}: `auto [reader, writer] = async_io::pipe();`.
/// Throws std::system_error ("pipe"), e.g. std::errc::too_many_files_open.
ASYNC_IO_API std::pair<OwnedFd, OwnedFd> pipe(bool nonblocking = false);

}  // namespace async_io
