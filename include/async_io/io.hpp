// Byte-buffer helpers and the library's own error codes.
#pragma once

#include <async_io/detail/export.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace async_io {

/// The bytes of a string literal or string_view, for `write`/`write_all`/`send`.
inline std::span<const std::byte> as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
/// The bytes of a string, writable, for `read`/`read_exact`/`recv`.
inline std::span<std::byte> as_writable_bytes(std::string& s) noexcept {
    return {reinterpret_cast<std::byte*>(s.data()), s.size()};
}

/// Errors that have no errno of their own.
enum class io_errc {
    unexpected_eof = 1,  ///< read_exact met end of file before the buffer was full
};

/// The category of io_errc ("async_io").
ASYNC_IO_API const std::error_category& io_category() noexcept;

inline std::error_code make_error_code(io_errc e) noexcept {
    return {static_cast<int>(e), io_category()};
}

}  // namespace async_io

template <>
struct std::is_error_code_enum<async_io::io_errc> : std::true_type {};
