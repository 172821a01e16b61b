// The polling layer (src/poller/): polling's tests/ ported one by one (the original name is in a
// comment above each), then tests of our own contract (poller.hpp). Every test runs against
// every backend configuration this OS has: on Linux epoll and poll(), each with an eventfd and
// with a pipe notifier.
//
// Readiness comes from TCP loopback pairs (127.0.0.1, as polling's tests) and Unix socket
// pairs. Timing checks never accept an early return and allow a generous lateness (a loaded
// 2-core machine). A "quiet" wait, which must see nothing, lasts 100 ms where polling's lasts
// 1 s: data written on loopback is readable before write() returns, so 100 ms is ample.
#include "catch.hpp"

#include "poller/poller.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <future>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using async_io::detail::Interest;
using async_io::detail::NotifierKind;
using async_io::detail::PollEvent;
using async_io::detail::Poller;
using async_io::detail::PollMode;
using Clock = std::chrono::steady_clock;

// ---- backend configurations ----------------------------------------------------------------

#if defined(__linux__)
struct Epoll {  // eventfd notifier
    static std::unique_ptr<Poller> make() {
        return async_io::detail::make_epoll_poller(NotifierKind::automatic);
    }
};
struct EpollPipe {
    static std::unique_ptr<Poller> make() {
        return async_io::detail::make_epoll_poller(NotifierKind::pipe);
    }
};
#endif
struct Poll {  // eventfd notifier on Linux, a pipe elsewhere
    static std::unique_ptr<Poller> make() {
        return async_io::detail::make_poll_poller(NotifierKind::automatic);
    }
};
struct PollPipe {
    static std::unique_ptr<Poller> make() {
        return async_io::detail::make_poll_poller(NotifierKind::pipe);
    }
};

// The type list of every TEMPLATE_TEST_CASE below (test names end in " - Epoll" etc.).
#if defined(__linux__)
#  define POLLER_BACKENDS Epoll, EpollPipe, Poll, PollPipe
#else
#  define POLLER_BACKENDS Poll, PollPipe
#endif

constexpr auto quiet = 100ms;      // a wait that must see nothing
constexpr auto late_bound = 1s;    // how late a timed wait may end on a loaded machine

// ---- fds and sockets -------------------------------------------------------------------------

int check(int r, const char* what) {
    if (r < 0) throw std::system_error(errno, std::system_category(), what);
    return r;
}

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }
    int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

struct Pair {
    Fd reader;
    Fd writer;
};

// A connected TCP pair on 127.0.0.1 (polling's tcp_pair): reader is the connecting end.
Pair tcp_pair() {
    Fd listener(check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    check(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "bind");
    check(::listen(listener.get(), 1), "listen");
    socklen_t len = sizeof addr;
    check(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), "getsockname");
    Fd a(check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    check(::connect(a.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "connect");
    Fd b(check(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept"));
    const int one = 1;
    check(::setsockopt(a.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), "TCP_NODELAY");
    check(::setsockopt(b.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), "TCP_NODELAY");
    return {std::move(a), std::move(b)};
}

Pair unix_pair() {
    int fds[2];
    check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), "socketpair");
    return {Fd(fds[0]), Fd(fds[1])};
}

void write_bytes(const Fd& fd, std::size_t n) {
    const std::vector<unsigned char> data(n, 1);
    std::size_t done = 0;
    while (done < n) {
        const auto r = ::send(fd.get(), data.data() + done, n - done, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR) continue;
        check(static_cast<int>(r), "send");
        done += static_cast<std::size_t>(r);
    }
}

void read_exact(const Fd& fd, std::size_t n) {
    std::vector<unsigned char> data(n);
    std::size_t done = 0;
    while (done < n) {
        const auto r = ::recv(fd.get(), data.data() + done, n - done, 0);
        if (r < 0 && errno == EINTR) continue;
        check(static_cast<int>(r), "recv");
        if (r == 0) throw std::runtime_error("read_exact: unexpected EOF");
        done += static_cast<std::size_t>(r);
    }
}

// ---- events ----------------------------------------------------------------------------------

PollEvent readable(std::uint64_t key) { return {key, true, false}; }

// Events as text, so that a failed REQUIRE shows what came.
std::string str(const PollEvent& ev) {
    return "{key=" + std::to_string(ev.key) + (ev.readable ? " readable" : "") +
           (ev.writable ? " writable" : "") + "}";
}

using Events = std::array<PollEvent, 64>;

// A wait's result and how long it took.
struct Timed {
    std::size_t n;
    Clock::duration elapsed;
};

Timed timed_wait(Poller& p, std::span<PollEvent> out, std::optional<std::chrono::nanoseconds> t) {
    const auto start = Clock::now();
    const std::size_t n = p.wait(out, t);
    return {n, Clock::now() - start};
}

// Runs `f` on a thread; `get()` joins it and rethrows what it threw (REQUIRE stays on the test's
// thread, as Catch2 asks).
class Background {
public:
    template <class F>
    explicit Background(F f) : future_(std::async(std::launch::async, std::move(f))) {}
    void get() { future_.get(); }

private:
    std::future<void> future_;
};

// A no-op handler for `sig`, installed without SA_RESTART for the object's lifetime: a signal
// then interrupts a blocking syscall with EINTR.
class NoopSignalHandler {
public:
    explicit NoopSignalHandler(int sig) : sig_(sig) {
        struct sigaction sa {};
        sa.sa_handler = [](int) {};
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        check(::sigaction(sig_, &sa, &old_), "sigaction");
    }
    ~NoopSignalHandler() { ::sigaction(sig_, &old_, nullptr); }
    NoopSignalHandler(const NoopSignalHandler&) = delete;
    NoopSignalHandler& operator=(const NoopSignalHandler&) = delete;

private:
    int sig_;
    struct sigaction old_ {};
};

}  // namespace

// ================================================================================================
// Ported from polling's tests/
// ================================================================================================

// polling tests/concurrent_modification.rs: concurrent_add
TEMPLATE_TEST_CASE("a source added while another thread waits is reported", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    Events events;
    std::size_t n = 0;
    // polling waits with no timeout; 10 s makes a failure fail rather than hang.
    Background waiter([&] { n = poller->wait(events, 10s); });
    std::this_thread::sleep_for(100ms);
    poller->add(reader.get(), 0, Interest::read(), PollMode::oneshot);
    write_bytes(writer, 1);
    waiter.get();
    poller->remove(reader.get());
    REQUIRE(n == 1);
    REQUIRE(str(events[0]) == str(readable(0)));
}

// polling tests/concurrent_modification.rs: concurrent_modify
TEMPLATE_TEST_CASE("a modification made while another thread waits takes effect",
                        "[poller]", POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    poller->add(reader.get(), 0, Interest::none(), PollMode::oneshot);
    Events events;
    std::size_t n = 0;
    Background waiter([&] { n = poller->wait(events, 10s); });
    std::this_thread::sleep_for(100ms);
    poller->modify(reader.get(), 0, Interest::read(), PollMode::oneshot);
    write_bytes(writer, 1);
    waiter.get();
    REQUIRE(n == 1);
    REQUIRE(str(events[0]) == str(readable(0)));
}

// polling tests/concurrent_modification.rs: concurrent_interruption
TEMPLATE_TEST_CASE("a signal during a wait neither ends it nor is reported", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    poller->add(reader.get(), 0, Interest::none(), PollMode::oneshot);
    NoopSignalHandler handler(SIGURG);
    const pthread_t waiter = ::pthread_self();
    Background killer([waiter] {
        std::this_thread::sleep_for(100ms);
        if (::pthread_kill(waiter, SIGURG) != 0) throw std::runtime_error("pthread_kill");
    });
    Events events;
    const auto [n, elapsed] = timed_wait(*poller, events, 1s);
    killer.get();
    REQUIRE(n == 0);
    REQUIRE(elapsed >= 1s);
}

// polling tests/io.rs: basic_io
TEMPLATE_TEST_CASE("a source is reported readable once data arrives", "[poller]",
                        POLLER_BACKENDS) {
    auto poller = TestType::make();
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    poller->add(reader.get(), 1, Interest::read(), PollMode::oneshot);

    Events events;
    REQUIRE(poller->wait(events, 0s) == 0);

    write_bytes(writer, 1);
    REQUIRE(poller->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
    poller->remove(reader.get());
}

// polling tests/io.rs: insert_twice
TEMPLATE_TEST_CASE("adding an fd twice fails with EEXIST and the first one keeps working",
                        "[poller]", POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    poller->add(reader.get(), 1, Interest::read(), PollMode::oneshot);
    // Ours: a different key and mode must not replace the first registration either.
    REQUIRE_THROWS_ERRC(poller->add(reader.get(), 2, Interest::both(), PollMode::level),
                        std::errc::file_exists);

    write_bytes(writer, 1);
    Events events;
    REQUIRE(poller->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
    // Still oneshot: disarmed now.
    REQUIRE(poller->wait(events, quiet) == 0);
    poller->remove(reader.get());
}

// polling tests/io.rs: delete_unrecognized
TEMPLATE_TEST_CASE("removing an fd that is not registered fails with ENOENT", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    REQUIRE_THROWS_ERRC(poller->remove(reader.get()), std::errc::no_such_file_or_directory);
    // Ours: also after a registration was removed.
    poller->add(reader.get(), 1, Interest::read(), PollMode::level);
    poller->remove(reader.get());
    REQUIRE_THROWS_ERRC(poller->remove(reader.get()), std::errc::no_such_file_or_directory);
}

// polling tests/io.rs: append_events. polling's `wait` appends to its Events; ours fills a span,
// so a caller appends by passing the free tail of its buffer.
TEMPLATE_TEST_CASE("successive waits can append events to one buffer", "[poller]",
                        POLLER_BACKENDS) {
    std::vector<Pair> pairs;
    for (int i = 0; i < 4; ++i) pairs.push_back(tcp_pair());
    auto poller = TestType::make();
    for (auto& pair : pairs) poller->add(pair.reader.get(), 1, Interest::read(), PollMode::oneshot);

    Events events;
    std::size_t len = 0;
    for (std::size_t index = 0; index < pairs.size(); ++index) {
        write_bytes(pairs[index].writer, 1);
        len += poller->wait(std::span(events).subspan(len), 1s);
        REQUIRE(len == index + 1);
        for (std::size_t i = 0; i < len; ++i) REQUIRE(str(events[i]) == str(readable(1)));
    }
    for (auto& pair : pairs) poller->remove(pair.reader.get());
}

// polling tests/many_connections.rs: many_connections
TEMPLATE_TEST_CASE("a hundred connections are polled at once and told apart", "[poller]",
                        POLLER_BACKENDS) {
    struct Connection {
        std::uint64_t id;
        Pair pair;
    };
    std::vector<Connection> connections;
    for (std::uint64_t i = 0; i < 100; ++i) connections.push_back({i, tcp_pair()});
    auto poller = TestType::make();
    for (auto& c : connections) poller->add(c.pair.reader.get(), c.id, Interest::read(), PollMode::oneshot);

    std::mt19937 rng(12345);
    Events events;
    while (!connections.empty()) {
        std::uniform_int_distribution<std::size_t> pick(0, connections.size() - 1);
        const auto it = connections.begin() + static_cast<std::ptrdiff_t>(pick(rng));
        Connection c = std::move(*it);
        connections.erase(it);

        write_bytes(c.pair.writer, 1);
        const std::size_t n = poller->wait(events, 10s);
        REQUIRE(n == 1);
        REQUIRE(str(events[0]) == str(readable(c.id)));
        read_exact(c.pair.reader, 1);
        poller->remove(c.pair.reader.get());
    }
}

// polling tests/multiple_pollers.rs: level_triggered
TEMPLATE_TEST_CASE("two pollers watch one fd in level mode", "[poller]", POLLER_BACKENDS) {
    auto poller1 = TestType::make();
    auto poller2 = TestType::make();
    if (!poller1->supports(PollMode::level)) {
        SUCCEED(poller1->name() << " has no level mode");
        return;
    }
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    poller1->add(reader.get(), 1, Interest::read(), PollMode::level);
    poller2->add(reader.get(), 2, Interest::read(), PollMode::level);
    Events events;
    REQUIRE(poller1->wait(events, quiet) == 0);
    REQUIRE(poller2->wait(events, quiet) == 0);

    // polling accepts zero or one event from poller2; both backends here must report one.
    write_bytes(writer, 1);
    REQUIRE(poller1->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
    REQUIRE(poller2->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(2)));

    write_bytes(writer, 1);
    REQUIRE(poller1->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
    REQUIRE(poller2->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(2)));

    read_exact(reader, 2);
    REQUIRE(poller1->wait(events, quiet) == 0);
    REQUIRE(poller2->wait(events, quiet) == 0);
    poller1->remove(reader.get());
    poller2->remove(reader.get());
}

// polling tests/multiple_pollers.rs: edge_triggered
TEMPLATE_TEST_CASE("two pollers watch one fd in edge mode", "[poller]", POLLER_BACKENDS) {
    auto poller1 = TestType::make();
    auto poller2 = TestType::make();
    if (!poller1->supports(PollMode::edge)) {
        SUCCEED(poller1->name() << " has no edge mode");
        return;
    }
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    poller1->add(reader.get(), 1, Interest::read(), PollMode::edge);
    poller2->add(reader.get(), 2, Interest::read(), PollMode::edge);
    Events events;
    REQUIRE(poller1->wait(events, quiet) == 0);
    REQUIRE(poller2->wait(events, quiet) == 0);

    write_bytes(writer, 1);
    REQUIRE(poller1->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
    REQUIRE(poller2->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(2)));

    write_bytes(writer, 1);
    REQUIRE(poller1->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
    REQUIRE(poller2->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(2)));

    read_exact(reader, 2);
    REQUIRE(poller1->wait(events, quiet) == 0);
    REQUIRE(poller2->wait(events, quiet) == 0);
    poller1->remove(reader.get());
    poller2->remove(reader.get());
}

// polling tests/multiple_pollers.rs: oneshot_triggered
TEMPLATE_TEST_CASE("two pollers watch one fd in oneshot mode", "[poller]", POLLER_BACKENDS) {
    auto poller1 = TestType::make();
    auto poller2 = TestType::make();
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    poller1->add(reader.get(), 1, Interest::read(), PollMode::oneshot);
    poller2->add(reader.get(), 2, Interest::read(), PollMode::oneshot);
    Events events;
    REQUIRE(poller1->wait(events, quiet) == 0);
    REQUIRE(poller2->wait(events, quiet) == 0);

    // polling accepts zero or one event from each; both backends here must report one.
    write_bytes(writer, 1);
    REQUIRE(poller1->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
    REQUIRE(poller2->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(2)));

    // Disarmed: more data brings nothing.
    write_bytes(writer, 1);
    REQUIRE(poller1->wait(events, quiet) == 0);
    REQUIRE(poller2->wait(events, quiet) == 0);

    read_exact(reader, 2);
    REQUIRE(poller1->wait(events, quiet) == 0);
    REQUIRE(poller2->wait(events, quiet) == 0);
}

// polling tests/notify.rs: simple
TEMPLATE_TEST_CASE("a notification makes a wait without timeout return with no events",
                        "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    Events events;
    for (int i = 0; i < 10; ++i) {
        poller->notify();
        REQUIRE(poller->wait(events, std::nullopt) == 0);
    }
}

// polling tests/notify.rs: concurrent
TEMPLATE_TEST_CASE("a notification from another thread wakes a blocked wait", "[poller]",
                        POLLER_BACKENDS) {
    auto poller = TestType::make();
    Events events;
    for (int i = 0; i < 2; ++i) {
        Background notifier([&] {
            std::this_thread::sleep_for(0s);
            poller->notify();
        });
        REQUIRE(poller->wait(events, std::nullopt) == 0);
        notifier.get();
    }
}

// polling tests/other_modes.rs: level_triggered
TEMPLATE_TEST_CASE("level mode reports a source for as long as it is ready", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    const std::uint64_t token = 1;
    auto poller = TestType::make();
    if (!poller->supports(PollMode::level)) {
        REQUIRE_THROWS_ERRC(poller->add(reader.get(), token, Interest::read(), PollMode::level),
                            std::errc::not_supported);
        SUCCEED(poller->name() << " has no level mode");
        return;
    }
    poller->add(reader.get(), token, Interest::read(), PollMode::level);

    write_bytes(writer, 5);
    Events events;
    REQUIRE(poller->wait(events, 10s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));

    // Some data left: still reported.
    read_exact(reader, 3);
    REQUIRE(poller->wait(events, 10s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));

    // All read: nothing.
    read_exact(reader, 2);
    REQUIRE(poller->wait(events, 0s) == 0);

    // Switched to oneshot: reported once.
    poller->modify(reader.get(), token, Interest::read(), PollMode::oneshot);
    write_bytes(writer, 5);
    REQUIRE(poller->wait(events, 10s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));

    read_exact(reader, 5);
    REQUIRE(poller->wait(events, 0s) == 0);
}

// polling tests/other_modes.rs: edge_triggered
TEMPLATE_TEST_CASE("edge mode reports a source when it becomes ready", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    const std::uint64_t token = 1;
    auto poller = TestType::make();
    if (!poller->supports(PollMode::edge)) {
        REQUIRE_THROWS_ERRC(poller->add(reader.get(), token, Interest::read(), PollMode::edge),
                            std::errc::not_supported);
        SUCCEED(poller->name() << " has no edge mode");
        return;
    }
    poller->add(reader.get(), token, Interest::read(), PollMode::edge);

    write_bytes(writer, 5);
    Events events;
    REQUIRE(poller->wait(events, 10s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));

    // Data left, but no new edge: nothing.
    read_exact(reader, 3);
    REQUIRE(poller->wait(events, 0s) == 0);

    // New data is a new edge.
    write_bytes(writer, 5);
    REQUIRE(poller->wait(events, 10s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));

    poller->modify(reader.get(), token, Interest::read(), PollMode::oneshot);
    write_bytes(writer, 5);
    REQUIRE(poller->wait(events, 10s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));
}

// polling tests/other_modes.rs: edge_oneshot_triggered
TEMPLATE_TEST_CASE("edge-oneshot mode reports an edge once, until re-armed", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = tcp_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    const std::uint64_t token = 1;
    auto poller = TestType::make();
    if (!poller->supports(PollMode::edge_oneshot)) {
        REQUIRE_THROWS_ERRC(
            poller->add(reader.get(), token, Interest::read(), PollMode::edge_oneshot),
            std::errc::not_supported);
        SUCCEED(poller->name() << " has no edge-oneshot mode");
        return;
    }
    poller->add(reader.get(), token, Interest::read(), PollMode::edge_oneshot);

    write_bytes(writer, 5);
    Events events;
    REQUIRE(poller->wait(events, 10s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));

    read_exact(reader, 3);
    REQUIRE(poller->wait(events, 0s) == 0);

    // Re-armed while data is pending: reported at once.
    poller->modify(reader.get(), token, Interest::read(), PollMode::edge_oneshot);
    REQUIRE(poller->wait(events, 0s) == 1);
    REQUIRE(str(events[0]) == str(readable(token)));
}

namespace {

// polling's precision.rs: 1000 timed waits, never early, the shortest within `margin` of `dur`.
void check_precision(Poller& poller, std::chrono::microseconds dur) {
    const auto margin = 500us;
    Events events;
    auto lowest = Clock::duration(1000s);
    for (int i = 0; i < 1000; ++i) {
        const auto [n, elapsed] = timed_wait(poller, events, dur);
        REQUIRE(n == 0);
        REQUIRE(elapsed >= dur);
        lowest = std::min(lowest, elapsed);
    }
    // polling checks the margin on native backends only; ppoll has nanosecond precision too.
    INFO(poller.name() << ": shortest wait "
                       << std::chrono::duration_cast<std::chrono::microseconds>(lowest).count()
                       << " us");
    REQUIRE(lowest < dur + margin);
}

}  // namespace

// polling tests/precision.rs: below_ms
TEMPLATE_TEST_CASE("a sub-millisecond timeout is neither cut short nor rounded to 1 ms",
                        "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    check_precision(*poller, 100us);
}

// polling tests/precision.rs: above_ms
TEMPLATE_TEST_CASE("a timeout of a few milliseconds keeps its sub-millisecond part",
                        "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    check_precision(*poller, 3100us);
}

// polling tests/timeout.rs: twice
TEMPLATE_TEST_CASE("a timed wait never returns early, twice in a row", "[poller]",
                        POLLER_BACKENDS) {
    auto poller = TestType::make();
    Events events;
    for (int i = 0; i < 2; ++i) {
        const auto [n, elapsed] = timed_wait(*poller, events, 1s);
        REQUIRE(n == 0);
        REQUIRE(elapsed >= 1s);
        REQUIRE(elapsed < 1s + late_bound);
    }
}

// polling tests/timeout.rs: non_blocking
TEMPLATE_TEST_CASE("a wait with a zero timeout returns at once", "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    Events events;
    const auto start = Clock::now();
    for (int i = 0; i < 100; ++i) REQUIRE(poller->wait(events, 0s) == 0);
    REQUIRE(Clock::now() - start < late_bound);
}

// ================================================================================================
// Our own contract (poller.hpp)
// ================================================================================================

TEMPLATE_TEST_CASE("modifying an fd that is not registered fails with ENOENT", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    REQUIRE_THROWS_ERRC(poller->modify(reader.get(), 1, Interest::read(), PollMode::oneshot),
                        std::errc::no_such_file_or_directory);
}

TEMPLATE_TEST_CASE("adding a closed fd fails with EBADF", "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    int closed;
    {
        Pair pair = unix_pair();
        [[maybe_unused]] Fd& reader = pair.reader;
        [[maybe_unused]] Fd& writer = pair.writer;
        closed = reader.get();
    }
    REQUIRE_THROWS_ERRC(poller->add(closed, 1, Interest::read(), PollMode::oneshot),
                        std::errc::bad_file_descriptor);
    REQUIRE_THROWS_ERRC(poller->add(-1, 1, Interest::read(), PollMode::oneshot),
                        std::errc::bad_file_descriptor);
}

TEMPLATE_TEST_CASE("epoll refuses a regular file with EPERM", "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    if (std::string(poller->name()) != "epoll") {
        SUCCEED(poller->name() << " accepts regular files (always ready)");
        return;
    }
    char path[] = "/tmp/async_io_poller_XXXXXX";
    Fd file(check(::mkstemp(path), "mkstemp"));
    ::unlink(path);
    REQUIRE_THROWS_ERRC(poller->add(file.get(), 1, Interest::read(), PollMode::oneshot),
                        std::errc::operation_not_permitted);
}

TEMPLATE_TEST_CASE("the reserved key and an empty event buffer are refused with EINVAL",
                        "[poller]", POLLER_BACKENDS) {
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    REQUIRE_THROWS_ERRC(poller->add(reader.get(), UINT64_MAX, Interest::read(), PollMode::level),
                        std::errc::invalid_argument);
    poller->add(reader.get(), 1, Interest::read(), PollMode::level);
    REQUIRE_THROWS_ERRC(
        poller->modify(reader.get(), UINT64_MAX, Interest::read(), PollMode::level),
        std::errc::invalid_argument);
    REQUIRE_THROWS_ERRC(poller->wait(std::span<PollEvent>(), 0s), std::errc::invalid_argument);
    // The registration is intact.
    write_bytes(writer, 1);
    Events events;
    REQUIRE(poller->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(1)));
}

TEMPLATE_TEST_CASE("modes a backend does not support are refused with ENOTSUP", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    REQUIRE(poller->supports(PollMode::oneshot));
    REQUIRE(poller->supports(PollMode::level));
    for (const PollMode mode : {PollMode::edge, PollMode::edge_oneshot}) {
        if (poller->supports(mode)) continue;
        REQUIRE_THROWS_ERRC(poller->add(reader.get(), 1, Interest::read(), mode),
                            std::errc::not_supported);
        poller->add(reader.get(), 1, Interest::read(), PollMode::level);
        REQUIRE_THROWS_ERRC(poller->modify(reader.get(), 1, Interest::read(), mode),
                            std::errc::not_supported);
        poller->remove(reader.get());
    }
}

TEMPLATE_TEST_CASE("a modification changes the key that is reported", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    poller->add(reader.get(), 1, Interest::read(), PollMode::oneshot);
    poller->modify(reader.get(), 2, Interest::read(), PollMode::oneshot);
    write_bytes(writer, 1);
    Events events;
    REQUIRE(poller->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(readable(2)));
}

TEMPLATE_TEST_CASE("writable and both-direction interests are reported", "[poller]",
                        POLLER_BACKENDS) {
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    Events events;
    poller->add(writer.get(), 3, Interest::write(), PollMode::oneshot);
    REQUIRE(poller->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(PollEvent{3, false, true}));

    write_bytes(writer, 1);  // now `reader` is readable and (with buffer space) writable
    poller->add(reader.get(), 4, Interest::both(), PollMode::oneshot);
    REQUIRE(poller->wait(events, 1s) == 1);
    REQUIRE(str(events[0]) == str(PollEvent{4, true, true}));
}

TEMPLATE_TEST_CASE("a hang-up of the peer is reported as readable", "[poller]", POLLER_BACKENDS) {
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    poller->add(reader.get(), 5, Interest::read(), PollMode::oneshot);
    Events events;
    REQUIRE(poller->wait(events, 0s) == 0);
    writer.reset();
    REQUIRE(poller->wait(events, 1s) == 1);
    REQUIRE(events[0].key == 5);
    REQUIRE(events[0].readable);
}

TEMPLATE_TEST_CASE("events that do not fit in the buffer are reported by the next wait",
                        "[poller]", POLLER_BACKENDS) {
    constexpr std::uint64_t count = 5;
    std::vector<Pair> pairs;
    for (std::uint64_t i = 0; i < count; ++i) pairs.push_back(unix_pair());
    auto poller = TestType::make();
    for (std::uint64_t i = 0; i < count; ++i) {
        write_bytes(pairs[i].writer, 1);
        poller->add(pairs[i].reader.get(), i, Interest::read(), PollMode::oneshot);
    }
    std::set<std::uint64_t> seen;
    std::array<PollEvent, 2> small;
    for (const std::size_t expected : {2u, 2u, 1u}) {
        const std::size_t n = poller->wait(small, 1s);
        REQUIRE(n == expected);
        for (std::size_t i = 0; i < n; ++i) {
            REQUIRE(small[i].readable);
            REQUIRE(seen.insert(small[i].key).second);
        }
    }
    REQUIRE(seen.size() == count);
    REQUIRE(poller->wait(small, 0s) == 0);
}

TEMPLATE_TEST_CASE("a source removed during a wait is not reported", "[poller]", POLLER_BACKENDS) {
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    auto poller = TestType::make();
    poller->add(reader.get(), 1, Interest::read(), PollMode::level);
    Background remover([&] {
        std::this_thread::sleep_for(50ms);
        poller->remove(reader.get());
        write_bytes(writer, 1);
    });
    Events events;
    const auto [n, elapsed] = timed_wait(*poller, events, 300ms);
    remover.get();
    REQUIRE(n == 0);
    REQUIRE(elapsed >= 300ms);
}

TEMPLATE_TEST_CASE("repeated signals during a timed wait neither end it early nor throw",
                        "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    poller->add(reader.get(), 1, Interest::read(), PollMode::level);
    NoopSignalHandler handler(SIGUSR1);
    const pthread_t waiter = ::pthread_self();
    std::atomic<bool> done{false};
    Background killer([&] {
        while (!done.load()) {
            if (::pthread_kill(waiter, SIGUSR1) != 0) throw std::runtime_error("pthread_kill");
            std::this_thread::sleep_for(7ms);
        }
    });
    Events events;
    Timed timed{};
    std::exception_ptr error;
    try {
        timed = timed_wait(*poller, events, 300ms);
    } catch (...) {
        error = std::current_exception();
    }
    done = true;
    killer.get();
    REQUIRE(error == nullptr);
    REQUIRE(timed.n == 0);
    REQUIRE(timed.elapsed >= 300ms);
    REQUIRE(timed.elapsed < 300ms + late_bound);
}

TEMPLATE_TEST_CASE("notifications are coalesced into one wake-up", "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    Events events;
    for (int i = 0; i < 10; ++i) poller->notify();
    REQUIRE(poller->wait(events, std::nullopt) == 0);
    // Nothing is left over: a zero timeout returns at once, a finite one runs to its end.
    Timed t = timed_wait(*poller, events, 0s);
    REQUIRE(t.n == 0);
    REQUIRE(t.elapsed < late_bound);
    t = timed_wait(*poller, events, 10ms);
    REQUIRE(t.n == 0);
    REQUIRE(t.elapsed >= 10ms);

    // The same with notifications from several threads at once.
    {
        std::vector<Background> threads;
        for (int i = 0; i < 4; ++i) {
            threads.emplace_back([&] {
                for (int j = 0; j < 1000; ++j) poller->notify();
            });
        }
        for (auto& thread : threads) thread.get();
    }
    REQUIRE(poller->wait(events, std::nullopt) == 0);
    t = timed_wait(*poller, events, 10ms);
    REQUIRE(t.n == 0);
    REQUIRE(t.elapsed >= 10ms);
}

TEMPLATE_TEST_CASE("a zero timeout never blocks, with idle and ready sources", "[poller]",
                        POLLER_BACKENDS) {
    auto poller = TestType::make();
    auto idle = unix_pair();
    auto ready = unix_pair();
    poller->add(idle.reader.get(), 1, Interest::read(), PollMode::level);
    poller->add(ready.reader.get(), 2, Interest::read(), PollMode::level);
    Events events;
    const auto start = Clock::now();
    for (int i = 0; i < 100; ++i) REQUIRE(poller->wait(events, 0s) == 0);
    write_bytes(ready.writer, 1);
    for (int i = 0; i < 100; ++i) {
        REQUIRE(poller->wait(events, 0s) == 1);
        REQUIRE(str(events[0]) == str(readable(2)));
    }
    REQUIRE(Clock::now() - start < late_bound);
}

TEMPLATE_TEST_CASE("an fd closed behind the poller's back does not make wait spin",
                        "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    Pair pair = unix_pair();
    [[maybe_unused]] Fd& reader = pair.reader;
    [[maybe_unused]] Fd& writer = pair.writer;
    const int fd = reader.get();
    poller->add(fd, 7, Interest::read(), PollMode::level);
    reader.reset();  // epoll forgets the fd; poll() reports POLLNVAL once, then disarms it
    Events events;
    std::size_t total = 0;
    for (int i = 0; i < 5; ++i) {
        const std::size_t n = poller->wait(events, 0s);
        for (std::size_t j = 0; j < n; ++j) REQUIRE(events[j].key == 7);
        total += n;
    }
    REQUIRE(total <= 1);
    const auto [n, elapsed] = timed_wait(*poller, events, quiet);
    REQUIRE(n == 0);
    REQUIRE(elapsed >= quiet);
    try {
        poller->remove(fd);  // poll() still has the registration; epoll has none
    } catch (const std::system_error&) {
    }
}

TEMPLATE_TEST_CASE("changes and notifications from many threads during waits are safe",
                        "[poller]", POLLER_BACKENDS) {
    auto poller = TestType::make();
    std::atomic<bool> stop{false};
    std::vector<Background> threads;
    for (std::uint64_t t = 0; t < 2; ++t) {
        threads.emplace_back([&, t] {
            auto pair = unix_pair();
            write_bytes(pair.writer, 1);  // readable throughout
            std::uint64_t round = 0;
            while (!stop.load()) {
                const std::uint64_t key = t * 1000 + (round++ % 1000);
                poller->add(pair.reader.get(), key, Interest::read(), PollMode::oneshot);
                poller->modify(pair.reader.get(), key, Interest::both(),
                               round % 2 ? PollMode::level : PollMode::oneshot);
                std::this_thread::yield();
                poller->remove(pair.reader.get());
            }
        });
    }
    threads.emplace_back([&] {
        while (!stop.load()) {
            poller->notify();
            std::this_thread::sleep_for(1ms);
        }
    });
    Events events;
    std::size_t reported = 0;
    const auto end = Clock::now() + 300ms;
    std::exception_ptr error;
    try {
        while (Clock::now() < end) {
            const std::size_t n = poller->wait(events, 2ms);
            for (std::size_t i = 0; i < n; ++i) {
                if (events[i].key >= 2000) throw std::runtime_error("unknown key " + str(events[i]));
            }
            reported += n;
        }
    } catch (...) {
        error = std::current_exception();
    }
    stop = true;
    for (auto& t : threads) t.get();
    REQUIRE(error == nullptr);
    INFO(reported << " events");
    SUCCEED();
}

TEST_CASE("the default poller is a working backend of this OS", "[poller]") {
    auto poller = async_io::detail::make_default_poller();
    REQUIRE(poller != nullptr);
    const std::string name = poller->name();
#if defined(__linux__)
    REQUIRE((name == "epoll" || name == "poll"));
#else
    REQUIRE(name == "poll");
#endif
    std::array<PollEvent, 4> events;
    poller->notify();
    REQUIRE(poller->wait(events, std::nullopt) == 0);
}
