// libFuzzer target: net::SocketAddr::parse and try_parse on arbitrary text.
// Properties checked for every input:
//  - no crash, no sanitizer report, no exception but std::invalid_argument;
//  - try_parse returns std::nullopt exactly when parse throws, and the same address otherwise;
//  - a rejection's message starts "SocketAddr::parse(" and stays short whatever the input's length;
//  - an accepted address prints in a canonical form that parses back to an equal address with
//    the same hash (parse never sets IPv6 flow info, the documented exception to the round trip,
//    so none arises here), and printing that again gives the same text;
//  - its raw sockaddr bytes (data(), size()) rebuild an equal address through from_raw.
#include "check.hpp"

#include <async_io/net.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

using async_io::net::SocketAddr;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    const std::optional<SocketAddr> tried = SocketAddr::try_parse(input);
    std::optional<SocketAddr> parsed;
    try {
        parsed = SocketAddr::parse(input);
    } catch (const std::invalid_argument& e) {
        const std::string_view what = e.what();
        FUZZ_CHECK(what.starts_with("SocketAddr::parse(\""), "the message names the call");
        FUZZ_CHECK(what.size() < 2048, "the message stays short");
    }
    FUZZ_CHECK(tried.has_value() == parsed.has_value(), "try_parse agrees with parse");
    if (!parsed) return 0;
    FUZZ_CHECK(*tried == *parsed, "try_parse and parse give the same address");
    FUZZ_CHECK(parsed->is_ipv4() != parsed->is_ipv6(), "exactly one family");
    FUZZ_CHECK(parsed->flowinfo() == 0, "parse sets no flow info");

    const std::string printed = parsed->to_string();
    const std::optional<SocketAddr> again = SocketAddr::try_parse(printed);
    FUZZ_CHECK(again.has_value(), "to_string() parses");
    FUZZ_CHECK(*again == *parsed, "parse(to_string(a)) == a");
    FUZZ_CHECK(again->hash() == parsed->hash(), "equal addresses hash alike");
    FUZZ_CHECK((*again <=> *parsed) == 0, "ordering agrees with ==");
    FUZZ_CHECK(again->to_string() == printed, "to_string() is canonical");

    const std::optional<SocketAddr> raw = SocketAddr::from_raw(parsed->data(), parsed->size());
    FUZZ_CHECK(raw.has_value() && *raw == *parsed, "from_raw(data(), size()) == a");
    return 0;
}
