// The project's candidate for ../shared/bench/compare: the five workloads of the peer benchmark
// harness (pingpong, echo, c10k, timers, timeout), written the way a user of async_io writes
// them, mirroring peers/rust-async-io/src/main.rs: Tasks on one LocalExecutor driven by
// block_on(ex.run(...)) on the main thread, Async<net::TcpStream>, Timer, and timeout/race.
// CLI contract and result line: ../shared/bench/README.md.
#include <async_io/async.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

constexpr const char* impl = "async_io";

struct Args {
    std::string workload;
    std::uint64_t msgs = 0;
    std::size_t size = 0;
    std::size_t conns = 0;
    std::size_t active = 0;
    std::uint64_t count = 0;
};

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: %s pingpong|echo|c10k|timers|timeout [--msgs N] [--size B] [--conns C] "
                 "[--active A] [--count N]\n",
                 impl);
    std::exit(2);
}

Args parse_args(int argc, char** argv) {
    if (argc < 2) usage();
    Args a;
    a.workload = argv[1];
    // Defaults are part of the shared CLI contract (the same in every peer).
    if (a.workload == "pingpong") a = {a.workload, 100'000, 64, 1, 1, 0};
    else if (a.workload == "echo") a = {a.workload, 1'000, 64, 100, 100, 0};
    else if (a.workload == "c10k") a = {a.workload, 1'000, 64, 10'000, 100, 0};
    else if (a.workload == "timers") a = {a.workload, 0, 0, 0, 0, 1'000'000};
    else if (a.workload == "timeout") a = {a.workload, 0, 0, 0, 0, 200'000};
    else usage();
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) usage();
        char* end = nullptr;
        const unsigned long long v = std::strtoull(argv[i + 1], &end, 10);
        if (!*argv[i + 1] || *end || argv[i + 1][0] == '-') usage();
        const std::string flag = argv[i];
        if (flag == "--msgs") a.msgs = v;
        else if (flag == "--size") a.size = v;
        else if (flag == "--conns") a.conns = v;
        else if (flag == "--active") a.active = v;
        else if (flag == "--count") a.count = v;
        else usage();
    }
    if (a.workload == "pingpong") a.conns = a.active = 1;
    if (a.workload == "echo") a.active = a.conns;
    if (a.active > a.conns || (a.size == 0 && a.conns > 0)) usage();
    return a;
}

// splitmix64 seeded with 42: the same deadline sequence in every peer.
struct SplitMix64 {
    std::uint64_t s;
    std::uint64_t next() {
        s += 0x9E3779B97F4A7C15ull;
        std::uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
};

struct Result {
    std::uint64_t ops;
    std::chrono::steady_clock::duration elapsed;
};

using Stream = Async<net::TcpStream>;

Task<std::pair<Stream, Stream>> connect_pair(Async<net::TcpListener>& listener, net::SocketAddr addr) {
    auto client = co_await Stream::connect(addr);
    auto [server, peer] = co_await listener.accept();
    client.get_ref().set_nodelay(true);
    server.get_ref().set_nodelay(true);
    co_return std::pair<Stream, Stream>{std::move(client), std::move(server)};
}

Task<void> echo_server(Stream stream, std::size_t size) {
    std::vector<std::byte> buf(size);
    for (;;) {
        const std::size_t n = co_await stream.read(buf);
        if (n == 0) co_return;
        co_await stream.write_all({buf.data(), n});
    }
}

Task<void> echo_client(Stream stream, std::uint64_t msgs, std::size_t size) {
    std::vector<std::byte> out(size, std::byte{7});
    std::vector<std::byte> back(size);
    for (std::uint64_t i = 0; i < msgs; ++i) {
        co_await stream.write_all(out);
        co_await stream.read_exact(back);
    }
}

// pingpong, echo and c10k: `conns` connections, the first `active` of them doing `msgs` round
// trips each; only that phase is timed.
Task<Result> run_echo(LocalExecutor& ex, const Args& a) {
    auto listener = Async<net::TcpListener>::bind(net::SocketAddr::parse("127.0.0.1:0"));
    const auto addr = listener.get_ref().local_addr();
    std::vector<Stream> clients;
    clients.reserve(a.conns);
    for (std::size_t i = 0; i < a.conns; ++i) {
        auto [client, server] = co_await connect_pair(listener, addr);
        ex.spawn(echo_server(std::move(server), a.size)).detach();
        clients.push_back(std::move(client));
    }
    const auto start = std::chrono::steady_clock::now();
    std::vector<JoinHandle<void>> tasks;
    tasks.reserve(a.active);
    for (std::size_t i = 0; i < a.active; ++i) tasks.push_back(ex.spawn(echo_client(std::move(clients[i]), a.msgs, a.size)));
    for (auto& t : tasks) co_await t;
    const auto elapsed = std::chrono::steady_clock::now() - start;
    clients.clear();  // the idle connections stay open until here
    co_return Result{a.active * a.msgs, elapsed};
}

Task<void> sleep_for(std::chrono::microseconds d) { co_await Timer::after(d); }

Task<Result> run_timers(LocalExecutor& ex, std::uint64_t count) {
    SplitMix64 rng{42};
    const auto start = std::chrono::steady_clock::now();
    std::vector<JoinHandle<void>> tasks;
    tasks.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i)
        tasks.push_back(ex.spawn(sleep_for(std::chrono::microseconds(rng.next() % 50'001))));
    for (auto& t : tasks) co_await t;
    co_return Result{count, std::chrono::steady_clock::now() - start};
}

// The usual read-with-timeout; the byte is already there, so the read wins and the timer is
// never armed.
Task<Result> run_timeout(std::uint64_t count) {
    auto listener = Async<net::TcpListener>::bind(net::SocketAddr::parse("127.0.0.1:0"));
    auto [client, server] = co_await connect_pair(listener, listener.get_ref().local_addr());
    std::byte buf[64];
    const std::byte one{1};
    const auto start = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
        // a plain non-blocking send(2) of one byte, the same in every peer
        client.get_ref().write({&one, 1});
        const std::size_t n = co_await timeout(1s, server.read(buf));
        if (n != 1) throw std::runtime_error("timeout: short read");
    }
    co_return Result{count, std::chrono::steady_clock::now() - start};
}

long peak_rss_kb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;  // KiB on Linux
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse_args(argc, argv);
    Result r{};
    try {
        LocalExecutor ex;
        r = block_on(ex.run([](LocalExecutor& ex, const Args& a) -> Task<Result> {
            if (a.workload == "timers") co_return co_await run_timers(ex, a.count);
            if (a.workload == "timeout") co_return co_await run_timeout(a.count);
            co_return co_await run_echo(ex, a);
        }(ex, a)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s: %s\n", impl, a.workload.c_str(), e.what());
        return 1;
    }
    const double secs = std::chrono::duration<double>(r.elapsed).count();
    std::printf("workload=%s impl=%s ops=%llu secs=%.6f ops_per_sec=%.0f rss_kb=%ld\n", a.workload.c_str(), impl,
                static_cast<unsigned long long>(r.ops), secs, static_cast<double>(r.ops) / secs, peak_rss_kb());
    return 0;
}
