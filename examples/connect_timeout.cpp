// connect-with-timeout, async-io's README example in C++: connect to a server, but give up after
// a deadline. Runs on its own: it starts a small local server to talk to, and a local listener
// that never accepts (its backlog is full, so the kernel drops further SYNs: to a client this is
// what an unreachable, blackholed host looks like), and prints what happens.
//
//   connect_timeout                 the demo against the two local listeners
//   connect_timeout HOST:PORT       connect to that address with a 1 s timeout
#include <async_io/async.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Connects to `addr` within `limit`, sends a request and prints the first line of the answer.
Task<void> fetch(net::SocketAddr addr, std::chrono::milliseconds limit) {
    const auto start = std::chrono::steady_clock::now();
    std::printf("connecting to %s (timeout %lld ms)...\n", addr.to_string().c_str(),
                static_cast<long long>(limit.count()));
    try {
        auto stream = co_await timeout(limit, Async<net::TcpStream>::connect(addr));
        std::printf("  connected in %.1f ms\n", ms_since(start));
        co_await stream.write_all(as_bytes("GET / HTTP/1.0\r\n\r\n"));
        std::string reply;
        co_await timeout(limit, stream.read_to_end(reply));
        std::printf("  got %zu bytes: %s\n", reply.size(), reply.substr(0, reply.find('\n')).c_str());
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::timed_out) {
            std::printf("  timed out after %.1f ms, as expected for a host that does not answer\n",
                        ms_since(start));
        } else {
            std::printf("  failed after %.1f ms: %s\n", ms_since(start), e.what());
            throw;
        }
    }
}

// A tiny HTTP server: answers one request per connection.
Task<void> serve(Async<net::TcpListener>& listener) {
    for (;;) {
        auto [stream, peer] = co_await listener.accept();
        std::byte buf[1024];
        (void)co_await stream.read(buf);
        co_await stream.write_all(as_bytes("HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"));
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1) {
        block_on(fetch(net::SocketAddr::parse(argv[1]), 1000ms));
        return 0;
    }

    auto server = Async<net::TcpListener>::bind(net::SocketAddr::parse("127.0.0.1:0"));
    const auto server_addr = server.get_ref().local_addr();

    // A listener nobody accepts from, with its backlog filled: the kernel drops further SYNs.
    auto silent = net::TcpListener::bind(net::SocketAddr::parse("127.0.0.1:0"));
    const auto silent_addr = silent.local_addr();
    std::vector<net::TcpStream> fillers;
    for (int i = 0; i < 200; ++i) fillers.push_back(net::TcpStream::connect_nonblocking(silent_addr));

    LocalExecutor ex;
    block_on(ex.run([&]() -> Task<void> {
        auto server_task = ex.spawn(serve(server));
        co_await fetch(server_addr, 1000ms);  // answers at once
        co_await fetch(silent_addr, 300ms);   // never completes the handshake: times out
    }()));
    std::printf("done\n");
    return 0;
}
