// Private helpers shared by the POSIX implementation files of the sys and net layers.
#pragma once

#include <cerrno>
#include <cstddef>

#include <sys/socket.h>

namespace async_io::detail {

/// Send flags that keep a send to a closed peer from raising SIGPIPE, where the OS has one;
/// elsewhere sockets get SO_NOSIGPIPE when they are created.
#if defined(MSG_NOSIGNAL)
inline constexpr int no_sigpipe_flag = MSG_NOSIGNAL;
#else
inline constexpr int no_sigpipe_flag = 0;
#endif

/// Runs `call` (a syscall returning -1 with errno on failure) until it is not interrupted, and
/// maps the result to the sys.hpp convention: the result, or -errno.
template <typename Call>
std::ptrdiff_t retry_eintr(Call call) noexcept {
    for (;;) {
        auto r = call();
        if (r >= 0) return static_cast<std::ptrdiff_t>(r);
        if (errno != EINTR) return -static_cast<std::ptrdiff_t>(errno);
    }
}

}  // namespace async_io::detail
