// tcp_echo: a TCP echo server and its clients. The server accepts connections in a loop and
// spawns one task per connection on a LocalExecutor; each task writes back every byte it reads.
//
// Run with no arguments, it does everything in one thread: it starts the server on 127.0.0.1 (a
// free port), runs 8 clients at once, each sending 50 lines and checking that every echo matches,
// plus one client that pushes 1 MiB through while reading it back concurrently (with when_all:
// writing it all before reading would deadlock once the socket buffers fill up), then prints
// a summary and exits 0 (1 on any mismatch or error).
//
//   tcp_echo                            the self-contained demo
//   tcp_echo server PORT                only the server, on 127.0.0.1:PORT, until killed
//                                       (try it with `nc 127.0.0.1 PORT`)
//   tcp_echo client HOST:PORT [LINE...] only a client: sends each LINE (by default a few
//                                       greetings), prints each echo
#include <async_io/async.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kIoTimeout = 5s;     // the longest any single client wait may take
constexpr auto kIdleTimeout = 60s;  // the server closes a connection silent this long
constexpr int kClients = 8;
constexpr int kLinesPerClient = 50;
constexpr std::size_t kBulkBytes = 1 << 20;

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Reads '\n'-terminated lines from a stream, keeping what follows a line for the next call.
class LineReader {
public:
    explicit LineReader(Async<net::TcpStream>& stream) : stream_(stream) {}

    // The next line, without its '\n'; std::nullopt at the end of the stream. Each read waits at
    // most `limit` (then throws std::errc::timed_out).
    Task<std::optional<std::string>> next(Clock::duration limit) {
        for (;;) {
            if (const auto nl = buf_.find('\n'); nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                co_return line;
            }
            char chunk[4096];
            const std::size_t n = co_await timeout(limit, stream_.read(std::as_writable_bytes(std::span(chunk))));
            if (n == 0) {
                if (buf_.empty()) co_return std::nullopt;
                co_return std::exchange(buf_, {});  // a last line without '\n'
            }
            buf_.append(chunk, n);
        }
    }

private:
    Async<net::TcpStream>& stream_;
    std::string buf_;
};

// ---- the server ---------------------------------------------------------------------------

struct ServerStats {
    std::size_t connections = 0;
    std::size_t bytes = 0;
};

// Echoes one connection until the peer closes its side (or stays silent for kIdleTimeout).
Task<void> echo(Async<net::TcpStream> stream, net::SocketAddr peer, ServerStats& stats, bool verbose) {
    std::size_t total = 0;
    try {
        std::byte buf[16384];
        for (;;) {
            const std::size_t n = co_await timeout(kIdleTimeout, stream.read(buf));
            if (n == 0) break;
            co_await timeout(kIdleTimeout, stream.write_all(std::span(buf, n)));
            total += n;
            stats.bytes += n;
        }
    } catch (const std::system_error& e) {
        std::printf("server: %s: %s, closing\n", peer.to_string().c_str(), e.what());
        co_return;
    }
    if (verbose) std::printf("server: %s left after %zu bytes\n", peer.to_string().c_str(), total);
}

// Accepts connections forever, one echo task for each.
Task<void> serve(Async<net::TcpListener>& listener, LocalExecutor& ex, ServerStats& stats, bool verbose) {
    for (;;) {
        bool failed = false;
        try {
            auto [stream, peer] = co_await listener.accept();
            ++stats.connections;
            if (verbose) std::printf("server: connection from %s\n", peer.to_string().c_str());
            ex.spawn(echo(std::move(stream), peer, stats, verbose)).detach();
        } catch (const std::system_error& e) {
            // E.g. too many open files, or a connection reset before it was accepted: report it
            // and go on, after a pause so that a persistent error does not spin.
            std::fprintf(stderr, "server: %s\n", e.what());
            failed = true;
        }
        if (failed) co_await Timer::after(100ms);
    }
}

// ---- the clients --------------------------------------------------------------------------

// Sends `count` lines, one at a time, and checks that each comes back unchanged; then closes
// its writing side and checks that the server closes too without sending anything more.
Task<double> line_client(net::SocketAddr addr, int id, int count) {
    const auto start = Clock::now();
    auto stream = co_await timeout(kIoTimeout, Async<net::TcpStream>::connect(addr));
    stream.get_ref().set_nodelay(true);
    LineReader reader(stream);
    for (int i = 0; i < count; ++i) {
        const std::string line = "client " + std::to_string(id) + " line " + std::to_string(i);
        const std::string wire = line + "\n";
        co_await timeout(kIoTimeout, stream.write_all(as_bytes(wire)));
        const auto reply = co_await reader.next(kIoTimeout);
        if (!reply) throw std::runtime_error("client " + std::to_string(id) + ": the server closed early");
        if (*reply != line)
            throw std::runtime_error("client " + std::to_string(id) + ": sent \"" + line + "\", got back \"" +
                                     *reply + "\"");
    }
    stream.get_ref().shutdown(net::Shutdown::Write);
    if (const auto extra = co_await reader.next(kIoTimeout))
        throw std::runtime_error("client " + std::to_string(id) + ": unexpected data after the echoes: " + *extra);
    co_return ms_since(start);
}

Task<void> send_then_close(Async<net::TcpStream>& stream, const std::string& data) {
    co_await stream.write_all(as_bytes(data));
    stream.get_ref().shutdown(net::Shutdown::Write);
}

// Pushes `size` bytes through the echo server, writing and reading at the same time.
Task<double> bulk_client(net::SocketAddr addr, std::size_t size) {
    const auto start = Clock::now();
    auto stream = co_await timeout(kIoTimeout, Async<net::TcpStream>::connect(addr));
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>('a' + (i * 7 + i / 1000) % 26);
    std::string back;
    back.reserve(size);
    co_await timeout(4 * kIoTimeout, when_all(send_then_close(stream, data), stream.read_to_end(back)));
    if (back.size() != size) {
        throw std::runtime_error("bulk client: sent " + std::to_string(size) + " bytes, got back " +
                                 std::to_string(back.size()));
    }
    if (back != data) throw std::runtime_error("bulk client: the echoed bytes differ from those sent");
    co_return ms_since(start);
}

// ---- the modes ----------------------------------------------------------------------------

Task<void> demo(LocalExecutor& ex, ServerStats& stats) {
    auto listener = Async<net::TcpListener>::bind(net::SocketAddr::parse("127.0.0.1:0"));
    const auto addr = listener.get_ref().local_addr();
    std::printf("echo server listening on %s\n", addr.to_string().c_str());
    auto server = ex.spawn(serve(listener, ex, stats, false));

    const auto start = Clock::now();
    std::printf("starting %d clients of %d lines each, and one 1 MiB bulk transfer, all at once\n",
                kClients, kLinesPerClient);
    std::vector<JoinHandle<double>> clients;
    for (int i = 0; i < kClients; ++i) clients.push_back(ex.spawn(line_client(addr, i, kLinesPerClient)));
    auto bulk = ex.spawn(bulk_client(addr, kBulkBytes));

    for (int i = 0; i < kClients; ++i) {
        const double ms = co_await clients[static_cast<std::size_t>(i)];
        std::printf("  client %d: %d lines echoed back correctly (%.1f ms)\n", i, kLinesPerClient, ms);
    }
    const double bulk_ms = co_await bulk;
    std::printf("  bulk client: %zu bytes echoed back correctly (%.1f ms)\n", kBulkBytes, bulk_ms);

    std::printf("summary: %zu connections, %zu bytes echoed in %.1f ms; all echoes matched\n",
                stats.connections, stats.bytes, ms_since(start));
}

Task<void> run_client(net::SocketAddr addr, std::vector<std::string> lines) {
    std::printf("connecting to %s...\n", addr.to_string().c_str());
    auto stream = co_await timeout(kIoTimeout, Async<net::TcpStream>::connect(addr));
    std::printf("connected from %s\n", stream.get_ref().local_addr().to_string().c_str());
    LineReader reader(stream);
    for (const auto& line : lines) {
        const std::string wire = line + "\n";
        co_await timeout(kIoTimeout, stream.write_all(as_bytes(wire)));
        const auto reply = co_await reader.next(kIoTimeout);
        if (!reply) throw std::runtime_error("the server closed the connection");
        std::printf("sent \"%s\", echo \"%s\"%s\n", line.c_str(), reply->c_str(),
                    *reply == line ? "" : "  <-- MISMATCH");
        if (*reply != line) throw std::runtime_error("the echo differs from what was sent");
    }
}

// "127.0.0.1:7", "[::1]:7", or a host name with a port ("localhost:7").
net::SocketAddr parse_target(std::string_view text) {
    if (auto addr = net::SocketAddr::try_parse(text)) return *addr;
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) throw std::invalid_argument("expected HOST:PORT, got \"" + std::string(text) + "\"");
    const int port = std::stoi(std::string(text.substr(colon + 1)));
    if (port < 0 || port > 65535) throw std::invalid_argument("bad port in \"" + std::string(text) + "\"");
    const auto addrs = net::resolve(text.substr(0, colon), static_cast<std::uint16_t>(port));
    if (addrs.empty()) throw std::runtime_error("no address for \"" + std::string(text) + "\"");
    return addrs.front();
}

int usage() {
    std::fprintf(stderr, "usage: tcp_echo\n       tcp_echo server PORT\n       tcp_echo client HOST:PORT [LINE...]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a server's log shows up at once, even in a pipe
    try {
        ServerStats stats;  // outlives the executors, whose tasks use it
        if (argc == 1) {
            LocalExecutor ex;
            block_on(ex.run(timeout(30s, demo(ex, stats))));
            return 0;
        }
        const std::string_view mode = argv[1];
        if (mode == "server" && argc == 3) {
            const int port = std::stoi(argv[2]);
            if (port < 0 || port > 65535) return usage();
            // Declared before its executor: the tasks that use it must be destroyed first.
            auto listener = Async<net::TcpListener>::bind(net::SocketAddr::loopback_v4(static_cast<std::uint16_t>(port)));
            std::printf("echo server listening on %s (Ctrl-C to stop)\n",
                        listener.get_ref().local_addr().to_string().c_str());
            std::fflush(stdout);
            LocalExecutor server_ex;
            block_on(server_ex.run(serve(listener, server_ex, stats, true)));
            return 0;
        }
        if (mode == "client" && argc >= 3) {
            std::vector<std::string> lines(argv + 3, argv + argc);
            if (lines.empty()) lines = {"hello", "how are you?", "bye"};
            block_on(run_client(parse_target(argv[2]), std::move(lines)));
            return 0;
        }
        return usage();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tcp_echo: %s\n", e.what());
        return 1;
    }
}
