// FUZZ_CHECK(condition, what): the fuzz targets' assertion. A failed check prints what was
// expected and the input (escaped), then aborts, which libFuzzer reports as a crash and saves
// the input as an artifact. Unlike assert() it stays on in every build type.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace async_io::fuzz {

/// Prints `text` with non-printable bytes as \xHH.
inline void print_escaped(std::string_view text) {
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f || c == '\\') {
            std::fprintf(stderr, "\\x%02x", u);
        } else {
            std::fputc(c, stderr);
        }
    }
}

[[noreturn]] inline void check_failed(const char* condition, const char* what, std::string_view input,
                                      const char* file, int line) {
    std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n  input (%zu bytes): \"", file, line, condition,
                 what, input.size());
    print_escaped(input);
    std::fprintf(stderr, "\"\n");
    std::abort();
}

}  // namespace async_io::fuzz

/// Needs a std::string_view named `input` in scope: the fuzzer's input, printed on failure.
#define FUZZ_CHECK(condition, what)                                                                    \
    do {                                                                                               \
        if (!(condition)) ::async_io::fuzz::check_failed(#condition, what, input, __FILE__, __LINE__); \
    } while (false)
