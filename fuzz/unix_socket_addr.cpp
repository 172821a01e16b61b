// libFuzzer target: net::UnixSocketAddr::from_pathname and from_abstract_name on arbitrary
// text, the validation every Unix-socket entry point taking a path goes through.
// Properties checked for every input:
//  - no crash, no sanitizer report, no exception but std::invalid_argument;
//  - from_pathname accepts exactly the non-empty paths without a NUL byte of at most
//    max_path_length() bytes, and gives back a pathname address holding the path as is;
//  - from_abstract_name accepts exactly the names of at most max_path_length() bytes (Linux),
//    any bytes included, and gives back an abstract address holding the name as is;
//  - the raw bytes of each (data(), size()) rebuild an equal address through from_raw;
//  - a rejection's message says what is wrong and stays short whatever the input's length.
#include "check.hpp"

#include <async_io/net.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>

using async_io::net::UnixSocketAddr;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t max = UnixSocketAddr::max_path_length();

    const bool path_ok = !input.empty() && input.find('\0') == std::string_view::npos && input.size() <= max;
    try {
        const UnixSocketAddr addr = UnixSocketAddr::from_pathname(input);
        FUZZ_CHECK(path_ok, "from_pathname accepts only a valid path");
        FUZZ_CHECK(addr.as_pathname() == std::optional<std::string_view>(input), "the path is kept as is");
        FUZZ_CHECK(!addr.is_unnamed() && !addr.is_abstract(), "a pathname address");
        FUZZ_CHECK(addr.to_string() == input, "a pathname prints as itself");
        const auto raw = UnixSocketAddr::from_raw(addr.data(), addr.size());
        FUZZ_CHECK(raw.has_value() && *raw == addr, "from_raw(data(), size()) == a");
    } catch (const std::invalid_argument& e) {
        const std::string_view what = e.what();
        FUZZ_CHECK(!path_ok, "from_pathname rejects only an invalid path");
        FUZZ_CHECK(what.starts_with("Unix socket path"), "the message names the path");
        FUZZ_CHECK(
            what.find(input.empty()                                ? "empty"
                      : input.find('\0') != std::string_view::npos ? "NUL"
                                                                   : "limit") != std::string_view::npos,
            "the message says what is wrong");
        FUZZ_CHECK(what.size() < 2048, "the message stays short");
    }

#if defined(__linux__)
    try {
        const UnixSocketAddr addr = UnixSocketAddr::from_abstract_name(input);
        FUZZ_CHECK(input.size() <= max, "from_abstract_name accepts only a name that fits");
        FUZZ_CHECK(addr.is_abstract(), "an abstract address");
        FUZZ_CHECK(addr.as_abstract_name() == std::optional<std::string_view>(input),
                   "the name is kept as is");
        const auto raw = UnixSocketAddr::from_raw(addr.data(), addr.size());
        FUZZ_CHECK(raw.has_value() && *raw == addr, "from_raw(data(), size()) == a");
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(input.size() > max, "from_abstract_name rejects only a name too long");
        FUZZ_CHECK(std::string_view(e.what()).size() < 2048, "the message stays short");
    }
#endif
    return 0;
}
