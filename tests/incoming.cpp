// Async<listener>::incoming(): Rust's sequence of accepted connections.
#include "catch.hpp"

#include <async_io/async.hpp>

#include <unistd.h>

#include <string>

using namespace async_io;
using namespace std::chrono_literals;

TEST_CASE("incoming() yields each accepted TCP connection in turn", "[async]") {
    auto listener = Async<net::TcpListener>::bind(net::SocketAddr::parse("127.0.0.1:0"));
    const auto addr = listener.get_ref().local_addr();
    block_on(timeout(10s, [](Async<net::TcpListener>& l, net::SocketAddr addr) -> Task<void> {
        auto incoming = l.incoming();
        for (int i = 0; i < 3; ++i) {
            auto [client, server] = co_await when_all(Async<net::TcpStream>::connect(addr), incoming.next());
            co_await client.write_all(as_bytes("x"));
            std::byte b{};
            // (Not `REQUIRE(co_await ...)`: GCC 12 evaluates a co_await inside Catch2's macro
            // twice; keep co_await out of assertion macros.)
            const std::size_t n = co_await server.read({&b, 1});
            REQUIRE(n == 1);
            REQUIRE(server.get_ref().peer_addr() == client.get_ref().local_addr());
        }
    }(listener, addr)));
}

TEST_CASE("incoming() works for a Unix listener", "[async]") {
    auto dir = std::string("/tmp/async_io_incoming_") + std::to_string(::getpid());
    auto listener = Async<net::UnixListener>::bind(net::UnixSocketAddr::from_abstract_name(dir));
    block_on(timeout(10s, [](Async<net::UnixListener>& l, std::string name) -> Task<void> {
        auto incoming = l.incoming();
        auto [client, server] = co_await when_all(
            Async<net::UnixStream>::connect(net::UnixSocketAddr::from_abstract_name(name)), incoming.next());
        co_await server.write_all(as_bytes("hi"));
        std::byte buf[2];
        co_await client.read_exact(buf);
        REQUIRE(buf[1] == std::byte{'i'});
    }(listener, dir)));
}
