// SocketAddr: parsing, printing, comparison, and the sockaddr_in / sockaddr_in6 bytes it holds.
// The bytes are only ever read and written through memcpy into the OS structures, so there is
// no aliasing question.
#include <async_io/net.hpp>
#include "net/socket_ops.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <ostream>
#include <stdexcept>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace async_io::net {

static_assert(sizeof(sockaddr_in6) == SocketAddr::storage_size);
static_assert(sizeof(sockaddr_in) <= SocketAddr::storage_size);
static_assert(offsetof(sockaddr_in, sin_port) == offsetof(sockaddr_in6, sin6_port));
static_assert(alignof(sockaddr_in6) <= 8);

namespace {

sockaddr_in make_in4(std::array<std::uint8_t, 4> ip, std::uint16_t port) noexcept {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    std::memcpy(&sa.sin_addr, ip.data(), ip.size());
    return sa;
}

sockaddr_in6 make_in6(std::array<std::uint8_t, 16> ip, std::uint16_t port, std::uint32_t flowinfo,
                      std::uint32_t scope_id) noexcept {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    sa.sin6_flowinfo = htonl(flowinfo);
    sa.sin6_scope_id = scope_id;
    std::memcpy(&sa.sin6_addr, ip.data(), ip.size());
    return sa;
}

/// Parses a decimal number of at most `max_digits` digits no greater than `max`.
std::optional<std::uint32_t> parse_decimal(std::string_view s, std::size_t max_digits,
                                           std::uint32_t max) noexcept {
    if (s.empty() || s.size() > max_digits) return std::nullopt;
    std::uint64_t value = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (value > max) return std::nullopt;
    return static_cast<std::uint32_t>(value);
}

/// Copies `s` into `buf` as a C string (for inet_pton / if_nametoindex); false if it does not
/// fit or holds a NUL.
template <std::size_t N>
bool to_c_string(std::string_view s, char (&buf)[N]) noexcept {
    if (s.size() >= N || s.find('\0') != std::string_view::npos) return false;
    std::memcpy(buf, s.data(), s.size());
    buf[s.size()] = '\0';
    return true;
}

/// The port after the host part: `rest` must be ":<decimal 0..65535>". Returns the reason it is
/// not, or nullptr.
const char* parse_port(std::string_view rest, std::uint16_t& port) noexcept {
    if (rest.empty() || rest.front() != ':') return "missing \":port\"";
    rest.remove_prefix(1);
    if (rest.empty()) return "missing port number after ':'";
    if (!std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return "port is not a decimal number";
    }
    auto value = parse_decimal(rest, 5, 65535);
    if (!value) return "port out of range (0-65535)";
    port = static_cast<std::uint16_t>(*value);
    return nullptr;
}

/// Parses `text` into `out`; returns nullptr, or why `text` is not a socket address.
const char* parse_impl(std::string_view text, SocketAddr& out) noexcept {
    if (text.empty()) return "empty string";
    std::uint16_t port = 0;
    if (text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
        std::string_view host = text.substr(1, close - 1);
        if (const char* err = parse_port(text.substr(close + 1), port)) return err;

        std::uint32_t scope_id = 0;
        if (const auto percent = host.find('%'); percent != std::string_view::npos) {
            const std::string_view zone = host.substr(percent + 1);
            host = host.substr(0, percent);
            if (zone.empty()) return "empty zone after '%'";
            if (std::all_of(zone.begin(), zone.end(), [](char c) { return c >= '0' && c <= '9'; })) {
                auto id = parse_decimal(zone, 10, std::numeric_limits<std::uint32_t>::max());
                if (!id) return "scope id out of range";
                scope_id = *id;
            } else {
                char name[IF_NAMESIZE];
                if (!to_c_string(zone, name)) return "invalid network interface name";
                scope_id = if_nametoindex(name);
                if (scope_id == 0) return "unknown network interface";
            }
        }
        char ip_text[INET6_ADDRSTRLEN];
        in6_addr ip{};
        if (host.empty()) return "missing IPv6 address";
        if (!to_c_string(host, ip_text) || inet_pton(AF_INET6, ip_text, &ip) != 1) {
            return "invalid IPv6 address";
        }
        std::array<std::uint8_t, 16> octets{};
        std::memcpy(octets.data(), &ip, octets.size());
        out = SocketAddr::v6_from_octets(octets, port, 0, scope_id);
        return nullptr;
    }

    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return "missing \":port\"";
    const std::string_view host = text.substr(0, colon);
    if (host.empty()) return "missing IP address before ':'";
    if (host.find(':') != std::string_view::npos) {
        return "an IPv6 address must be in brackets, as in \"[::1]:80\"";
    }
    if (const char* err = parse_port(text.substr(colon), port)) return err;
    char ip_text[INET_ADDRSTRLEN];
    in_addr ip{};
    if (!to_c_string(host, ip_text) || inet_pton(AF_INET, ip_text, &ip) != 1) {
        return "invalid IPv4 address (expected a.b.c.d; host names need resolve())";
    }
    std::array<std::uint8_t, 4> octets{};
    std::memcpy(octets.data(), &ip, octets.size());
    out = SocketAddr::v4(octets, port);
    return nullptr;
}

}  // namespace

SocketAddr::SocketAddr() noexcept : storage_{}, family_(Family::v4) {
    const sockaddr_in sa = make_in4({0, 0, 0, 0}, 0);
    std::memcpy(storage_, &sa, sizeof sa);
}

SocketAddr SocketAddr::v4(std::array<std::uint8_t, 4> ip, std::uint16_t port) noexcept {
    SocketAddr addr;
    const sockaddr_in sa = make_in4(ip, port);
    std::memcpy(addr.storage_, &sa, sizeof sa);
    return addr;
}

SocketAddr SocketAddr::v6(std::array<std::uint16_t, 8> segments, std::uint16_t port,
                          std::uint32_t flowinfo, std::uint32_t scope_id) noexcept {
    std::array<std::uint8_t, 16> octets{};
    for (std::size_t i = 0; i < segments.size(); ++i) {
        octets[2 * i] = static_cast<std::uint8_t>(segments[i] >> 8);
        octets[2 * i + 1] = static_cast<std::uint8_t>(segments[i] & 0xff);
    }
    return v6_from_octets(octets, port, flowinfo, scope_id);
}

SocketAddr SocketAddr::v6_from_octets(std::array<std::uint8_t, 16> octets, std::uint16_t port,
                                      std::uint32_t flowinfo, std::uint32_t scope_id) noexcept {
    SocketAddr addr;
    const sockaddr_in6 sa = make_in6(octets, port, flowinfo, scope_id);
    std::memcpy(addr.storage_, &sa, sizeof sa);
    addr.family_ = Family::v6;
    return addr;
}

SocketAddr SocketAddr::parse(std::string_view text) {
    SocketAddr addr;
    if (const char* err = parse_impl(text, addr)) {
        throw std::invalid_argument("SocketAddr::parse(" + detail::quoted(text) + "): " + err);
    }
    return addr;
}

std::optional<SocketAddr> SocketAddr::try_parse(std::string_view text) noexcept {
    SocketAddr addr;
    if (parse_impl(text, addr) != nullptr) return std::nullopt;
    return addr;
}

std::optional<SocketAddr> SocketAddr::from_raw(const void* raw, std::size_t len) noexcept {
    if (raw == nullptr || len < offsetof(sockaddr, sa_family) + sizeof(sa_family_t)) {
        return std::nullopt;
    }
    sa_family_t family{};
    std::memcpy(&family, static_cast<const unsigned char*>(raw) + offsetof(sockaddr, sa_family),
                sizeof family);
    SocketAddr addr;
    if (family == AF_INET && len >= sizeof(sockaddr_in)) {
        std::memcpy(addr.storage_, raw, sizeof(sockaddr_in));
        addr.family_ = Family::v4;
        return addr;
    }
    if (family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
        std::memcpy(addr.storage_, raw, sizeof(sockaddr_in6));
        addr.family_ = Family::v6;
        return addr;
    }
    return std::nullopt;
}

std::uint16_t SocketAddr::port() const noexcept {
    in_port_t port{};
    std::memcpy(&port, storage_ + offsetof(sockaddr_in, sin_port), sizeof port);
    return ntohs(port);
}

void SocketAddr::set_port(std::uint16_t port) noexcept {
    const in_port_t net_port = htons(port);
    std::memcpy(storage_ + offsetof(sockaddr_in, sin_port), &net_port, sizeof net_port);
}

std::array<std::uint8_t, 4> SocketAddr::ipv4_octets() const noexcept {
    std::array<std::uint8_t, 4> octets{};
    if (is_ipv4()) std::memcpy(octets.data(), storage_ + offsetof(sockaddr_in, sin_addr), 4);
    return octets;
}

std::array<std::uint8_t, 16> SocketAddr::ipv6_octets() const noexcept {
    std::array<std::uint8_t, 16> octets{};
    if (is_ipv6()) {
        std::memcpy(octets.data(), storage_ + offsetof(sockaddr_in6, sin6_addr), 16);
    } else {
        octets[10] = 0xff;
        octets[11] = 0xff;
        const auto v4 = ipv4_octets();
        std::copy(v4.begin(), v4.end(), octets.begin() + 12);
    }
    return octets;
}

std::uint32_t SocketAddr::flowinfo() const noexcept {
    if (!is_ipv6()) return 0;
    std::uint32_t value{};
    std::memcpy(&value, storage_ + offsetof(sockaddr_in6, sin6_flowinfo), sizeof value);
    return ntohl(value);
}

std::uint32_t SocketAddr::scope_id() const noexcept {
    if (!is_ipv6()) return 0;
    std::uint32_t value{};
    std::memcpy(&value, storage_ + offsetof(sockaddr_in6, sin6_scope_id), sizeof value);
    return value;
}

bool SocketAddr::is_loopback() const noexcept {
    if (is_ipv4()) return ipv4_octets()[0] == 127;
    static constexpr std::array<std::uint8_t, 16> loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                           0, 0, 0, 0, 0, 0, 0, 1};
    return ipv6_octets() == loopback;
}

bool SocketAddr::is_unspecified() const noexcept {
    if (is_ipv4()) return ipv4_octets() == std::array<std::uint8_t, 4>{};
    return ipv6_octets() == std::array<std::uint8_t, 16>{};
}

std::string SocketAddr::ip_string() const {
    char text[INET6_ADDRSTRLEN] = {};
    if (is_ipv4()) {
        inet_ntop(AF_INET, storage_ + offsetof(sockaddr_in, sin_addr), text, sizeof text);
    } else {
        inet_ntop(AF_INET6, storage_ + offsetof(sockaddr_in6, sin6_addr), text, sizeof text);
    }
    return text;
}

std::string SocketAddr::to_string() const {
    std::string out;
    if (is_ipv4()) {
        out = ip_string();
    } else {
        out = "[" + ip_string();
        if (const auto scope = scope_id(); scope != 0) out += "%" + std::to_string(scope);
        out += ']';
    }
    out += ':';
    out += std::to_string(port());
    return out;
}

std::size_t SocketAddr::size() const noexcept {
    return is_ipv4() ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

bool SocketAddr::operator==(const SocketAddr& other) const noexcept {
    return (*this <=> other) == 0;
}

namespace {
// Byte-wise three-way comparison (libc++ 16 has no operator<=> for std::array).
template <std::size_t N>
std::strong_ordering compare_bytes(const std::array<std::uint8_t, N>& a,
                                   const std::array<std::uint8_t, N>& b) noexcept {
    for (std::size_t i = 0; i < N; ++i) {
        if (a[i] != b[i]) return a[i] < b[i] ? std::strong_ordering::less : std::strong_ordering::greater;
    }
    return std::strong_ordering::equal;
}
}  // namespace

std::strong_ordering SocketAddr::operator<=>(const SocketAddr& other) const noexcept {
    if (family_ != other.family_) return is_ipv4() ? std::strong_ordering::less
                                                   : std::strong_ordering::greater;
    if (is_ipv4()) {
        if (auto c = compare_bytes(ipv4_octets(), other.ipv4_octets()); c != 0) return c;
        return port() <=> other.port();
    }
    if (auto c = compare_bytes(ipv6_octets(), other.ipv6_octets()); c != 0) return c;
    if (auto c = port() <=> other.port(); c != 0) return c;
    if (auto c = flowinfo() <=> other.flowinfo(); c != 0) return c;
    return scope_id() <=> other.scope_id();
}

std::size_t SocketAddr::hash() const noexcept {
    // FNV-1a over the fields operator<=> compares.
    std::uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](std::uint64_t byte) {
        h ^= byte;
        h *= 0x100000001b3ull;
    };
    mix(is_ipv4() ? 4 : 6);
    for (auto b : ipv6_octets()) mix(b);
    for (std::uint64_t v : {std::uint64_t{port()}, std::uint64_t{flowinfo()}, std::uint64_t{scope_id()}}) {
        for (int shift = 0; shift < 32; shift += 8) mix((v >> shift) & 0xff);
    }
    return static_cast<std::size_t>(h);
}

std::ostream& operator<<(std::ostream& os, const SocketAddr& addr) { return os << addr.to_string(); }

}  // namespace async_io::net

namespace async_io::detail {

std::string quoted(std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    const std::string_view shown = text.substr(0, quoted_limit);
    std::string out = "\"";
    for (char c : shown) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += c;
        }
    }
    if (shown.size() < text.size()) {
        out += "...\" (" + std::to_string(text.size()) + " bytes)";
    } else {
        out += '"';
    }
    return out;
}

}  // namespace async_io::detail
