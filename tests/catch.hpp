// The one header a test includes for Catch2: `#include "catch.hpp"`, never Catch2's own headers.
// The suite builds with Catch2 v2 (Debian 12 packages 2.13) and with Catch2 v3; tests/CMakeLists.txt
// defines ASYNC_IO_CATCH2_V3 when it found v3.
//
// Use what both versions offer alike: TEST_CASE, SECTION, REQUIRE, CHECK, REQUIRE_FALSE,
// REQUIRE_NOTHROW, REQUIRE_THROWS, REQUIRE_THROWS_AS, TEMPLATE_TEST_CASE, GENERATE, INFO,
// CAPTURE, WARN, FAIL, SUCCEED. Avoid Approx, matchers and anything else that moved between
// versions; for std::system_error use REQUIRE_THROWS_ERRC below.
#pragma once

#if defined(ASYNC_IO_CATCH2_V3)
#  include <catch2/catch_all.hpp>
#else
#  include <catch2/catch.hpp>
#endif

#include <system_error>

namespace async_io::test {

// The std::error_code of the std::system_error that `f()` throws, or an empty code if it throws
// nothing. Any other exception propagates and fails the test.
template <class F>
std::error_code system_error_of(F&& f) {
    try {
        static_cast<F&&>(f)();
    } catch (const std::system_error& e) {
        return e.code();
    }
    return {};
}

}  // namespace async_io::test

// REQUIRE_THROWS_ERRC(expr, std::errc::x): `expr` throws a std::system_error whose code compares
// equal to std::errc::x (the library's way of reporting OS errors; DESIGN.md "Errors").
#define REQUIRE_THROWS_ERRC(expr, errc) \
    REQUIRE(::async_io::test::system_error_of([&] { (void)(expr); }) == (errc))
#define CHECK_THROWS_ERRC(expr, errc) \
    CHECK(::async_io::test::system_error_of([&] { (void)(expr); }) == (errc))
