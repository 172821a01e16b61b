// UnixSocketAddr: the sockaddr_un bytes and their length, as the kernel fills them in.
// Kinds (as Rust's std::os::unix::net::SocketAddr tells them apart):
//  - unnamed: no byte of sun_path is covered by the length;
//  - abstract (Linux/Android): sun_path[0] is NUL, the name is the rest of the covered bytes;
//  - pathname: otherwise; the path ends at the first NUL (the kernel counts the terminator).
#include <async_io/net.hpp>
#include "net/socket_ops.hpp"

#include <algorithm>
#include <cstring>
#include <ostream>
#include <stdexcept>

#include <sys/socket.h>
#include <sys/un.h>

namespace async_io::net {

static_assert(sizeof(sockaddr_un) <= UnixSocketAddr::storage_size);
static_assert(alignof(sockaddr_un) <= 8);
static_assert(sizeof(sockaddr_un) <= 255, "the length is kept in a uint8_t");

namespace {

constexpr std::size_t path_offset = offsetof(sockaddr_un, sun_path);
constexpr std::size_t sun_path_size = sizeof(sockaddr_un::sun_path);

#if defined(__linux__) || defined(__ANDROID__)
constexpr bool has_abstract_names = true;
#else
constexpr bool has_abstract_names = false;
#endif

}  // namespace

UnixSocketAddr::UnixSocketAddr() noexcept : storage_{}, len_(static_cast<std::uint8_t>(path_offset)) {
    const sa_family_t family = AF_UNIX;
    std::memcpy(storage_ + offsetof(sockaddr_un, sun_family), &family, sizeof family);
}

std::size_t UnixSocketAddr::max_path_length() noexcept { return sun_path_size - 1; }

UnixSocketAddr UnixSocketAddr::from_pathname(std::string_view path) {
    if (path.empty()) throw std::invalid_argument("Unix socket path is empty");
    if (path.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("Unix socket path " + detail::quoted(path) + " contains a NUL byte");
    }
    if (path.size() > max_path_length()) {
        throw std::invalid_argument("Unix socket path " + detail::quoted(path) + " is " +
                                    std::to_string(path.size()) + " bytes long; the limit is " +
                                    std::to_string(max_path_length()) + " (sockaddr_un::sun_path)");
    }
    UnixSocketAddr addr;
    std::memcpy(addr.storage_ + path_offset, path.data(), path.size());
    // The terminating NUL is counted, as the kernel reports it (and storage_ is zeroed).
    addr.len_ = static_cast<std::uint8_t>(path_offset + path.size() + 1);
    return addr;
}

UnixSocketAddr UnixSocketAddr::from_abstract_name(std::string_view name) {
    if constexpr (!has_abstract_names) {
        throw std::system_error(std::make_error_code(std::errc::operation_not_supported),
                                "UnixSocketAddr::from_abstract_name: no abstract names on this OS");
    }
    if (name.size() > max_path_length()) {
        throw std::invalid_argument("abstract Unix socket name " + detail::quoted(name) + " is " +
                                    std::to_string(name.size()) + " bytes long; the limit is " +
                                    std::to_string(max_path_length()) +
                                    " (sockaddr_un::sun_path less the leading NUL)");
    }
    UnixSocketAddr addr;
    addr.storage_[path_offset] = 0;
    std::memcpy(addr.storage_ + path_offset + 1, name.data(), name.size());
    addr.len_ = static_cast<std::uint8_t>(path_offset + 1 + name.size());
    return addr;
}

std::optional<UnixSocketAddr> UnixSocketAddr::from_raw(const void* raw, std::size_t len) noexcept {
    UnixSocketAddr addr;
    // Some systems report an unnamed peer with a length of 0.
    if (len == 0) return addr;
    if (raw == nullptr || len < offsetof(sockaddr_un, sun_family) + sizeof(sa_family_t)) {
        return std::nullopt;
    }
    sa_family_t family{};
    std::memcpy(&family, static_cast<const unsigned char*>(raw) + offsetof(sockaddr_un, sun_family),
                sizeof family);
    if (family != AF_UNIX) return std::nullopt;
    // Linux may report a length beyond sizeof(sockaddr_un) for a 108-byte path; clamp it.
    len = std::min(len, sizeof(sockaddr_un));
    if (len < path_offset) len = path_offset;
    std::memcpy(addr.storage_, raw, len);
    addr.len_ = static_cast<std::uint8_t>(len);
    return addr;
}

bool UnixSocketAddr::is_unnamed() const noexcept {
    if (len_ <= path_offset) return true;
    return !has_abstract_names && storage_[path_offset] == 0;
}

bool UnixSocketAddr::is_abstract() const noexcept {
    return has_abstract_names && len_ > path_offset && storage_[path_offset] == 0;
}

std::optional<std::string_view> UnixSocketAddr::as_pathname() const noexcept {
    if (is_unnamed() || is_abstract()) return std::nullopt;
    const auto* begin = reinterpret_cast<const char*>(storage_ + path_offset);
    const std::size_t covered = len_ - path_offset;
    const auto* nul = static_cast<const char*>(std::memchr(begin, '\0', covered));
    return std::string_view(begin, nul != nullptr ? static_cast<std::size_t>(nul - begin) : covered);
}

std::optional<std::string_view> UnixSocketAddr::as_abstract_name() const noexcept {
    if (!is_abstract()) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(storage_ + path_offset + 1),
                            len_ - path_offset - 1);
}

std::string UnixSocketAddr::to_string() const {
    if (auto path = as_pathname()) return std::string(*path);
    if (auto name = as_abstract_name()) {
        std::string out = "@";
        for (char c : *name) out += (c == '\0') ? '@' : c;
        return out;
    }
    return "(unnamed)";
}

bool UnixSocketAddr::operator==(const UnixSocketAddr& other) const noexcept {
    if (is_unnamed() || other.is_unnamed()) return is_unnamed() && other.is_unnamed();
    if (is_abstract() != other.is_abstract()) return false;
    if (is_abstract()) return as_abstract_name() == other.as_abstract_name();
    return as_pathname() == other.as_pathname();
}

std::ostream& operator<<(std::ostream& os, const UnixSocketAddr& addr) {
    return os << addr.to_string();
}

}  // namespace async_io::net
