// errno -> std::system_error. Kept out of line so that the throwing paths cost the callers only
// a call, and so that every layer words its errors the same way.
#include <async_io/detail/sys.hpp>

#include <cerrno>
#include <system_error>

namespace async_io::detail {

void throw_os_error(int err, const char* what) {
    throw std::system_error(err, std::system_category(), what);
}

void throw_os_error(int err, const std::string& what) {
    throw std::system_error(err, std::system_category(), what);
}

void throw_last_os_error(const char* what) { throw_os_error(errno, what); }

bool is_would_block(std::ptrdiff_t r) noexcept {
#if EAGAIN == EWOULDBLOCK
    return r == -EAGAIN;
#else
    return r == -EAGAIN || r == -EWOULDBLOCK;  // POSIX allows them to differ
#endif
}

}  // namespace async_io::detail
