// The soak test: for a bounded time, 1000 TCP connections and 200 Unix stream pairs are kept open
// at once on an Executor run by several threads. Each direction of each connection carries its
// own deterministic pseudo-random byte stream, written in randomly sized messages (1 byte to
// 64 KiB, mostly small) and read with randomly sized reads; each side either closes gracefully
// (writes all its messages, shuts down writing, reads to EOF) or drops its socket at a random
// point (after a number of messages written, or of bytes read). The operations vary as a user's
// would: plain reads, reads under timeout(), a peek then a read, read_to_end; write loops and
// write_all; two accept loops on one listener; the two sides of a connection in one task
// (when_all / race of its reader and writer) and the two ends of a pair in different tasks.
// The contract it guards:
//  - every byte arrives in order and exactly once: the receiver compares each byte with the
//    sender's stream as it reads; a direction that ends in EOF holds exactly what the sender
//    wrote (same count, same checksum, a word-wise FNV-1a); when both sides close gracefully
//    both directions end in EOF with no error at all. (One exception, the kernel's: TCP reports
//    a reset once, to the first call that asks; when that is the receiving side's own write, its
//    read then sees EOF after the bytes that arrived before the reset.)
//  - a side that drops its socket is seen by the other as EOF or connection_reset (its writes:
//    broken_pipe or connection_reset), never as another error and never as wrong data; over a
//    Unix stream nothing written before the drop is lost to a peer that keeps reading;
//  - nothing hangs: a watchdog prints every open connection's state and aborts when no byte,
//    message or connection has moved for 30 s;
//  - no fd leaks: /proc/self/fd holds as many entries at the end as before (reactor warmed up).
// It prints its figures on one line ("soak: ... tcp connections, ... GiB in ... messages").
//
// Knobs (environment):
//  ASYNC_IO_SOAK_SECONDS   how long new connections are opened (default 20; 5 when
//                          ASYNC_IO_SANITIZER names a sanitizer). The open ones then finish (a few
//                          seconds; under TSan up to about as long again). ctest stops a test
//                          after 120 s: run longer soaks directly, e.g.
//                          `ASYNC_IO_SOAK_SECONDS=600 tests/test_soak`.
//  ASYNC_IO_SOAK_SEED      the seed (else a random one); printed either way. A seed fixes the
//                          plan and the bytes of connection #n, not the threads' interleaving
//                          (nor which connection gets which number).
//  ASYNC_IO_SOAK_THREADS   threads running the executor, the test's own included (default 3).
//  ASYNC_IO_SOAK_TCP, ASYNC_IO_SOAK_UNIX   connections / pairs open at once (1000, 200).
//  ASYNC_IO_SOAK_WATCHDOG  seconds without progress before the watchdog aborts (default 30).
// The soft RLIMIT_NOFILE is raised to the hard limit; if that is too low for 2400 fds the
// connection counts are scaled down with a warning.
#include "catch.hpp"
#include "support.hpp"

#include <async_io/async.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

using namespace async_io;
using namespace async_io::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// ---- configuration ------------------------------------------------------------------------------

long env_long(const char* name, long fallback) {
    if (const char* s = std::getenv(name); s != nullptr && *s != '\0') {
        char* end = nullptr;
        const long v = std::strtol(s, &end, 10);
        if (end != s && v > 0) return v;
    }
    return fallback;
}

struct Config {
    std::chrono::milliseconds duration{};
    std::uint64_t seed = 0;
    std::size_t tcp_conns = 0;   // TCP connections open at once
    std::size_t unix_pairs = 0;  // Unix stream pairs open at once
    int threads = 0;
    std::chrono::seconds watchdog{};
};

Config config() {
    Config c;
    double seconds = under_sanitizer() ? 5.0 : 20.0;
    if (const char* s = std::getenv("ASYNC_IO_SOAK_SECONDS"); s != nullptr && *s != '\0') {
        const double v = std::strtod(s, nullptr);
        if (v > 0) seconds = v;
    }
    c.duration = std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
    if (const char* s = std::getenv("ASYNC_IO_SOAK_SEED"); s != nullptr && *s != '\0') {
        c.seed = std::strtoull(s, nullptr, 0);
    } else {
        std::random_device rd;
        c.seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }
    c.tcp_conns = static_cast<std::size_t>(env_long("ASYNC_IO_SOAK_TCP", 1000));
    c.unix_pairs = static_cast<std::size_t>(env_long("ASYNC_IO_SOAK_UNIX", 200));
    c.threads = static_cast<int>(std::max(2L, env_long("ASYNC_IO_SOAK_THREADS", 3)));
    c.watchdog = std::chrono::seconds(env_long("ASYNC_IO_SOAK_WATCHDOG", 30));
    return c;
}

// Raises the soft fd limit to the hard one (or as far as the OS lets it); returns the limit.
std::uint64_t raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur != rl.rlim_max) {
        rlimit want = rl;
        want.rlim_cur = rl.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &want) == 0) {
            rl = want;
        } else {
            want.rlim_cur = std::min<rlim_t>(rl.rlim_max, 10240);  // macOS: OPEN_MAX
            if (::setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
        }
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : static_cast<std::uint64_t>(rl.rlim_cur);
}

std::size_t count_fds() {
#if defined(__linux__)
    const char* dir = "/proc/self/fd";
#else
    const char* dir = "/dev/fd";
#endif
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++n;
    return n;
}

// ---- randomness and the byte streams --------------------------------------------------------------

std::uint64_t mix64(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

struct SplitMix64 {
    std::uint64_t state;
    std::uint64_t next() noexcept { return mix64(state += 0x9e3779b97f4a7c15ULL); }
    std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
    // 1 .. 2^max_exp, each power-of-two range as likely as the next: mostly small values.
    std::uint64_t skewed(unsigned max_exp) noexcept { return 1 + below(std::uint64_t{1} << below(max_exp + 1)); }
};

[[maybe_unused]] std::uint64_t byteswap64(std::uint64_t w) noexcept {  // big-endian hosts only
    std::uint64_t r = 0;
    for (int i = 0; i < 8; ++i, w >>= 8) r = (r << 8) | (w & 0xff);
    return r;
}
std::uint64_t load_le(const std::byte* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if constexpr (std::endian::native == std::endian::big) w = byteswap64(w);
    return w;
}
void store_le(std::byte* p, std::uint64_t w) noexcept {
    if constexpr (std::endian::native == std::endian::big) w = byteswap64(w);
    std::memcpy(p, &w, 8);
}

// One direction's byte stream: the little-endian bytes of a SplitMix64's outputs. The sender
// produces it, the receiver checks it; both fold the bytes actually seen into a checksum (FNV-1a
// over 64-bit words, by stream position, so that it does not depend on how the stream was cut
// into writes and reads). Whole aligned words go 8 bytes at a time, which keeps an unoptimised
// build fast enough.
class StreamState {
public:
    struct Mismatch {
        std::size_t index;  // in the span given to check()
        unsigned expected;
        unsigned actual;
    };

    explicit StreamState(std::uint64_t seed) noexcept : rng_{seed} {}

    std::uint64_t position() const noexcept { return pos_; }

    void produce(std::span<std::byte> out) noexcept {
        std::size_t i = 0;
        while (i < out.size()) {
            if (pos_ % 8 == 0 && out.size() - i >= 8) {
                const std::uint64_t w = rng_.next();
                store_le(out.data() + i, w);
                fold(w);
                i += 8;
                pos_ += 8;
            } else {
                const std::byte b = next_expected();
                out[i++] = b;
                take(b);
            }
        }
    }

    // Checks `in` as the stream's next bytes; the first wrong byte, if any.
    std::optional<Mismatch> check(std::span<const std::byte> in) noexcept {
        std::optional<Mismatch> first;
        std::size_t i = 0;
        while (i < in.size()) {
            if (pos_ % 8 == 0 && in.size() - i >= 8) {
                const std::uint64_t want = rng_.next();
                const std::uint64_t got = load_le(in.data() + i);
                if (got != want && !first) {
                    unsigned k = 0;
                    while (((got ^ want) >> (8 * k) & 0xff) == 0) ++k;
                    first = Mismatch{i + k, static_cast<unsigned>(want >> (8 * k) & 0xff),
                                     static_cast<unsigned>(got >> (8 * k) & 0xff)};
                }
                fold(got);
                i += 8;
                pos_ += 8;
            } else {
                const std::byte want = next_expected();
                const std::byte got = in[i];
                if (got != want && !first)
                    first = Mismatch{i, std::to_integer<unsigned>(want), std::to_integer<unsigned>(got)};
                take(got);
                ++i;
            }
        }
        return first;
    }

    // The checksum of everything produced or checked so far, its length included.
    std::uint64_t checksum() const noexcept {
        std::uint64_t h = hash_;
        if (pos_ % 8 != 0) h = (h ^ partial_) * fnv_prime;
        return (h ^ pos_) * fnv_prime;
    }

private:
    static constexpr std::uint64_t fnv_prime = 0x100000001b3ULL;

    std::byte next_expected() noexcept {
        if (pos_ % 8 == 0) word_ = rng_.next();
        return static_cast<std::byte>(word_ >> (8 * (pos_ % 8)) & 0xff);
    }
    void take(std::byte b) noexcept {
        const unsigned offset = static_cast<unsigned>(pos_ % 8);
        if (offset == 0) partial_ = 0;
        partial_ |= std::to_integer<std::uint64_t>(b) << (8 * offset);
        if (++pos_ % 8 == 0) fold(partial_);
    }
    void fold(std::uint64_t w) noexcept { hash_ = (hash_ ^ w) * fnv_prime; }

    SplitMix64 rng_;
    std::uint64_t pos_ = 0;
    std::uint64_t word_ = 0;     // the generator's word at pos_ (mid-word)
    std::uint64_t partial_ = 0;  // the bytes seen of the word at pos_ (mid-word)
    std::uint64_t hash_ = 0xcbf29ce484222325ULL;
};

// ---- a connection's plan and record ----------------------------------------------------------------

enum class Kind : std::uint8_t { tcp, unix_pair };

enum class Behaviour : std::uint8_t {
    graceful,           // writes all its messages, shuts down writing, reads to EOF, closes
    drop_after_writes,  // closes as soon as it has written its messages (possibly none)
    drop_after_reads,   // closes once it has read drop_after_bytes bytes (or met EOF / an error);
                        // shuts down writing after its messages
};

struct SidePlan {
    Behaviour behaviour = Behaviour::graceful;
    std::uint32_t messages = 0;
    std::uint64_t drop_after_bytes = 0;
    std::size_t read_capacity = 0;
    bool nodelay = false;
    bool read_whole = false;  // with read_to_end, if both sides are graceful
    std::uint64_t writer_seed = 0;  // message sizes and pauses
    std::uint64_t reader_seed = 0;  // read sizes and pauses
};

// Side 0 is the TCP client (or the first of a Unix pair), side 1 the server. stream_seed[d] is the
// seed of the bytes side d writes.
struct Plan {
    std::array<SidePlan, 2> side;
    std::array<std::uint64_t, 2> stream_seed{};
};

Plan make_plan(std::uint64_t seed, std::uint64_t id) {
    SplitMix64 rng{mix64(seed ^ mix64(id + 1))};
    Plan p;
    for (SidePlan& s : p.side) {
        const auto r = rng.below(4);
        s.behaviour = r < 2 ? Behaviour::graceful : r == 2 ? Behaviour::drop_after_writes : Behaviour::drop_after_reads;
        s.messages = static_cast<std::uint32_t>(rng.skewed(7) - 1);  // 0..127, mostly few
        if (s.behaviour == Behaviour::drop_after_writes)
            s.messages = static_cast<std::uint32_t>(rng.below(s.messages + 1));
        s.drop_after_bytes = rng.skewed(21) - 1;
        s.read_capacity = std::size_t{512} << rng.below(8);
        s.nodelay = rng.below(2) == 0;
        s.read_whole = rng.below(4) == 0;
        s.writer_seed = rng.next();
        s.reader_seed = rng.next();
    }
    for (auto& s : p.stream_seed) s = rng.next();
    return p;
}

const char* behaviour_name(Behaviour b) {
    switch (b) {
        case Behaviour::graceful: return "graceful";
        case Behaviour::drop_after_writes: return "drops after writing";
        case Behaviour::drop_after_reads: return "drops after reading";
    }
    return "?";
}

// How the receiver's reading of one direction ended.
enum class End : std::uint8_t {
    open,   // not ended: it was cancelled (its own side dropped the socket)
    eof,
    reset,  // connection_reset or broken_pipe
    cut,    // its own side stopped reading to drop the socket
    error,  // any other error
};

const char* end_name(End e) {
    switch (e) {
        case End::open: return "open";
        case End::eof: return "eof";
        case End::reset: return "reset";
        case End::cut: return "cut";
        case End::error: return "error";
    }
    return "?";
}

// One direction: written by side d, read by side 1 - d. The atomics are read by the watchdog;
// the plain fields are written by one side's task and read by whichever side finishes last
// (after Conn::sides_done, which orders them).
struct Flow {
    // The sender's.
    std::atomic<std::uint64_t> sent{0};  // bytes the writes reported written
    std::uint64_t unsure = 0;            // plus at most this many (a write_all that failed midway)
    std::uint64_t produced = 0;          // bytes of the messages written whole
    std::uint64_t sent_sum = StreamState(0).checksum();  // the checksum of those bytes
    bool shut = false;                   // shut down writing after its last message
    std::error_code write_error;
    std::string write_what;
    // The receiver's.
    std::atomic<std::uint64_t> received{0};
    std::uint64_t received_sum = 0;
    End end = End::open;
    bool corrupt = false;
    std::string read_what;
};

enum class Phase : std::uint8_t { idle, connecting, header, exchanging, done };

const char* phase_name(Phase p) {
    switch (p) {
        case Phase::idle: return "not started";
        case Phase::connecting: return "connecting";
        case Phase::header: return "header";
        case Phase::exchanging: return "exchanging";
        case Phase::done: return "done";
    }
    return "?";
}

struct Conn {
    Conn(Kind k, std::uint64_t i, Plan p) : kind(k), id(i), plan(p) {}

    std::string name() const { return (kind == Kind::tcp ? "tcp#" : "unix#") + std::to_string(id); }
    std::string direction(int d) const {
        const char* names[2][2] = {{"client->server", "server->client"}, {"a->b", "b->a"}};
        return name() + " " + names[kind == Kind::tcp ? 0 : 1][d];
    }

    const Kind kind;
    const std::uint64_t id;
    const Plan plan;
    std::array<Flow, 2> flow;  // flow[d]: written by side d
    std::array<std::atomic<Phase>, 2> phase{};
    std::array<std::atomic<bool>, 2> in_read{};
    std::array<std::atomic<bool>, 2> in_write{};
    std::atomic<int> sides_done{0};
};

// ---- the shared state of a run ---------------------------------------------------------------------


struct Soak {
    explicit Soak(const Config& c) : cfg(c) {}

    const Config cfg;
    Executor* ex = nullptr;
    Violations v{"soak", 10};
    // Outlives the executor, so that no accept loop can outlive it even if the run fails.
    std::optional<Async<net::TcpListener>> listener;
    net::SocketAddr addr;
    Clock::time_point t0 = Clock::now();
    Clock::time_point t_stop;  // when it stopped opening connections (the root task's)

    std::atomic<bool> stopping{false};     // no new connections
    std::atomic<bool> accept_stop{false};  // the accept loops end at their next connection
    std::atomic<std::uint64_t> next_id{0};

    // Progress, for the figures and the watchdog.
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> tcp_done{0};
    std::atomic<std::uint64_t> unix_done{0};
    std::atomic<long> servers_live{0};
    // How the directions ended.
    std::atomic<std::uint64_t> whole{0};  // EOF, count and checksum equal to the sender's
    std::atomic<std::uint64_t> cut_by_sender{0};    // a reset, or EOF in mid-message
    std::atomic<std::uint64_t> cut_by_receiver{0};  // the receiver stopped reading and closed

    std::mutex m;
    std::unordered_map<std::uint64_t, std::shared_ptr<Conn>> live;

    std::uint64_t progress() const {
        return bytes.load() + messages.load() + tcp_done.load() + unix_done.load();
    }

    std::shared_ptr<Conn> open(Kind k) {
        const std::uint64_t id = next_id.fetch_add(1);
        auto c = std::make_shared<Conn>(k, id, make_plan(cfg.seed, id));
        std::lock_guard g(m);
        live.emplace(id, c);
        return c;
    }
    std::shared_ptr<Conn> find(std::uint64_t id) {
        std::lock_guard g(m);
        const auto it = live.find(id);
        return it == live.end() ? nullptr : it->second;
    }
    // Called once by each side when it is over; the last one checks the connection.
    void finish_side(const std::shared_ptr<Conn>& c, int side) {
        c->phase[static_cast<std::size_t>(side)].store(Phase::done);
        if (c->sides_done.fetch_add(1, std::memory_order_acq_rel) != 1) return;
        check(*c);
        {
            std::lock_guard g(m);
            live.erase(c->id);
        }
        (c->kind == Kind::tcp ? tcp_done : unix_done).fetch_add(1);
    }

    void check(Conn& c);
    std::string describe(const Conn& c) const;
};

// The contract, per direction, once both sides are over.
void Soak::check(Conn& c) {
    for (int d = 0; d < 2; ++d) {
        const Flow& f = c.flow[static_cast<std::size_t>(d)];
        const Flow& back = c.flow[static_cast<std::size_t>(1 - d)];  // written by the receiver
        const Behaviour sender = c.plan.side[static_cast<std::size_t>(d)].behaviour;
        const Behaviour receiver = c.plan.side[static_cast<std::size_t>(1 - d)].behaviour;
        const std::uint64_t lo = f.sent.load();
        const std::uint64_t hi = lo + f.unsure;
        const std::uint64_t got = f.received.load();
        const std::string what = c.direction(d) + " (sender " + behaviour_name(sender) + ", receiver " +
                                 behaviour_name(receiver) + ", sent " + std::to_string(lo) +
                                 (hi != lo ? ".." + std::to_string(hi) : "") + ", received " + std::to_string(got) +
                                 ", end " + end_name(f.end) +
                                 (back.write_error ? ", receiver's write: " + back.write_error.message() : "") +
                                 ", seed " + std::to_string(cfg.seed) + ")";

        if (got > hi) v.add(what + ": received more than was sent");
        if (f.write_error) {
            const bool peer_closed = f.write_error == std::errc::broken_pipe ||
                                     f.write_error == std::errc::connection_reset ||
                                     f.write_error == std::errc::not_connected;  // shutdown after a reset
            if (receiver == Behaviour::graceful || !peer_closed)
                v.add(what + ": the sender failed: " + f.write_what);
        }
        switch (f.end) {
            case End::eof:
                if (sender == Behaviour::graceful && !f.shut) v.add(what + ": EOF before the sender shut down");
                if (got == f.produced) {
                    // Every message the sender wrote whole, and nothing else.
                    if (f.received_sum != f.sent_sum) {
                        v.add(what + ": checksums differ");
                    } else {
                        whole.fetch_add(1);
                    }
                } else if (got >= lo && got <= hi) {
                    cut_by_sender.fetch_add(1);  // the sender dropped in the middle of a message
                } else if (got < lo && sender != Behaviour::graceful && c.kind == Kind::tcp &&
                           back.write_error == std::errc::connection_reset) {
                    // TCP reports a reset once, to the first call that asks: when the receiving
                    // side's own write took it, its read sees only the end of the stream. The
                    // bytes lost with the reset were in flight when the sender dropped.
                    cut_by_sender.fetch_add(1);
                } else {
                    v.add(what + ": EOF after a different number of bytes than were sent");
                }
                break;
            case End::reset:
                cut_by_sender.fetch_add(1);
                if (sender == Behaviour::graceful) v.add(what + ": the receiver saw a reset: " + f.read_what);
                break;
            case End::open:
            case End::cut:
                cut_by_receiver.fetch_add(1);
                if (receiver == Behaviour::graceful) v.add(what + ": the receiver stopped before the end");
                break;
            case End::error:
                v.add(what + ": the receiver failed: " + f.read_what);
                break;
        }
        // Both graceful: the whole stream, EOF, no error on either side.
        if (sender == Behaviour::graceful && receiver == Behaviour::graceful &&
            !(f.end == End::eof && f.shut && lo == hi && got == lo && lo == f.produced))
            v.add(what + ": both sides graceful, yet the stream did not arrive whole");
        // A Unix stream loses nothing the sender wrote to a receiver that reads to the end.
        if (c.kind == Kind::unix_pair && receiver == Behaviour::graceful &&
            (f.end == End::eof || f.end == End::reset) && (got < lo || got > hi))
            v.add(what + ": a Unix stream lost bytes");
    }
}

std::string Soak::describe(const Conn& c) const {
    std::string s = c.name();
    for (std::size_t side = 0; side < 2; ++side) {
        const SidePlan& p = c.plan.side[side];
        const Flow& out = c.flow[side];
        const Flow& in = c.flow[1 - side];
        const Phase phase = c.phase[side].load();
        s += "\n    ";
        s += side == 0 ? (c.kind == Kind::tcp ? "client" : "a") : (c.kind == Kind::tcp ? "server" : "b");
        s += std::string(": ") + behaviour_name(p.behaviour) + ", " + std::to_string(p.messages) + " messages";
        if (p.behaviour == Behaviour::drop_after_reads)
            s += ", drops at " + std::to_string(p.drop_after_bytes) + " bytes read";
        s += std::string("; ") + phase_name(phase);
        if (phase != Phase::done && c.in_read[side].load()) s += ", waiting to read";
        if (phase != Phase::done && c.in_write[side].load()) s += ", waiting to write";
        s += "; wrote " + std::to_string(out.sent.load()) + ", read " + std::to_string(in.received.load());
    }
    return s;
}

// ---- one side of a connection ----------------------------------------------------------------------

// A pause now and then, so that connections interleave in ever new orders.
bool pause_roll(SplitMix64& rng, Timer::duration& sleep) {
    const auto r = rng.below(256);
    if (r >= 9) return false;
    sleep = r == 8 ? std::chrono::microseconds(rng.below(1000)) : Timer::duration::zero();
    return true;
}

// The longest a single read may wait (reads through timeout() exercise its race with the I/O).
constexpr auto read_stall_limit = 120s;

template <class S>
Task<void> send(Soak& soak, Conn& c, int side, S& io, bool shut_down_at_end) {
    const auto si = static_cast<std::size_t>(side);
    Flow& f = c.flow[si];
    const SidePlan& p = c.plan.side[si];
    SplitMix64 rng{p.writer_seed};
    StreamState stream(c.plan.stream_seed[si]);
    std::vector<std::byte> msg;
    Timer::duration sleep{};
    try {
        for (std::uint32_t i = 0; i < p.messages; ++i) {
            const auto size = static_cast<std::size_t>(rng.skewed(16));
            msg.resize(size);
            stream.produce(msg);
            c.in_write[si].store(true, std::memory_order_relaxed);
            if (rng.below(2) == 0) {
                f.unsure = size;
                co_await io.write_all(std::span<const std::byte>(msg));
                f.unsure = 0;
                f.sent.fetch_add(size, std::memory_order_relaxed);
            } else {
                std::size_t done = 0;
                while (done < size) {
                    const std::size_t n = co_await io.write(std::span<const std::byte>(msg).subspan(done));
                    done += n;
                    f.sent.fetch_add(n, std::memory_order_relaxed);
                }
            }
            c.in_write[si].store(false, std::memory_order_relaxed);
            f.produced += size;
            f.sent_sum = stream.checksum();
            soak.messages.fetch_add(1, std::memory_order_relaxed);
            if (pause_roll(rng, sleep)) {
                if (sleep == Timer::duration::zero()) {
                    co_await yield_now();
                } else {
                    co_await Timer::after(sleep);
                }
            }
        }
        if (shut_down_at_end) {
            io.get_ref().shutdown(net::Shutdown::Write);
            f.shut = true;
        }
    } catch (const std::system_error& e) {
        f.write_error = e.code();
        f.write_what = e.what();
    }
    c.in_write[si].store(false, std::memory_order_relaxed);
}

// Checks the bytes `in` just read at stream position `at` of direction d; reports the first
// wrong byte of the direction.
void check_received(Soak& soak, Conn& c, int d, StreamState& stream, std::span<const std::byte> in, std::uint64_t at,
                    std::size_t read_size) {
    Flow& f = c.flow[static_cast<std::size_t>(d)];
    if (const auto bad = stream.check(in); bad && !f.corrupt) {
        f.corrupt = true;
        char detail[160];
        std::snprintf(detail, sizeof detail, ": byte %llu of the stream is 0x%02x, expected 0x%02x (read of %zu bytes)",
                      static_cast<unsigned long long>(at + bad->index), bad->actual, bad->expected, read_size);
        soak.v.add(c.direction(d) + detail + ", seed " + std::to_string(soak.cfg.seed));
    }
}

// Reads direction 1 - side to its end (EOF, an error, or, with `drop_at_trigger`, the plan's
// number of bytes), checking every byte. `whole`: with a single read_to_end.
template <class S>
Task<void> receive(Soak& soak, Conn& c, int side, S& io, bool drop_at_trigger, bool whole = false) {
    const auto si = static_cast<std::size_t>(side);
    Flow& f = c.flow[1 - si];
    const SidePlan& p = c.plan.side[si];
    SplitMix64 rng{p.reader_seed};
    StreamState stream(c.plan.stream_seed[1 - si]);
    std::vector<std::byte> buf(p.read_capacity);
    std::vector<std::byte> peek_buf;
    std::uint64_t received = 0;
    Timer::duration sleep{};
    try {
        if (whole) {
            // One read_to_end, checked afterwards (only where no error can cut it short: an
            // error would throw away what it read).
            std::string all;
            c.in_read[si].store(true, std::memory_order_relaxed);
            const std::size_t n = co_await io.read_to_end(all);
            c.in_read[si].store(false, std::memory_order_relaxed);
            const auto bytes = std::as_bytes(std::span<const char>(all));
            if (n != all.size()) soak.v.add(c.direction(1 - side) + ": read_to_end reported " + std::to_string(n) +
                                            " bytes but appended " + std::to_string(all.size()));
            check_received(soak, c, 1 - side, stream, bytes, received, bytes.size());
            received += bytes.size();
            f.received.store(received, std::memory_order_relaxed);
            soak.bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
            f.end = End::eof;
        }
        while (!whole) {
            if (drop_at_trigger && received >= p.drop_after_bytes) {
                f.end = End::cut;
                break;
            }
            std::size_t want = buf.size();
            if (rng.below(8) == 0) want = 1 + static_cast<std::size_t>(rng.below(want));
            const std::span<std::byte> into(buf.data(), want);
            c.in_read[si].store(true, std::memory_order_relaxed);
            std::size_t n = 0;
            std::size_t peeked = 0;
            const auto how = rng.below(64);
            if (how < 8) {
                n = co_await timeout(read_stall_limit, io.read(into));
            } else if (how == 8) {
                // A peek, then a read: the read returns at least the bytes peeked, and the same.
                peek_buf.resize(want);
                peeked = co_await io.peek(std::span<std::byte>(peek_buf));
                n = co_await io.read(into);
            } else {
                n = co_await io.read(into);
            }
            c.in_read[si].store(false, std::memory_order_relaxed);
            if (peeked > 0 && (n < peeked || std::memcmp(peek_buf.data(), into.data(), peeked) != 0))
                soak.v.add(c.direction(1 - side) + ": a read after a peek of " + std::to_string(peeked) +
                           " bytes returned " + std::to_string(n) + (n < peeked ? "" : " bytes, different ones") +
                           ", seed " + std::to_string(soak.cfg.seed));
            if (n == 0) {
                f.end = End::eof;
                break;
            }
            check_received(soak, c, 1 - side, stream, into.first(n), received, n);
            received += n;
            f.received.store(received, std::memory_order_relaxed);
            soak.bytes.fetch_add(n, std::memory_order_relaxed);
            if (pause_roll(rng, sleep)) {
                if (sleep == Timer::duration::zero()) {
                    co_await yield_now();
                } else {
                    co_await Timer::after(sleep);
                }
            }
        }
    } catch (const std::system_error& e) {
        const bool closed = e.code() == std::errc::connection_reset || e.code() == std::errc::broken_pipe;
        f.end = closed ? End::reset : End::error;
        f.read_what = e.what();
    }
    c.in_read[si].store(false, std::memory_order_relaxed);
    f.received_sum = stream.checksum();
}

Task<void> then_idle(Task<void> t) {
    co_await std::move(t);
    co_await Timer::never();
}

// Runs side `side` of `c` over `io` to its end; the caller closes `io` right after.
template <class S>
Task<void> run_side(Soak& soak, Conn& c, int side, S& io) {
    c.phase[static_cast<std::size_t>(side)].store(Phase::exchanging);
    switch (c.plan.side[static_cast<std::size_t>(side)].behaviour) {
        case Behaviour::graceful: {
            // Both sides graceful: nothing can fail, and now and then the stream is read whole.
            const bool whole = c.plan.side[static_cast<std::size_t>(1 - side)].behaviour == Behaviour::graceful &&
                               c.plan.side[static_cast<std::size_t>(side)].read_whole;
            co_await when_all(receive(soak, c, side, io, false, whole), send(soak, c, side, io, true));
            break;
        }
        case Behaviour::drop_after_writes:
            // The writer decides: once its messages are out the race is over, the reader cancelled.
            (void)co_await race(then_idle(receive(soak, c, side, io, false)), send(soak, c, side, io, false));
            break;
        case Behaviour::drop_after_reads:
            // The reader decides. The writer shuts down writing after its messages as a graceful
            // side does: a peer that reads to EOF then closes, and this side's reader sees it.
            (void)co_await race(receive(soak, c, side, io, true), then_idle(send(soak, c, side, io, true)));
            break;
    }
}

// ---- TCP --------------------------------------------------------------------------------------------

std::array<std::byte, 8> header_of(std::uint64_t id) {
    std::array<std::byte, 8> h{};
    store_le(h.data(), id);
    return h;
}

// The client side of one connection: connects, sends the connection's id, then its side.
Task<void> tcp_client(Soak& soak, std::shared_ptr<Conn> c) {
    try {
        c->phase[0].store(Phase::connecting);
        auto io = co_await Async<net::TcpStream>::connect(soak.addr);
        if (c->plan.side[0].nodelay) io.get_ref().set_nodelay(true);
        c->phase[0].store(Phase::header);
        const auto header = header_of(c->id);
        co_await io.write_all(std::span<const std::byte>(header));
        co_await run_side(soak, *c, 0, io);
    } catch (const std::system_error& e) {
        soak.v.add(c->name() + " client: " + e.what());
    }
    soak.finish_side(c, 0);
}

// The server side of one accepted connection: reads the id, then runs its side.
Task<void> tcp_server(Soak& soak, Async<net::TcpStream> accepted) {
    struct Live {
        Soak& s;
        ~Live() { s.servers_live.fetch_sub(1); }
    } live{soak};
    std::shared_ptr<Conn> c;
    try {
        auto io = std::move(accepted);  // closed when the side is over, not with the frame
        std::array<std::byte, 8> header{};
        co_await io.read_exact(std::span<std::byte>(header));
        c = soak.find(load_le(header.data()));
        if (!c) {
            soak.v.add("server: a connection sent an unknown id " + std::to_string(load_le(header.data())));
            co_return;
        }
        if (c->plan.side[1].nodelay) io.get_ref().set_nodelay(true);
        co_await run_side(soak, *c, 1, io);
    } catch (const std::system_error& e) {
        soak.v.add((c ? c->name() : std::string("a connection")) + " server: " + e.what());
    }
    if (c) soak.finish_side(c, 1);
}

// Accepts connections and spawns a server task for each, until accept_stop.
Task<void> accept_loop(Soak& soak, Async<net::TcpListener>& listener) {
    for (;;) {
        std::optional<Async<net::TcpStream>> stream;
        bool backoff = false;
        try {
            auto accepted = co_await listener.accept();
            stream.emplace(std::move(accepted.first));
        } catch (const std::system_error& e) {
            // A connection reset before it was accepted is the client's business; anything else
            // (EMFILE, ...) is a failure, and backing off keeps it from spinning.
            if (e.code() != std::errc::connection_aborted) {
                soak.v.add(std::string("accept: ") + e.what());
                backoff = true;
            }
        }
        if (soak.accept_stop.load()) co_return;
        if (backoff) co_await Timer::after(10ms);
        if (!stream) continue;
        soak.servers_live.fetch_add(1);
        soak.ex->spawn(tcp_server(soak, std::move(*stream))).detach();
    }
}

// Keeps one client connection open at a time, a new one as soon as the last is over, until
// the time is up.
Task<void> tcp_slot(Soak& soak) {
    while (!soak.stopping.load()) {
        try {
            co_await tcp_client(soak, soak.open(Kind::tcp));
        } catch (const std::exception& e) {
            soak.v.add(std::string("tcp slot: ") + e.what());
        }
    }
}

// ---- Unix pairs --------------------------------------------------------------------------------------

Task<void> unix_side(Soak& soak, std::shared_ptr<Conn> c, int side, Async<net::UnixStream> io) {
    {
        // Closed at the end of this block: a finished task's frame (and so the parameter) lives
        // on until its JoinHandle takes the result.
        auto end = std::move(io);
        co_await run_side(soak, *c, side, end);
    }
    soak.finish_side(c, side);
}

// Keeps one pair open at a time: side b runs as a task of its own (on whichever thread), side a
// in this one.
Task<void> unix_slot(Soak& soak) {
    while (!soak.stopping.load()) {
        try {
            auto c = soak.open(Kind::unix_pair);
            auto ends = Async<net::UnixStream>::pair();
            JoinHandle<void> b = soak.ex->spawn(unix_side(soak, c, 1, std::move(ends.second)));
            co_await unix_side(soak, c, 0, std::move(ends.first));
            co_await b;
        } catch (const std::exception& e) {
            soak.v.add(std::string("unix slot: ") + e.what());
        }
    }
}

// ---- the run -----------------------------------------------------------------------------------------

Task<void> soak_main(Soak& soak) {
    // Two accept loops wait on the one listener at once.
    std::vector<JoinHandle<void>> acceptors;
    for (int i = 0; i < 2; ++i) acceptors.push_back(soak.ex->spawn(accept_loop(soak, *soak.listener)));
    std::vector<JoinHandle<void>> slots;
    for (std::size_t i = 0; i < soak.cfg.tcp_conns; ++i) slots.push_back(soak.ex->spawn(tcp_slot(soak)));
    for (std::size_t i = 0; i < soak.cfg.unix_pairs; ++i) slots.push_back(soak.ex->spawn(unix_slot(soak)));

    co_await Timer::after(soak.cfg.duration);
    soak.t_stop = Clock::now();
    soak.stopping.store(true);
    for (auto& h : slots) co_await h;
    while (soak.servers_live.load() != 0) co_await Timer::after(5ms);

    // Wake each accept loop with a connection of its own; each ends after one.
    soak.accept_stop.store(true);
    std::vector<Async<net::TcpStream>> wakers;
    for (std::size_t i = 0; i < acceptors.size(); ++i)
        wakers.push_back(co_await Async<net::TcpStream>::connect(soak.addr));
    for (auto& h : acceptors) co_await h;
}

Task<void> until(const std::atomic<bool>& stop) {
    while (!stop.load()) co_await Timer::after(10ms);
}

// Runs `ex` on `n` more threads until destroyed.
class Runners {
public:
    Runners(Executor& ex, int n, Violations& v) {
        for (int i = 0; i < n; ++i) {
            threads_.emplace_back([this, &ex, &v] {
                try {
                    block_on(ex.run(until(stop_)));
                } catch (const std::exception& e) {
                    v.add(std::string("runner thread: ") + e.what());
                }
            });
        }
    }
    Runners(const Runners&) = delete;
    Runners& operator=(const Runners&) = delete;
    ~Runners() {
        stop_.store(true);
        for (auto& t : threads_) t.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::vector<std::thread> threads_;
};

// Aborts with a report of every open connection when nothing moves for cfg.watchdog.
class Watchdog {
public:
    explicit Watchdog(Soak& soak) : soak_(soak), thread_([this] { watch(); }) {}
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;
    ~Watchdog() {
        {
            std::lock_guard g(m_);
            done_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

private:
    void watch() {
        std::unique_lock lk(m_);
        std::uint64_t last = soak_.progress();
        auto moved = Clock::now();
        while (!done_) {
            cv_.wait_for(lk, 250ms);
            if (const auto p = soak_.progress(); p != last) {
                last = p;
                moved = Clock::now();
            } else if (Clock::now() - moved > soak_.cfg.watchdog) {
                report();
                std::abort();
            }
        }
    }

    void report() {
        const auto secs = std::chrono::duration<double>(Clock::now() - soak_.t0).count();
        std::fprintf(stderr,
                     "soak watchdog: no progress for %lld s, %.1f s into the run (seed %llu, %s); %llu tcp and "
                     "%llu unix done, %ld server tasks live, %d violation(s)\n",
                     static_cast<long long>(soak_.cfg.watchdog.count()), secs,
                     static_cast<unsigned long long>(soak_.cfg.seed),
                     soak_.stopping.load() ? "no longer opening connections" : "opening connections",
                     static_cast<unsigned long long>(soak_.tcp_done.load()),
                     static_cast<unsigned long long>(soak_.unix_done.load()), soak_.servers_live.load(),
                     soak_.v.count());
        std::lock_guard g(soak_.m);
        std::fprintf(stderr, "%zu connection(s) open:\n", soak_.live.size());
        std::size_t shown = 0;
        for (const auto& entry : soak_.live) {
            if (++shown > 30) {
                std::fprintf(stderr, "  ...\n");
                break;
            }
            std::fprintf(stderr, "  %s\n", soak_.describe(*entry.second).c_str());
        }
        std::fflush(stderr);
    }

    Soak& soak_;
    std::mutex m_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;  // last: starts when the rest is ready
};

}  // namespace

TEST_CASE("a thousand TCP connections and two hundred Unix pairs carry random traffic intact, closing at random points",
          "[soak][net][executor]") {
    Config cfg = config();

    // Each TCP connection takes two fds (client and server), each pair two.
    const std::uint64_t limit = raise_fd_limit();
    const std::uint64_t reserve = 64;
    if (2 * (cfg.tcp_conns + cfg.unix_pairs) + reserve > limit) {
        const std::uint64_t room = limit > reserve ? (limit - reserve) / 2 : 0;
        cfg.unix_pairs = static_cast<std::size_t>(std::min<std::uint64_t>(cfg.unix_pairs, room / 6));
        cfg.tcp_conns = static_cast<std::size_t>(room - cfg.unix_pairs);
        WARN("RLIMIT_NOFILE is " << limit << ": scaled down to " << cfg.tcp_conns << " TCP connections and "
                                 << cfg.unix_pairs << " Unix pairs at once");
    }
    REQUIRE(cfg.tcp_conns > 0);
    REQUIRE(cfg.unix_pairs > 0);

    // The reactor's own fds exist before the first count.
    { auto warm_up = Async<net::UnixStream>::pair(); }
    const std::size_t fds_before = count_fds();

    Soak soak(cfg);
    INFO("seed " << cfg.seed);
    std::printf("soak: seed %llu, %zu tcp connections and %zu unix pairs at once, %d threads, %.1f s\n",
                static_cast<unsigned long long>(cfg.seed), cfg.tcp_conns, cfg.unix_pairs, cfg.threads,
                std::chrono::duration<double>(cfg.duration).count());
    std::fflush(stdout);

    soak.listener.emplace(Async<net::TcpListener>::bind(net::SocketAddr::loopback_v4(0)));
    soak.addr = soak.listener->get_ref().local_addr();
    Clock::time_point t_end;
    {
        Executor ex;
        soak.ex = &ex;
        Watchdog watchdog(soak);
        {
            Runners runners(ex, cfg.threads - 1, soak.v);
            try {
                block_on(ex.run(soak_main(soak)));
            } catch (const std::exception& e) {
                soak.v.add(std::string("the run failed: ") + e.what());
            }
        }
        t_end = Clock::now();
    }
    soak.listener.reset();
    const std::size_t fds_after = count_fds();

    const double secs = std::chrono::duration<double>(t_end - soak.t0).count();
    const double open_secs = std::chrono::duration<double>(soak.t_stop - soak.t0).count();
    const double gib = static_cast<double>(soak.bytes.load()) / (1024.0 * 1024 * 1024);
    std::printf("soak: %llu tcp connections (%zu at once), %llu unix pairs (%zu at once), %d threads, %.2f GiB in "
                "%.2fM messages, %.1f s + %.1f s to finish (%.0f MiB/s); directions: %llu whole to EOF, %llu cut "
                "short by the sender, %llu by the receiver; fds %zu -> %zu; seed %llu\n",
                static_cast<unsigned long long>(soak.tcp_done.load()), cfg.tcp_conns,
                static_cast<unsigned long long>(soak.unix_done.load()), cfg.unix_pairs, cfg.threads, gib,
                static_cast<double>(soak.messages.load()) / 1e6, open_secs, secs - open_secs, gib * 1024 / secs,
                static_cast<unsigned long long>(soak.whole.load()),
                static_cast<unsigned long long>(soak.cut_by_sender.load()),
                static_cast<unsigned long long>(soak.cut_by_receiver.load()), fds_before, fds_after,
                static_cast<unsigned long long>(cfg.seed));
    std::fflush(stdout);

    {
        std::lock_guard g(soak.m);
        std::size_t shown = 0;
        for (const auto& entry : soak.live) {
            if (shown++ < 5) soak.v.add("never finished: " + soak.describe(*entry.second));
        }
        INFO(soak.live.size() << " connection(s) never finished");
        CHECK(soak.live.empty());
    }
    INFO(soak.v.count() << " violation(s), the first:\n" << soak.v.first());
    CHECK(soak.v.count() == 0);
    CHECK(fds_after == fds_before);
    // It did what it is meant to: connections of both kinds came and went, and streams arrived whole.
    CHECK(soak.tcp_done.load() >= cfg.tcp_conns);
    CHECK(soak.unix_done.load() >= cfg.unix_pairs);
    CHECK(soak.whole.load() > 0);
}
