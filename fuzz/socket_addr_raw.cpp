// libFuzzer target: net::SocketAddr::from_raw and net::UnixSocketAddr::from_raw, the parsers of
// the raw sockaddr bytes the kernel fills in (accept, recvfrom, getsockname), on arbitrary bytes.
// Properties checked for every input:
//  - no crash, no sanitizer report (no read beyond the `len` bytes given, whatever they say);
//  - SocketAddr: accepted only for a complete AF_INET / AF_INET6 address; its raw bytes
//    rebuild an equal address; it prints as text that parses back to it, flow info aside (the
//    documented exception: the text form has no flow info);
//  - UnixSocketAddr: exactly one of unnamed, abstract, pathname; a pathname holds no NUL; its
//    raw bytes rebuild an equal address; a pathname or abstract name that the constructors
//    accept rebuilds an equal address through from_pathname / from_abstract_name.
#include "check.hpp"

#include <async_io/net.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/socket.h>

using async_io::net::SocketAddr;
using async_io::net::UnixSocketAddr;

namespace {

void check_inet(std::string_view input) {
    const std::optional<SocketAddr> addr = SocketAddr::from_raw(input.data(), input.size());
    if (!addr) return;
    FUZZ_CHECK(addr->size() <= input.size(), "accepted only when complete");
    sa_family_t family{};
    std::memcpy(&family, input.data() + offsetof(sockaddr, sa_family), sizeof family);
    FUZZ_CHECK(family == (addr->is_ipv4() ? AF_INET : AF_INET6), "the family is the one given");

    const std::optional<SocketAddr> raw = SocketAddr::from_raw(addr->data(), addr->size());
    FUZZ_CHECK(raw.has_value() && *raw == *addr, "from_raw(data(), size()) == a");

    const std::optional<SocketAddr> parsed = SocketAddr::try_parse(addr->to_string());
    FUZZ_CHECK(parsed.has_value(), "to_string() parses");
    const SocketAddr without_flow =
        addr->is_ipv4() ? *addr
                        : SocketAddr::v6_from_octets(addr->ipv6_octets(), addr->port(), 0, addr->scope_id());
    FUZZ_CHECK(*parsed == without_flow, "parse(to_string(a)) == a, flow info aside");
    FUZZ_CHECK(parsed->hash() == without_flow.hash(), "equal addresses hash alike");
}

void check_unix(std::string_view input) {
    const std::optional<UnixSocketAddr> addr = UnixSocketAddr::from_raw(input.data(), input.size());
    if (!addr) return;
    const int kinds =
        int{addr->is_unnamed()} + int{addr->is_abstract()} + int{addr->as_pathname().has_value()};
    FUZZ_CHECK(kinds == 1, "exactly one of unnamed, abstract, pathname");
    FUZZ_CHECK(addr->size() <= UnixSocketAddr::storage_size, "the length fits the storage");
    (void)addr->to_string();

    const std::optional<UnixSocketAddr> raw = UnixSocketAddr::from_raw(addr->data(), addr->size());
    FUZZ_CHECK(raw.has_value() && *raw == *addr, "from_raw(data(), size()) == a");

    if (const auto path = addr->as_pathname()) {
        FUZZ_CHECK(path->find('\0') == std::string_view::npos, "a pathname holds no NUL");
        FUZZ_CHECK(!path->empty(), "a pathname is not empty");
        FUZZ_CHECK(addr->to_string() == *path, "a pathname prints as itself");
        if (path->size() <= UnixSocketAddr::max_path_length()) {
            FUZZ_CHECK(UnixSocketAddr::from_pathname(*path) == *addr, "from_pathname rebuilds it");
        }
    }
    if (const auto name = addr->as_abstract_name()) {
        FUZZ_CHECK(UnixSocketAddr::from_abstract_name(*name) == *addr, "from_abstract_name rebuilds it");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // A copy of exactly `size` bytes on the heap, so that ASan sees any read past the end.
    const std::vector<char> bytes(data, data + size);
    const std::string_view input(bytes.data(), bytes.size());
    check_inet(input);
    check_unix(input);
    return 0;
}
