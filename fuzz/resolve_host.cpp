// libFuzzer target: the check net::resolve makes of its host before any lookup (src/net/
// resolve.cpp, detail::host_problem), on arbitrary text. Pure: no name is ever looked up here
// (net::resolve is called only for hosts the check rejects, which it refuses before getaddrinfo).
// Properties checked for every input:
//  - no crash, no sanitizer report;
//  - an accepted host is not empty, holds no NUL byte, does not start with '[', and has a ':'
//    only if it is an IPv6 address (with an optional "%zone");
//  - every IP address SocketAddr::parse accepts in "a.b.c.d:port" or "[v6]:port" form is an
//    accepted host once its port and brackets are stripped (what a user would pass);
//  - for a rejected host, net::resolve throws std::invalid_argument whose message quotes the
//    host (escaped, cut short) and gives the reason.
#include "check.hpp"

#include "net/socket_ops.hpp"

#include <async_io/net.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace net = async_io::net;

namespace {

bool is_ipv6(std::string_view text) {
    const std::string s(text.substr(0, text.find('%')));
    in6_addr out{};
    return s.find('\0') == std::string::npos && ::inet_pton(AF_INET6, s.c_str(), &out) == 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    const char* problem = async_io::detail::host_problem(input);
    if (problem == nullptr) {
        FUZZ_CHECK(!input.empty(), "an empty host is refused");
        FUZZ_CHECK(input.find('\0') == std::string_view::npos, "a NUL byte is refused");
        FUZZ_CHECK(input.front() != '[', "brackets are refused");
        FUZZ_CHECK(input.find(':') == std::string_view::npos || is_ipv6(input),
                   "':' only in an IPv6 address");
    } else {
        try {
            (void)net::resolve(input, 80);
            FUZZ_CHECK(false, "resolve refuses what host_problem refuses");
        } catch (const std::invalid_argument& e) {
            const std::string_view what = e.what();
            FUZZ_CHECK(what.starts_with("resolve(\""), "the message names the call");
            FUZZ_CHECK(what.find(problem) != std::string_view::npos, "the message gives the reason");
            FUZZ_CHECK(what.size() < 2048, "the message stays short");
        }
    }

    // The host of any socket address SocketAddr::parse accepts is a host resolve accepts.
    if (const auto addr = net::SocketAddr::try_parse(input)) {
        const std::string ip = addr->ip_string();
        FUZZ_CHECK(async_io::detail::host_problem(ip) == nullptr, "resolve accepts every IP address");
        if (addr->is_ipv6()) {
            const std::string_view host = input.substr(1, input.find(']') - 1);
            FUZZ_CHECK(async_io::detail::host_problem(host) == nullptr, "resolve accepts the bracketed text");
        }
    }
    return 0;
}
