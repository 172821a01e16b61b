// main() for every test executable (linked in as the async_io_catch_main library).
#if defined(ASYNC_IO_CATCH2_V3)
#  include <catch2/catch_session.hpp>

int main(int argc, char* argv[]) {
    return Catch::Session().run(argc, argv);
}
#else
#  define CATCH_CONFIG_MAIN
#  include <catch2/catch.hpp>
#endif

// AddressSanitizer's container-overflow check needs every piece of code that touches an
// annotated container (libc++'s vector and string) instrumented; this file (Catch2's runner) is
// compiled without sanitizers to save build time, and with it libc++ + ASan reports false
// overflows in Catch2's own test registration (seen at -O1). libstdc++ is not annotated, so the
// g++ builds lose nothing. A no-op in builds without ASan.
extern "C" const char* __asan_default_options() { return "detect_container_overflow=0"; }
