// The plain (blocking) net and fd types: addresses, TCP, UDP, Unix sockets, resolve(), OwnedFd,
// and the non-throwing sys layer under them. Loopback only.
// Pairs are unpacked by hand rather than with structured bindings because clang 14 cannot
// capture structured bindings in lambdas (and Catch2's assertion macros make lambdas).
#include "catch.hpp"

#include <async_io/detail/io_awaiter.hpp>
#include <async_io/detail/sys.hpp>
#include <async_io/fd.hpp>
#include <async_io/net.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#if defined(__linux__)
#  include <sys/eventfd.h>
#endif
#include <unistd.h>

using namespace async_io;
using namespace async_io::net;

namespace {

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s)); }

std::string text(std::span<const std::byte> buf) {
    return std::string(reinterpret_cast<const char*>(buf.data()), buf.size());
}

/// Reads from `read` until `n` bytes arrived or EOF.
template <typename Read>
std::string read_n(Read read, std::size_t n) {
    std::string out;
    std::byte buf[256];
    while (out.size() < n) {
        const std::size_t got = read(std::span(buf, std::min(sizeof buf, n - out.size())));
        if (got == 0) break;
        out += text(std::span(buf, got));
    }
    return out;
}

bool is_cloexec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }
bool is_nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }
bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

std::size_t count_open_fds() {
    std::size_t n = 0;
#if defined(__linux__)
    const char* const dir = "/proc/self/fd";
#else
    const char* const dir = "/dev/fd";
#endif
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++n;
    return n;
}

/// The message of the exception `f` throws (which must be derived from std::exception).
template <typename F>
std::string message_of(F f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

/// A fresh directory for socket files, removed with its contents at the end of the scope.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/async_io_net_XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(std::string_view name) const { return path + "/" + std::string(name); }
};

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
std::uint16_t closed_port() {
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    return listener.local_addr().port();
}

/// The loopback IPv6 listener, or std::nullopt when this machine has no IPv6.
std::optional<TcpListener> bind_v6_loopback() {
    try {
        return TcpListener::bind(SocketAddr::loopback_v6(0));
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::address_family_not_supported ||
            e.code() == std::errc::address_not_available) {
            return std::nullopt;
        }
        throw;
    }
}

/// Waits until `fd` reports one of `events` (at most 10 s).
bool wait_for(int fd, short events) {
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, 10'000) == 1;
}
bool wait_writable(int fd) { return wait_for(fd, POLLOUT); }
bool wait_readable(int fd) { return wait_for(fd, POLLIN); }

}  // namespace

// ---- SocketAddr ---------------------------------------------------------------------------

TEST_CASE("SocketAddr parses and prints IPv4 addresses", "[net]") {
    struct Case {
        std::string_view text;
        std::array<std::uint8_t, 4> ip;
        std::uint16_t port;
    };
    const Case cases[] = {
        {"127.0.0.1:8080", {127, 0, 0, 1}, 8080},
        {"0.0.0.0:0", {0, 0, 0, 0}, 0},
        {"255.255.255.255:65535", {255, 255, 255, 255}, 65535},
        {"10.1.2.3:1", {10, 1, 2, 3}, 1},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        const auto addr = SocketAddr::parse(c.text);
        CHECK(addr.is_ipv4());
        CHECK_FALSE(addr.is_ipv6());
        CHECK(addr.ipv4_octets() == c.ip);
        CHECK(addr.port() == c.port);
        CHECK(addr.to_string() == c.text);
        CHECK(addr == SocketAddr::v4(c.ip, c.port));
        CHECK(SocketAddr::try_parse(c.text) == addr);
    }
    CHECK(SocketAddr::parse("127.0.0.1:8080").ip_string() == "127.0.0.1");
    CHECK(SocketAddr::parse("1.2.3.4:080").port() == 80);
}

TEST_CASE("SocketAddr parses and prints IPv6 addresses with scope ids", "[net]") {
    struct Case {
        std::string_view text;
        std::string_view printed;  // RFC 5952 form
        std::uint16_t port;
        std::uint32_t scope;
    };
    const Case cases[] = {
        {"[::1]:80", "[::1]:80", 80, 0},
        {"[::]:0", "[::]:0", 0, 0},
        {"[fe80::1%2]:80", "[fe80::1%2]:80", 80, 2},
        {"[2001:DB8:0:0:0:0:0:1]:65535", "[2001:db8::1]:65535", 65535, 0},
        {"[::ffff:1.2.3.4]:9", "[::ffff:1.2.3.4]:9", 9, 0},
        {"[fe80::1%0]:1", "[fe80::1]:1", 1, 0},
        {"[fe80::1%4294967295]:1", "[fe80::1%4294967295]:1", 1, 4294967295u},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        const auto addr = SocketAddr::parse(c.text);
        CHECK(addr.is_ipv6());
        CHECK(addr.port() == c.port);
        CHECK(addr.scope_id() == c.scope);
        CHECK(addr.to_string() == c.printed);
        CHECK(SocketAddr::parse(addr.to_string()) == addr);
    }
    const auto local = SocketAddr::parse("[::1]:80");
    CHECK(local == SocketAddr::v6({0, 0, 0, 0, 0, 0, 0, 1}, 80));
    CHECK(local.ip_string() == "::1");
    CHECK(local.is_loopback());
    CHECK(SocketAddr::parse("[fe80::1%2]:80").ip_string() == "fe80::1");

    // A zone given as an interface name is looked up.
    const unsigned lo = ::if_nametoindex("lo");
    if (lo != 0) {
        const auto by_name = SocketAddr::parse("[fe80::1%lo]:80");
        CHECK(by_name.scope_id() == lo);
        CHECK(by_name.to_string() == "[fe80::1%" + std::to_string(lo) + "]:80");
    }
}

TEST_CASE("SocketAddr::parse rejects junk with std::invalid_argument naming the input", "[net]") {
    const std::string_view junk[] = {
        "",
        "127.0.0.1",
        ":80",
        "1.2.3.4:99999",
        "1.2.3.4:65536",
        "1.2.3.4:",
        "1.2.3.4:-1",
        "1.2.3.4:+80",
        "1.2.3.4:8o",
        "1.2.3.4:123456",
        "[::1",
        "[::1]",
        "[::1]80",
        "[::1]:",
        "[]:80",
        "::1:80",
        "::1",
        "localhost:80",
        "256.0.0.1:80",
        "1.2.3:80",
        "1.2.3.4.5:80",
        "01.2.3.4:80",
        " 1.2.3.4:80",
        "1.2.3.4:80 ",
        "[fe80::1%]:80",
        "[fe80::1%no_such_interface0]:80",
        "[fe80::1%4294967296]:80",
        "[1.2.3.4]:80",
        "[::1]:80:80",
        "[[::1]]:80",
        "[gggg::1]:80",
        std::string_view("1.2.3.4\0:80", 11),
    };
    for (const auto junk_text : junk) {
        INFO('"' << junk_text << '"');
        CHECK_THROWS_AS(SocketAddr::parse(junk_text), std::invalid_argument);
        CHECK_FALSE(SocketAddr::try_parse(junk_text).has_value());
    }
    const auto message = message_of([] { SocketAddr::parse("1.2.3.4:99999"); });
    CHECK(message.find("\"1.2.3.4:99999\"") != std::string::npos);
    CHECK(message.find("port") != std::string::npos);
    CHECK(message_of([] { SocketAddr::parse("::1:80"); }).find("brackets") != std::string::npos);
}

TEST_CASE("SocketAddr constructors and accessors agree", "[net]") {
    auto addr = SocketAddr::v4({192, 168, 1, 2}, 443);
    CHECK(addr.to_string() == "192.168.1.2:443");
    CHECK(addr.size() == 16);
    addr.set_port(8443);
    CHECK(addr.port() == 8443);
    CHECK(addr.to_string() == "192.168.1.2:8443");
    CHECK(addr.flowinfo() == 0);
    CHECK(addr.scope_id() == 0);
    CHECK(addr.ipv6_octets() ==
          std::array<std::uint8_t, 16>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 2});

    auto v6 = SocketAddr::v6({0xfe80, 0, 0, 0, 0, 0, 0, 1}, 80, 7, 3);
    CHECK(v6.size() == 28);
    CHECK(v6.flowinfo() == 7);
    CHECK(v6.scope_id() == 3);
    CHECK(v6.to_string() == "[fe80::1%3]:80");
    CHECK(v6.ipv4_octets() == std::array<std::uint8_t, 4>{});
    CHECK(SocketAddr::v6_from_octets(v6.ipv6_octets(), 80, 7, 3) == v6);

    CHECK(SocketAddr{} == SocketAddr::parse("0.0.0.0:0"));
    CHECK(SocketAddr::unspecified_v4(5).is_unspecified());
    CHECK(SocketAddr::unspecified_v6(5).is_unspecified());
    CHECK(SocketAddr::loopback_v4(1).is_loopback());
    CHECK(SocketAddr::parse("127.9.9.9:1").is_loopback());
    CHECK_FALSE(SocketAddr::parse("128.0.0.1:1").is_loopback());

    std::ostringstream os;
    os << SocketAddr::parse("[::1]:80") << ' ' << SocketAddr::loopback_v4(9);
    CHECK(os.str() == "[::1]:80 127.0.0.1:9");

    // data()/size() are a real sockaddr; from_raw reads one back.
    CHECK(SocketAddr::from_raw(v6.data(), v6.size()) == v6);
    CHECK_FALSE(SocketAddr::from_raw(v6.data(), 10).has_value());
    CHECK_FALSE(SocketAddr::from_raw(nullptr, 0).has_value());
}

TEST_CASE("SocketAddr compares and hashes like Rust's SocketAddr", "[net]") {
    const auto a = SocketAddr::parse("1.2.3.4:80");
    const auto b = SocketAddr::parse("1.2.3.4:81");
    const auto c = SocketAddr::parse("1.2.3.5:1");
    const auto d = SocketAddr::parse("[::]:0");
    const auto e = SocketAddr::parse("[::1]:0");
    const auto f = SocketAddr::parse("[::1%1]:0");
    CHECK(a < b);
    CHECK(b < c);  // IP first, then port
    CHECK(c < d);  // every IPv4 before every IPv6
    CHECK(d < e);
    CHECK(e < f);  // scope id last
    CHECK(a == SocketAddr::v4({1, 2, 3, 4}, 80));
    CHECK(a != b);
    CHECK((a <=> a) == std::strong_ordering::equal);

    std::unordered_set<SocketAddr> set{a, b, c, d, e, f, SocketAddr::parse("1.2.3.4:80")};
    CHECK(set.size() == 6);
    CHECK(set.count(SocketAddr::parse("[::1%1]:0")) == 1);
    CHECK(std::hash<SocketAddr>{}(a) == std::hash<SocketAddr>{}(SocketAddr::v4({1, 2, 3, 4}, 80)));
}

TEST_CASE("UnixSocketAddr tells paths, abstract names and unnamed apart", "[net]") {
    const auto path = UnixSocketAddr::from_pathname("/tmp/x.sock");
    CHECK(path.as_pathname() == std::string_view("/tmp/x.sock"));
    CHECK_FALSE(path.as_abstract_name().has_value());
    CHECK_FALSE(path.is_unnamed());
    CHECK(path.to_string() == "/tmp/x.sock");
    CHECK(path == UnixSocketAddr::from_pathname("/tmp/x.sock"));
    CHECK(path != UnixSocketAddr::from_pathname("/tmp/y.sock"));

    const UnixSocketAddr unnamed;
    CHECK(unnamed.is_unnamed());
    CHECK_FALSE(unnamed.as_pathname().has_value());
    CHECK(unnamed.to_string() == "(unnamed)");
    CHECK(unnamed != path);

#if defined(__linux__)
    const auto abstract = UnixSocketAddr::from_abstract_name(std::string_view("a\0b", 3));
    CHECK(abstract.is_abstract());
    CHECK(abstract.as_abstract_name() == std::string_view("a\0b", 3));
    CHECK_FALSE(abstract.as_pathname().has_value());
    CHECK(abstract.to_string() == "@a@b");
    CHECK(abstract != UnixSocketAddr::from_abstract_name("a"));
    CHECK(abstract != path);
#endif

    std::ostringstream os;
    os << path;
    CHECK(os.str() == "/tmp/x.sock");

    CHECK_THROWS_AS(UnixSocketAddr::from_pathname(""), std::invalid_argument);
    CHECK_THROWS_AS(UnixSocketAddr::from_pathname(std::string_view("a\0b", 3)), std::invalid_argument);
#if defined(__linux__)
    CHECK(UnixSocketAddr::max_path_length() == 107);
    CHECK_THROWS_AS(UnixSocketAddr::from_abstract_name(std::string(108, 'x')), std::invalid_argument);
#endif
    const std::size_t limit = UnixSocketAddr::max_path_length();
    CHECK_NOTHROW(UnixSocketAddr::from_pathname(std::string(limit, 'x')));
    CHECK_THROWS_AS(UnixSocketAddr::from_pathname(std::string(limit + 1, 'x')), std::invalid_argument);
}

// ---- TCP ----------------------------------------------------------------------------------

TEST_CASE("a TCP stream and listener round-trip data on 127.0.0.1", "[net]") {
    auto listener = TcpListener::bind(SocketAddr::parse("127.0.0.1:0"));
    const auto listen_addr = listener.local_addr();
    CHECK(listen_addr.is_ipv4());
    CHECK(listen_addr.port() != 0);

    auto client = TcpStream::connect(listen_addr);
    auto server_peer = listener.accept();
    auto& server = server_peer.first;
    auto& peer = server_peer.second;
    CHECK(peer == client.local_addr());
    CHECK(server.peer_addr() == client.local_addr());
    CHECK(client.peer_addr() == listen_addr);
    CHECK(server.local_addr() == listen_addr);

    CHECK(client.write(bytes("hello")) == 5);
    std::byte buf[16];
    CHECK(server.peek(buf) == 5);
    CHECK(text(std::span(buf, 5)) == "hello");
    CHECK(read_n([&](auto b) { return server.read(b); }, 5) == "hello");

    CHECK(server.write(bytes("world!")) == 6);
    CHECK(read_n([&](auto b) { return client.read(b); }, 6) == "world!");

    CHECK_FALSE(client.nodelay());
    client.set_nodelay(true);
    CHECK(client.nodelay());
    client.set_nodelay(false);
    CHECK_FALSE(client.nodelay());

    client.set_ttl(42);
    CHECK(client.ttl() == 42);
    listener.set_ttl(17);
    CHECK(listener.ttl() == 17);
    CHECK_FALSE(client.take_error());
}

TEST_CASE("a TCP stream and listener round-trip data on [::1]", "[net]") {
    auto listener = bind_v6_loopback();
    if (!listener) {
        WARN("no IPv6 loopback on this machine; skipped");
        return;
    }
    const auto listen_addr = listener->local_addr();
    CHECK(listen_addr.is_ipv6());
    CHECK(listen_addr.is_loopback());

    auto client = TcpStream::connect(listen_addr);
    auto server_peer = listener->accept();
    auto& server = server_peer.first;
    auto& peer = server_peer.second;
    CHECK(peer.is_ipv6());
    CHECK(peer == client.local_addr());
    CHECK(client.peer_addr() == listen_addr);
    CHECK(client.write(bytes("six")) == 3);
    CHECK(read_n([&](auto b) { return server.read(b); }, 3) == "six");
    client.set_ttl(33);
    CHECK(client.ttl() == 33);
}

TEST_CASE("shutdown(Write) gives the peer end of stream", "[net]") {
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    auto client = TcpStream::connect(listener.local_addr());
    auto server = listener.accept().first;

    client.write(bytes("last words"));
    client.shutdown(Shutdown::Write);
    CHECK(read_n([&](auto b) { return server.read(b); }, 100) == "last words");
    std::byte buf[8];
    CHECK(server.read(buf) == 0);
    CHECK(server.read(buf) == 0);

    // The other direction still works.
    server.write(bytes("ack"));
    CHECK(read_n([&](auto b) { return client.read(b); }, 3) == "ack");
    CHECK_THROWS_ERRC(client.write(bytes("x")), std::errc::broken_pipe);
}

TEST_CASE("writing to a closed TCP peer throws broken_pipe or connection_reset, never SIGPIPE",
          "[net]") {
    // SIGPIPE must have its default disposition (kill the process), so that this test would die
    // if a write raised it.
    struct sigaction current {};
    REQUIRE(::sigaction(SIGPIPE, nullptr, &current) == 0);
    REQUIRE(current.sa_handler == SIG_DFL);
    sigset_t mask;
    REQUIRE(::pthread_sigmask(SIG_SETMASK, nullptr, &mask) == 0);
    REQUIRE_FALSE(sigismember(&mask, SIGPIPE));

    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    auto client = TcpStream::connect(listener.local_addr());
    {
        auto server = listener.accept().first;
    }  // closed: the client's next writes meet an RST

    std::error_code error;
    for (int i = 0; i < 200 && !error; ++i) {
        error = async_io::test::system_error_of([&] { client.write(bytes("into the void")); });
        if (!error) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    INFO(error.message());
    CHECK((error == std::errc::broken_pipe || error == std::errc::connection_reset));
    // Still alive: no SIGPIPE was raised.
}

TEST_CASE("connecting to a closed port throws connection_refused naming the address", "[net]") {
    const auto addr = SocketAddr::loopback_v4(closed_port());
    REQUIRE_THROWS_ERRC(TcpStream::connect(addr), std::errc::connection_refused);
    const auto message = message_of([&] { TcpStream::connect(addr); });
    CHECK(message.find("connect " + addr.to_string()) != std::string::npos);
}

TEST_CASE("connect_nonblocking reports the outcome through writability and take_error", "[net]") {
    SECTION("refused") {
        // Linux reports the refusal later (EINPROGRESS, then SO_ERROR); an OS may also report
        // it at once, which connect_nonblocking throws.
        std::error_code outcome;
        try {
            auto stream = TcpStream::connect_nonblocking(SocketAddr::loopback_v4(closed_port()));
            CHECK(is_nonblocking(stream.native_handle()));
            REQUIRE(wait_writable(stream.native_handle()));
            outcome = stream.take_error();
            CHECK_FALSE(stream.take_error());  // taking it clears it
        } catch (const std::system_error& e) {
            outcome = e.code();
        }
        CHECK(outcome == std::errc::connection_refused);
    }
    SECTION("connected") {
        auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
        auto stream = TcpStream::connect_nonblocking(listener.local_addr());
        REQUIRE(wait_writable(stream.native_handle()));
        CHECK_FALSE(stream.take_error());
        auto server_peer = listener.accept();
        auto& server = server_peer.first;
        auto& peer = server_peer.second;
        CHECK(peer == stream.local_addr());
        CHECK(stream.write(bytes("hi")) == 2);
        CHECK(read_n([&](auto b) { return server.read(b); }, 2) == "hi");
    }
}

TEST_CASE("a non-blocking listener and stream report would-block", "[net]") {
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    listener.set_nonblocking(true);
    CHECK_FALSE(listener.try_accept().has_value());
    CHECK_THROWS_ERRC(listener.accept(), std::errc::operation_would_block);

    auto client = TcpStream::connect(listener.local_addr());
    std::optional<std::pair<TcpStream, SocketAddr>> accepted;
    for (int i = 0; i < 1000 && !accepted; ++i) {
        accepted = listener.try_accept(true);
        if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(accepted);
    auto& server = accepted->first;
    CHECK(accepted->second == client.local_addr());
    CHECK(is_nonblocking(server.native_handle()));
    CHECK(is_cloexec(server.native_handle()));

    std::byte buf[4];
    CHECK_THROWS_ERRC(server.read(buf), std::errc::operation_would_block);
    CHECK_THROWS_ERRC(server.peek(buf), std::errc::operation_would_block);
    server.set_nonblocking(false);
    CHECK_FALSE(is_nonblocking(server.native_handle()));

    // accept() always gives a blocking stream.
    auto client2 = TcpStream::connect(listener.local_addr());
    listener.set_nonblocking(false);
    auto server2 = listener.accept().first;
    CHECK_FALSE(is_nonblocking(server2.native_handle()));
}

TEST_CASE("binding a TCP address in use throws address_in_use naming the address", "[net]") {
    auto first = TcpListener::bind(SocketAddr::loopback_v4(0));
    const auto addr = first.local_addr();
    REQUIRE_THROWS_ERRC(TcpListener::bind(addr), std::errc::address_in_use);
    CHECK(message_of([&] { TcpListener::bind(addr); }).find("bind " + addr.to_string()) !=
          std::string::npos);
}

TEST_CASE("a TCP listener accepts connections from another thread", "[net]") {
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    const auto addr = listener.local_addr();
    std::thread client([addr] {
        for (int i = 0; i < 3; ++i) {
            auto stream = TcpStream::connect(addr);
            stream.write(bytes("ping"));
            stream.shutdown(Shutdown::Write);
            std::byte buf[8];
            while (stream.read(buf) != 0) {
            }
        }
    });
    for (int i = 0; i < 3; ++i) {
        auto stream_peer = listener.accept();
        auto& stream = stream_peer.first;
        CHECK(read_n([&](auto b) { return stream.read(b); }, 100) == "ping");
    }
    client.join();
}

// ---- UDP ----------------------------------------------------------------------------------

TEST_CASE("UDP sockets exchange datagrams with send_to, recv_from and peek_from", "[net]") {
    auto a = UdpSocket::bind(SocketAddr::loopback_v4(0));
    auto b = UdpSocket::bind(SocketAddr::loopback_v4(0));
    const auto a_addr = a.local_addr();
    const auto b_addr = b.local_addr();
    CHECK(a_addr.port() != 0);
    CHECK(a_addr != b_addr);

    CHECK(a.send_to(bytes("first"), b_addr) == 5);
    CHECK(a.send_to(bytes("second"), b_addr) == 6);

    std::byte buf[64];
    auto n_from = b.peek_from(buf);
    auto& n = n_from.first;
    auto& from = n_from.second;
    CHECK(n == 5);
    CHECK(from == a_addr);
    CHECK(text(std::span(buf, n)) == "first");
    auto n1_from1 = b.recv_from(buf);
    auto& n1 = n1_from1.first;
    auto& from1 = n1_from1.second;
    CHECK(text(std::span(buf, n1)) == "first");
    CHECK(from1 == a_addr);
    // A short buffer truncates the datagram; the rest is dropped.
    std::byte small[3];
    auto n2_from2 = b.recv_from(small);
    auto& n2 = n2_from2.first;
    CHECK(n2 == 3);
    CHECK(text(std::span(small, 3)) == "sec");

    // Empty datagrams exist.
    CHECK(a.send_to({}, b_addr) == 0);
    CHECK(b.recv_from(buf).first == 0);

    b.set_nonblocking(true);
    CHECK_THROWS_ERRC(b.recv_from(buf), std::errc::operation_would_block);
    CHECK_THROWS_ERRC(b.peek_from(buf), std::errc::operation_would_block);
}

TEST_CASE("a connected UDP socket uses send, recv and peek", "[net]") {
    auto a = UdpSocket::bind(SocketAddr::loopback_v4(0));
    auto b = UdpSocket::bind(SocketAddr::loopback_v4(0));
    CHECK_THROWS_ERRC(a.peer_addr(), std::errc::not_connected);
    CHECK_THROWS_ERRC(a.send(bytes("x")), std::errc::destination_address_required);

    a.connect(b.local_addr());
    b.connect(a.local_addr());
    CHECK(a.peer_addr() == b.local_addr());

    CHECK(a.send(bytes("hello")) == 5);
    std::byte buf[16];
    CHECK(b.peek(buf) == 5);
    CHECK(b.recv(buf) == 5);
    CHECK(text(std::span(buf, 5)) == "hello");
    CHECK(b.send(bytes("back")) == 4);
    CHECK(a.recv(buf) == 4);

    CHECK_FALSE(a.broadcast());
    a.set_broadcast(true);
    CHECK(a.broadcast());
    a.set_ttl(9);
    CHECK(a.ttl() == 9);

    // Sending to a closed port gets the ICMP error reported on a later call.
    auto lonely = UdpSocket::bind(SocketAddr::loopback_v4(0));
    lonely.connect(SocketAddr::loopback_v4(closed_port()));
    lonely.send(bytes("anyone?"));
    std::error_code error;
    for (int i = 0; i < 100 && !error; ++i) {
        lonely.set_nonblocking(true);
        error = async_io::test::system_error_of([&] { lonely.recv(buf); });
        if (error == std::errc::operation_would_block) {
            error = {};
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    CHECK(error == std::errc::connection_refused);
}

TEST_CASE("UDP works over IPv6 loopback", "[net]") {
    std::optional<UdpSocket> a;
    try {
        a = UdpSocket::bind(SocketAddr::loopback_v6(0));
    } catch (const std::system_error& e) {
        WARN("no IPv6 loopback: " << e.what());
        return;
    }
    auto b = UdpSocket::bind(SocketAddr::loopback_v6(0));
    a->send_to(bytes("v6"), b.local_addr());
    std::byte buf[8];
    auto n_from = b.recv_from(buf);
    auto& n = n_from.first;
    auto& from = n_from.second;
    CHECK(n == 2);
    CHECK(from == a->local_addr());
    CHECK(from.is_ipv6());
}

// ---- Unix-domain sockets ------------------------------------------------------------------

TEST_CASE("a Unix stream and listener round-trip data over a socket file", "[net]") {
    TempDir dir;
    const auto path = dir.file("stream.sock");
    auto listener = UnixListener::bind(path);
    CHECK(listener.local_addr().as_pathname() == std::string_view(path));
    CHECK(std::filesystem::is_socket(path));

    auto client = UnixStream::connect(path);
    auto server_peer = listener.accept();
    auto& server = server_peer.first;
    auto& peer = server_peer.second;
    CHECK(peer.is_unnamed());
    CHECK(client.local_addr().is_unnamed());
    CHECK(client.peer_addr().as_pathname() == std::string_view(path));
    CHECK(server.local_addr().as_pathname() == std::string_view(path));

    CHECK(client.write(bytes("over unix")) == 9);
    std::byte buf[16];
    CHECK(server.peek(buf) == 9);
    CHECK(read_n([&](auto b) { return server.read(b); }, 9) == "over unix");
    server.shutdown(Shutdown::Write);
    CHECK(client.read(buf) == 0);

    // The file stays after the listener is gone, so binding again fails, as in Rust.
    REQUIRE_THROWS_ERRC(UnixListener::bind(path), std::errc::address_in_use);
    CHECK(message_of([&] { UnixListener::bind(path); }).find("bind " + path) != std::string::npos);
    REQUIRE_THROWS_ERRC(UnixStream::connect(dir.file("missing.sock")),
                        std::errc::no_such_file_or_directory);
    CHECK(message_of([&] { UnixStream::connect(dir.file("missing.sock")); })
              .find("connect " + dir.file("missing.sock")) != std::string::npos);
}

TEST_CASE("UnixStream::pair gives two connected streams", "[net]") {
    auto a_b = UnixStream::pair();
    auto& a = a_b.first;
    auto& b = a_b.second;
    CHECK(is_cloexec(a.native_handle()));
    CHECK(is_cloexec(b.native_handle()));
    CHECK_FALSE(is_nonblocking(a.native_handle()));
    CHECK(a.write(bytes("ab")) == 2);
    CHECK(read_n([&](auto buf) { return b.read(buf); }, 2) == "ab");
    CHECK(a.peer_addr().is_unnamed());

    b = UnixStream(OwnedFd{});  // closes b's end
    CHECK_THROWS_ERRC(a.write(bytes("x")), std::errc::broken_pipe);  // and no SIGPIPE
    std::byte buf[4];
    CHECK(a.read(buf) == 0);
}

TEST_CASE("UnixStream::connect_nonblocking connects without waiting", "[net]") {
    TempDir dir;
    const auto path = dir.file("nb.sock");
    auto listener = UnixListener::bind(path);
    auto client = UnixStream::connect_nonblocking(UnixSocketAddr::from_pathname(path));
    CHECK(is_nonblocking(client.native_handle()));
    REQUIRE(wait_writable(client.native_handle()));
    CHECK_FALSE(client.take_error());
    CHECK(client.peer_addr().as_pathname() == std::string_view(path));
    listener.set_nonblocking(true);
    auto accepted = listener.try_accept(true);
    REQUIRE(accepted);
    CHECK(is_nonblocking(accepted->first.native_handle()));
    CHECK_FALSE(listener.try_accept().has_value());

    auto by_path = UnixStream::connect_nonblocking(path);
    REQUIRE(wait_writable(by_path.native_handle()));
    CHECK(by_path.peer_addr().as_pathname() == std::string_view(path));
    CHECK_THROWS_ERRC(UnixStream::connect_nonblocking(dir.file("missing.sock")),
                      std::errc::no_such_file_or_directory);
}

TEST_CASE("Unix datagram sockets exchange datagrams by path, unbound and paired", "[net]") {
    TempDir dir;
    auto a = UnixDatagram::bind(dir.file("a.sock"));
    auto b = UnixDatagram::bind(dir.file("b.sock"));
    CHECK(a.local_addr().as_pathname() == std::string_view(dir.file("a.sock")));

    CHECK(a.send_to(bytes("to b"), dir.file("b.sock")) == 4);
    std::byte buf[32];
    auto pn_pfrom = b.peek_from(buf);
    auto& pn = pn_pfrom.first;
    auto& pfrom = pn_pfrom.second;
    CHECK(pn == 4);
    CHECK(pfrom.as_pathname() == std::string_view(dir.file("a.sock")));
    auto n_from = b.recv_from(buf);
    auto& n = n_from.first;
    auto& from = n_from.second;
    CHECK(text(std::span(buf, n)) == "to b");
    CHECK(from == UnixSocketAddr::from_pathname(dir.file("a.sock")));

    auto anonymous = UnixDatagram::unbound();
    CHECK(anonymous.local_addr().is_unnamed());
    CHECK(anonymous.send_to(bytes("anon"), b.local_addr()) == 4);
    auto n2_from2 = b.recv_from(buf);
    auto& n2 = n2_from2.first;
    auto& from2 = n2_from2.second;
    CHECK(n2 == 4);
    CHECK(from2.is_unnamed());

    anonymous.connect(dir.file("a.sock"));
    CHECK(anonymous.peer_addr().as_pathname() == std::string_view(dir.file("a.sock")));
    CHECK(anonymous.send(bytes("via connect")) == 11);
    CHECK(a.peek(buf) == 11);
    CHECK(a.recv(buf) == 11);
    CHECK(text(std::span(buf, 11)) == "via connect");

    REQUIRE_THROWS_ERRC(anonymous.connect(dir.file("nobody.sock")),
                        std::errc::no_such_file_or_directory);

    auto p_q = UnixDatagram::pair();
    auto& p = p_q.first;
    auto& q = p_q.second;
    CHECK(p.send(bytes("pair")) == 4);
    CHECK(q.recv(buf) == 4);
    q.set_nonblocking(true);
    CHECK_THROWS_ERRC(q.recv(buf), std::errc::operation_would_block);
    p.shutdown(Shutdown::Both);
    CHECK_THROWS_ERRC(p.send(bytes("x")), std::errc::broken_pipe);
}

#if defined(__linux__)
TEST_CASE("Unix sockets work with abstract names", "[net]") {
    const std::string name = "async_io_test_" + std::to_string(::getpid());
    const auto addr = UnixSocketAddr::from_abstract_name(name);
    auto listener = UnixListener::bind(addr);
    CHECK(listener.local_addr().as_abstract_name() == std::string_view(name));
    CHECK(listener.local_addr() == addr);
    auto client = UnixStream::connect(addr);
    auto server = listener.accept().first;
    client.write(bytes("abstract"));
    CHECK(read_n([&](auto b) { return server.read(b); }, 8) == "abstract");
    CHECK(client.peer_addr().to_string() == "@" + name);
    REQUIRE_THROWS_ERRC(UnixListener::bind(addr), std::errc::address_in_use);
    CHECK(message_of([&] { UnixListener::bind(addr); }).find("bind @" + name) != std::string::npos);

    auto dgram = UnixDatagram::bind(UnixSocketAddr::from_abstract_name(name + "_d"));
    auto sender = UnixDatagram::unbound();
    sender.send_to(bytes("d"), UnixSocketAddr::from_abstract_name(name + "_d"));
    std::byte buf[4];
    CHECK(dgram.recv(buf) == 1);
}
#endif

TEST_CASE("a Unix socket path longer than sun_path is rejected with the limit named", "[net]") {
    const std::string long_path = "/tmp/" + std::string(200, 'x') + ".sock";
    CHECK_THROWS_AS(UnixListener::bind(long_path), std::invalid_argument);
    CHECK_THROWS_AS(UnixStream::connect(long_path), std::invalid_argument);
    CHECK_THROWS_AS(UnixDatagram::bind(long_path), std::invalid_argument);
    CHECK_THROWS_AS(UnixDatagram::unbound().send_to(bytes("x"), long_path), std::invalid_argument);
    const auto message = message_of([&] { UnixListener::bind(long_path); });
    CHECK(message.find(std::to_string(UnixSocketAddr::max_path_length())) != std::string::npos);
    CHECK(message.find("sun_path") != std::string::npos);
    CHECK(message.find(long_path) != std::string::npos);
    CHECK_THROWS_AS(UnixListener::bind(""), std::invalid_argument);
}

// ---- resolve ------------------------------------------------------------------------------

TEST_CASE("resolve finds localhost and fails clearly on a name that does not exist", "[net]") {
    const auto addrs = resolve("localhost", 80);
    REQUIRE_FALSE(addrs.empty());
    for (const auto& a : addrs) {
        INFO(a);
        CHECK(a.port() == 80);
        CHECK(a.is_loopback());
    }
    const bool has_loopback =
        std::find(addrs.begin(), addrs.end(), SocketAddr::parse("127.0.0.1:80")) != addrs.end() ||
        std::find(addrs.begin(), addrs.end(), SocketAddr::parse("[::1]:80")) != addrs.end();
    CHECK(has_loopback);

    CHECK(resolve("127.0.0.1", 7) == std::vector{SocketAddr::parse("127.0.0.1:7")});
    CHECK(resolve("::1", 7) == std::vector{SocketAddr::parse("[::1]:7")});

    bool threw = false;
    try {
        resolve("nonexistent.invalid", 80);
    } catch (const std::system_error& e) {
        threw = true;
        INFO(e.what());
        CHECK(std::string(e.what()).find("resolve(\"nonexistent.invalid\")") != std::string::npos);
        CHECK((e.code().category() == resolve_category() ||
               e.code().category() == std::system_category()));
    }
    CHECK(threw);
    CHECK_THROWS_AS(resolve(std::string_view("local\0host", 10), 80), std::invalid_argument);
}

TEST_CASE("resolve can run on several threads at once", "[net]") {
    std::vector<std::thread> threads;
    std::atomic<int> found{0};
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&found] {
            if (!resolve("localhost", 1).empty()) ++found;
        });
    }
    for (auto& t : threads) t.join();
    CHECK(found == 4);
}

// ---- OwnedFd and pipes --------------------------------------------------------------------

TEST_CASE("OwnedFd adopts, releases and closes file descriptors", "[net]") {
    CHECK_THROWS_AS(OwnedFd::from_raw_fd(-1), std::invalid_argument);
    CHECK_THROWS_AS(TcpStream::from_raw_fd(-1), std::invalid_argument);
    CHECK_THROWS_AS(TcpListener::from_raw_fd(-5), std::invalid_argument);
    CHECK_THROWS_AS(UdpSocket::from_raw_fd(-1), std::invalid_argument);
    CHECK_THROWS_AS(UnixStream::from_raw_fd(-1), std::invalid_argument);
    CHECK_THROWS_AS(UnixListener::from_raw_fd(-1), std::invalid_argument);
    CHECK_THROWS_AS(UnixDatagram::from_raw_fd(-1), std::invalid_argument);

    OwnedFd empty;
    CHECK_FALSE(empty);
    CHECK(empty.native_handle() == -1);
    CHECK_NOTHROW(empty.close());

    auto r_w = async_io::pipe();
    auto& r = r_w.first;
    auto& w = r_w.second;
    const int raw = r.native_handle();
    {
        OwnedFd moved = std::move(r);
        CHECK(moved.native_handle() == raw);
        CHECK(r.native_handle() == -1);
        const int released = moved.release();
        CHECK(released == raw);
        CHECK_FALSE(moved);
    }
    CHECK(is_open(raw));  // released, so not closed
    {
        auto adopted = OwnedFd::from_raw_fd(raw);
        CHECK(adopted);
    }
    CHECK_FALSE(is_open(raw));  // adopted, so closed

    const int wfd = w.native_handle();
    w.close();
    CHECK_FALSE(w);
    CHECK_FALSE(is_open(wfd));

    // close() reports EBADF for an fd that was not open.
    auto r2_w2 = async_io::pipe();
    auto& r2 = r2_w2.first;
    auto& w2 = r2_w2.second;
    const int stale = w2.release();
    ::close(stale);
    auto bad = OwnedFd::from_raw_fd(stale);
    CHECK_THROWS_ERRC(bad.close(), std::errc::bad_file_descriptor);
    CHECK_FALSE(bad);

    // Move assignment closes what the target owned.
    auto r3_w3 = async_io::pipe();
    auto& r3 = r3_w3.first;
    const int r3fd = r3.native_handle();
    r3 = std::move(r2);
    CHECK_FALSE(is_open(r3fd));
}

TEST_CASE("a pipe round-trips data and reports EOF, would-block and broken pipe", "[net]") {
    auto r_w = async_io::pipe();
    auto& r = r_w.first;
    auto& w = r_w.second;
    CHECK(is_cloexec(r.native_handle()));
    CHECK(is_cloexec(w.native_handle()));
    CHECK_FALSE(r.is_nonblocking());
    CHECK(w.write(bytes("through the pipe")) == 16);
    CHECK(read_n([&](auto b) { return r.read(b); }, 16) == "through the pipe");

    auto copy = w.try_clone();
    CHECK(is_cloexec(copy.native_handle()));
    CHECK(copy.native_handle() != w.native_handle());
    copy.write(bytes("dup"));
    CHECK(read_n([&](auto b) { return r.read(b); }, 3) == "dup");

    r.set_nonblocking(true);
    CHECK(r.is_nonblocking());
    std::byte buf[8];
    CHECK_THROWS_ERRC(r.read(buf), std::errc::operation_would_block);

    w.close();
    copy.close();
    CHECK(r.read(buf) == 0);

    auto r2_w2 = async_io::pipe(true);
    auto& r2 = r2_w2.first;
    auto& w2 = r2_w2.second;
    CHECK(r2.is_nonblocking());
    CHECK(w2.is_nonblocking());
    r2.close();
    CHECK_THROWS_ERRC(w2.write(bytes("x")), std::errc::broken_pipe);  // no SIGPIPE
    // SIGPIPE is neither pending nor left blocked.
    sigset_t set;
    REQUIRE(::sigpending(&set) == 0);
    CHECK_FALSE(sigismember(&set, SIGPIPE));
    REQUIRE(::pthread_sigmask(SIG_SETMASK, nullptr, &set) == 0);
    CHECK_FALSE(sigismember(&set, SIGPIPE));
}

TEST_CASE("every socket and fd the library creates is close-on-exec", "[net]") {
    TempDir dir;
    std::vector<int> fds;
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    auto client = TcpStream::connect(listener.local_addr());
    auto server = listener.accept().first;
    auto nb = TcpStream::connect_nonblocking(listener.local_addr());
    listener.set_nonblocking(true);
    std::optional<std::pair<TcpStream, SocketAddr>> accepted;
    while (!accepted) accepted = listener.try_accept(true);
    auto udp = UdpSocket::bind(SocketAddr::loopback_v4(0));
    auto ulistener = UnixListener::bind(dir.file("l.sock"));
    auto uclient = UnixStream::connect(dir.file("l.sock"));
    auto userver = ulistener.accept().first;
    auto sp1_sp2 = UnixStream::pair();
    auto& sp1 = sp1_sp2.first;
    auto& sp2 = sp1_sp2.second;
    auto dp1_dp2 = UnixDatagram::pair();
    auto& dp1 = dp1_dp2.first;
    auto& dp2 = dp1_dp2.second;
    auto ud = UnixDatagram::bind(dir.file("d.sock"));
    auto uu = UnixDatagram::unbound();
    auto pr_pw = async_io::pipe();
    auto& pr = pr_pw.first;
    auto& pw = pr_pw.second;
    auto npr_npw = async_io::pipe(true);
    auto& npr = npr_npw.first;
    auto& npw = npr_npw.second;
    for (int fd : {listener.native_handle(), client.native_handle(), server.native_handle(),
                   nb.native_handle(), accepted->first.native_handle(), udp.native_handle(),
                   ulistener.native_handle(), uclient.native_handle(), userver.native_handle(),
                   sp1.native_handle(), sp2.native_handle(), dp1.native_handle(),
                   dp2.native_handle(), ud.native_handle(), uu.native_handle(),
                   pr.native_handle(), pw.native_handle(), npr.native_handle(),
                   npw.native_handle()}) {
        INFO("fd " << fd);
        CHECK(is_cloexec(fd));
    }
}

TEST_CASE("no operation leaks a file descriptor, on success or on error", "[net]") {
    const auto before = count_open_fds();
    {
        TempDir dir;
        auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
        auto client = TcpStream::connect(listener.local_addr());
        auto server = listener.accept().first;
        CHECK_THROWS(TcpListener::bind(listener.local_addr()));
        CHECK_THROWS(TcpStream::connect(SocketAddr::loopback_v4(closed_port())));
        try {
            auto refused = TcpStream::connect_nonblocking(SocketAddr::loopback_v4(closed_port()));
            wait_writable(refused.native_handle());
        } catch (const std::system_error&) {
        }
        auto udp = UdpSocket::bind(SocketAddr::loopback_v4(0));
        CHECK_THROWS(UdpSocket::bind(udp.local_addr()));
        auto ul = UnixListener::bind(dir.file("x.sock"));
        CHECK_THROWS(UnixListener::bind(dir.file("x.sock")));
        CHECK_THROWS(UnixStream::connect(dir.file("nope.sock")));
        auto uc = UnixStream::connect(dir.file("x.sock"));
        auto us = ul.accept().first;
        auto pairs = UnixStream::pair();
        auto dpairs = UnixDatagram::pair();
        auto r_w = async_io::pipe();
        auto& w = r_w.second;
        auto clone = w.try_clone();
        (void)resolve("localhost", 1);
        CHECK_THROWS(resolve("nonexistent.invalid", 1));
        CHECK(count_open_fds() > before);
    }
    CHECK(count_open_fds() == before);
}

TEST_CASE("net types adopt and release their fds; moved-from ones fail with EBADF", "[net]") {
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    const auto addr = listener.local_addr();
    const int raw = listener.release();
    CHECK(listener.native_handle() == -1);
    CHECK_FALSE(listener);
    CHECK_THROWS_ERRC(listener.local_addr(), std::errc::bad_file_descriptor);
    auto adopted = TcpListener::from_raw_fd(raw);
    CHECK(adopted.local_addr() == addr);

    auto client = TcpStream::connect(addr);
    auto moved = std::move(client);
    CHECK(moved);
    CHECK_FALSE(client);
    CHECK_THROWS_ERRC(client.write(bytes("x")), std::errc::bad_file_descriptor);
    CHECK_THROWS_ERRC(client.shutdown(Shutdown::Both), std::errc::bad_file_descriptor);

    auto a_b = UnixStream::pair();
    auto& a = a_b.first;
    auto& b = a_b.second;
    auto a2 = UnixStream::from_raw_fd(a.release());
    a2.write(bytes("k"));
    std::byte buf[1];
    CHECK(b.read(buf) == 1);

    auto fd = OwnedFd::from_raw_fd(b.release());
    UnixStream again{std::move(fd)};
    CHECK(again.peer_addr().is_unnamed());
}

// ---- the sys layer ------------------------------------------------------------------------

TEST_CASE("sys functions return -errno and never throw", "[net]") {
    using namespace async_io::detail;
    std::byte buf[8];
    auto r_w = async_io::pipe(true);
    auto& r = r_w.first;
    auto& w = r_w.second;
    CHECK(is_would_block(sys_read(r.native_handle(), buf)));
    CHECK(sys_write(w.native_handle(), bytes("abc")) == 3);
    CHECK(sys_read(r.native_handle(), buf) == 3);
    CHECK(sys_read(-1, buf) == -EBADF);
    CHECK(sys_send(w.native_handle(), bytes("x")) == -ENOTSOCK);
    CHECK(get_socket_error(w.native_handle()) == -ENOTSOCK);
    CHECK(get_nonblocking(r.native_handle()) == 1);
    CHECK(set_nonblocking(r.native_handle(), false) == 0);
    CHECK(get_nonblocking(r.native_handle()) == 0);
    CHECK(set_nonblocking(-1, true) == -EBADF);
    CHECK(get_cloexec(r.native_handle()) == 1);
    CHECK(set_cloexec(r.native_handle(), false) == 0);
    CHECK(get_cloexec(r.native_handle()) == 0);
    CHECK(set_cloexec(r.native_handle(), true) == 0);

    CHECK(fd_kind(r.native_handle()) == FdKind::fifo);
    CHECK(fd_kind(-1) == FdKind::invalid);
    auto s1_s2 = UnixStream::pair();
    auto& s1 = s1_s2.first;
    CHECK(fd_kind(s1.native_handle()) == FdKind::socket);
#if defined(__linux__)
    const int evfd = ::eventfd(0, EFD_CLOEXEC);
    REQUIRE(evfd >= 0);
    auto ev = OwnedFd::from_raw_fd(evfd);
    CHECK(fd_kind(evfd) == FdKind::other);
    CHECK_FALSE(is_regular_file(evfd));
#endif
    char file_name[] = "/tmp/async_io_net_file_XXXXXX";
    const int file = ::mkstemp(file_name);
    REQUIRE(file >= 0);
    ::unlink(file_name);
    auto owned_file = OwnedFd::from_raw_fd(file);
    CHECK(is_regular_file(file));

    // Non-blocking accept / connect / recvfrom / sendto.
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    listener.set_nonblocking(true);
    SocketAddr peer;
    CHECK(is_would_block(sys_accept(listener.native_handle(), true, &peer)));
    auto stream = TcpStream::connect_nonblocking(listener.local_addr());
    REQUIRE(wait_writable(stream.native_handle()));
    CHECK(get_socket_error(stream.native_handle()) == 0);
    int accepted = -1;
    for (int i = 0; i < 1000 && accepted < 0; ++i) {
        accepted = sys_accept(listener.native_handle(), true, &peer);
        if (accepted < 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(accepted >= 0);
    auto accepted_fd = OwnedFd::from_raw_fd(accepted);
    CHECK(peer == stream.local_addr());
    CHECK(is_nonblocking(accepted));
    CHECK(is_cloexec(accepted));

    auto u1 = UdpSocket::bind(SocketAddr::loopback_v4(0));
    auto u2 = UdpSocket::bind(SocketAddr::loopback_v4(0));
    u2.set_nonblocking(true);
    SocketAddr from;
    CHECK(is_would_block(sys_recvfrom(u2.native_handle(), buf, 0, &from)));
    CHECK(sys_sendto(u1.native_handle(), bytes("dg"), u2.local_addr()) == 2);
    std::ptrdiff_t got = -EAGAIN;
    for (int i = 0; i < 1000 && is_would_block(got); ++i) {
        got = sys_recvfrom(u2.native_handle(), buf, sys_msg_peek(), &from);
        if (is_would_block(got)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    CHECK(got == 2);
    CHECK(from == u1.local_addr());
    CHECK(sys_recvfrom(u2.native_handle(), buf, 0, static_cast<SocketAddr*>(nullptr)) == 2);

    CHECK(sys_connect(u1.native_handle(), SocketAddr::loopback_v4(closed_port())) == 0);

    // sys_write_nosigpipe on a pipe with no reader.
    auto pr_pw = async_io::pipe();
    auto& pr = pr_pw.first;
    auto& pw = pr_pw.second;
    pr.close();
    CHECK(sys_write_nosigpipe(pw.native_handle(), bytes("x")) == -EPIPE);
    CHECK(sys_close(-1) == -EBADF);

    CHECK(check_io(5, "x") == 5);
    CHECK_THROWS_ERRC(check_io(-EAGAIN, "x"), std::errc::operation_would_block);
    CHECK(message_of([] { throw_os_error(ECONNREFUSED, "connect 1.2.3.4:5"); })
              .find("connect 1.2.3.4:5") == 0);
}

// The readiness cache of a TCP read (async.hpp ReadOp) relies on this: after a read that filled
// its buffer, the queue report says whether the socket was drained.
TEST_CASE("a TCP read on a socket with TCP_INQ reports what is left in the receive queue", "[net]") {
    using namespace async_io::detail;
    auto listener = TcpListener::bind(SocketAddr::loopback_v4(0));
    auto client = TcpStream::connect(listener.local_addr());
    auto server = listener.accept().first;
    const int fd = server.native_handle();
    const bool inq_on = enable_tcp_inq(fd);
#if defined(__linux__)
    CHECK(inq_on);  // Linux 4.18+
#endif
    client.write(bytes("0123456789"));  // one segment on loopback: all of it arrives at once
    REQUIRE(wait_readable(fd));
    std::byte buf[16];
    int inq = -2;
    REQUIRE(sys_recv_inq(fd, std::span(buf).first(4), &inq) == 4);
    CHECK(inq == (inq_on ? 6 : -1));
    REQUIRE(sys_recv_inq(fd, std::span(buf).first(6), &inq) == 6);
    CHECK(inq == (inq_on ? 0 : -1));
    CHECK(text(std::span(buf).first(6)) == "456789");

    // Without the option the kernel sends no report: unknown.
    server.write(bytes("ab"));
    REQUIRE(wait_readable(client.native_handle()));
    inq = -2;
    REQUIRE(sys_recv_inq(client.native_handle(), std::span(buf).first(2), &inq) == 2);
    CHECK(inq == -1);
}
