// race, when_all, timeout and yield_now (include/async_io/combinators.hpp), with every kind of
// awaitable the library promises to compose: Task, Timer, readiness (Async on a socketpair) and a
// user's own awaitable types. Cancellation is checked by the order of events: an awaitable of our
// own records when it is started and destroyed, and a RAII object in a Task's frame records when
// the frame goes away; "resumed" is recorded inside the same full-expression as the co_await, so
// that anything destroyed only at the end of that full-expression shows up after it.
#include "catch.hpp"

#include <async_io/async.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Generous bound for "late": a loaded 2-core machine under TSan.
constexpr auto slack = 2s;

// What happened, in order, from any thread.
class Log {
public:
    void add(std::string e) {
        std::lock_guard g(m_);
        events_.push_back(std::move(e));
    }
    std::vector<std::string> events() const {
        std::lock_guard g(m_);
        return events_;
    }
    std::size_t count(std::string_view e) const {
        std::lock_guard g(m_);
        return static_cast<std::size_t>(std::count(events_.begin(), events_.end(), e));
    }
    bool has(std::string_view e) const { return count(e) != 0; }
    // Index of the first `e`; SIZE_MAX if absent.
    std::size_t pos(std::string_view e) const {
        std::lock_guard g(m_);
        auto it = std::find(events_.begin(), events_.end(), e);
        return it == events_.end() ? SIZE_MAX : static_cast<std::size_t>(it - events_.begin());
    }
    // True if `a` happened, `b` happened, and the first `a` came before the first `b`.
    bool before(std::string_view a, std::string_view b) const {
        const auto pa = pos(a), pb = pos(b);
        return pa != SIZE_MAX && pb != SIZE_MAX && pa < pb;
    }
    std::string dump() const {
        std::lock_guard g(m_);
        std::string s;
        for (const auto& e : events_) s += "[" + e + "] ";
        return s;
    }

private:
    mutable std::mutex m_;
    std::vector<std::string> events_;
};

// Passes `v` through, recording `e` first: `noted(log, "resumed", co_await x)` records "resumed"
// right when the awaiting coroutine resumed, before the temporaries of the full-expression die.
template <class T>
T&& noted(Log& log, const char* e, T&& v) {
    log.add(e);
    return std::forward<T>(v);
}

// Lives in a coroutine frame (a local or a by-value parameter); records "<name> destroyed".
class FrameMarker {
public:
    FrameMarker(Log& log, std::string name) : log_(&log), name_(std::move(name)) {}
    FrameMarker(FrameMarker&& o) noexcept : log_(std::exchange(o.log_, nullptr)), name_(std::move(o.name_)) {}
    FrameMarker& operator=(FrameMarker&&) = delete;
    ~FrameMarker() {
        if (log_) log_->add(name_ + " destroyed");
    }

private:
    Log* log_;
    std::string name_;
};

// A user's own direct awaiter (it has await_ready/suspend/resume itself). Records every call.
// `ready`: completes in await_ready; `in_suspend`: completes in await_suspend (returns false);
// `never`: keeps the handle and never resumes it (it only ends by being destroyed).
enum class Mode { ready, in_suspend, never };

class Probe {
public:
    Probe(Log& log, std::string name, Mode mode, int value = 0)
        : log_(&log), name_(std::move(name)), mode_(mode), value_(value) {}
    Probe(Probe&& o) noexcept
        : log_(std::exchange(o.log_, nullptr)), name_(std::move(o.name_)), mode_(o.mode_), value_(o.value_) {}
    Probe& operator=(Probe&&) = delete;
    ~Probe() {
        if (log_) log_->add(name_ + " destroyed");
    }

    bool await_ready() {
        log_->add(name_ + " ready");
        return mode_ == Mode::ready;
    }
    bool await_suspend(std::coroutine_handle<> h) {
        log_->add(name_ + " suspend");
        h_ = h;
        return mode_ == Mode::never;
    }
    int await_resume() {
        log_->add(name_ + " resume");
        return value_;
    }

private:
    Log* log_;
    std::string name_;
    Mode mode_;
    int value_;
    std::coroutine_handle<> h_;
};

// A user's own awaitable with `operator co_await`: the awaiter it makes lives in the awaiting
// frame and records its own destruction ("<name> awaiter destroyed"). Never completes.
class ProbeAwaitable {
public:
    ProbeAwaitable(Log& log, std::string name) : log_(&log), name_(std::move(name)) {}

    class Awaiter {
    public:
        Awaiter(Log* log, std::string name) : log_(log), name_(std::move(name)) {}
        Awaiter(const Awaiter&) = delete;
        Awaiter& operator=(const Awaiter&) = delete;
        ~Awaiter() { log_->add(name_ + " awaiter destroyed"); }
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<>) { log_->add(name_ + " suspend"); }
        int await_resume() { return 0; }

    private:
        Log* log_;
        std::string name_;
    };
    Awaiter operator co_await() const { return Awaiter(log_, name_); }

private:
    Log* log_;
    std::string name_;
};

// A user's own awaitable that really waits, built on a library awaiter: a nap of `d`. Records
// its destruction. Movable until awaited.
class Nap {
public:
    Nap(Log& log, std::string name, Timer::duration d) : log_(&log), name_(std::move(name)), timer_(Timer::after(d)) {}
    Nap(Nap&& o) noexcept : log_(std::exchange(o.log_, nullptr)), name_(std::move(o.name_)), timer_(std::move(o.timer_)) {}
    Nap& operator=(Nap&&) = delete;
    ~Nap() {
        aw_.reset();  // before timer_: the awaiter deregisters from the reactor
        if (log_) log_->add(name_ + " destroyed");
    }
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        aw_.emplace(timer_);
        if (aw_->await_ready()) return false;
        aw_->await_suspend(h);
        return true;
    }
    Timer::time_point await_resume() { return aw_->await_resume(); }

private:
    Log* log_;
    std::string name_;
    Timer timer_;
    std::optional<Timer::Awaiter> aw_;
};

// ---- coroutines used as operands ---------------------------------------------------------------

template <class T>
Task<T> value_after(Timer::duration d, T v) {
    co_await Timer::after(d);
    co_return v;
}

Task<int> value_now(int v) { co_return v; }

Task<void> void_after(Timer::duration d) { co_await Timer::after(d); }

Task<int&> ref_after(Timer::duration d, int& x) {
    co_await Timer::after(d);
    co_return x;
}

Task<int> throw_after(Timer::duration d, std::string what) {
    co_await Timer::after(d);
    throw std::runtime_error(what);
}

Task<int> throw_now(std::string what) {
    throw std::runtime_error(what);
    co_return 0;
}

// Never completes; records "<name> started", and "<name> destroyed" when its frame goes (also
// when it is destroyed before it started: the marker is a parameter, so it lives in the frame).
template <class T>
Task<T> never_impl(FrameMarker, Log& log, std::string name) {
    log.add(name + " started");
    co_await Timer::never();
    log.add(name + " resumed after never");  // must not happen
    throw std::logic_error("a never-timer fired");
}
template <class T = int>
Task<T> never(Log& log, std::string name) {
    return never_impl<T>(FrameMarker(log, name), log, name);
}

// Waits `d`, records "<name> woke" (a loser must never get here), then waits forever.
Task<int> wakes_after(Log& log, std::string name, Timer::duration d) {
    FrameMarker m(log, name);
    co_await Timer::after(d);
    log.add(name + " woke");
    co_await Timer::never();
    co_return 0;
}

// A loser whose frame holds a RAII marker and which waits on a Timer of its own.
Task<int> waits_long(Log& log, std::string name) {
    FrameMarker m(log, name);
    co_await Timer::after(1h);
    log.add(name + " resumed");
    co_return 0;
}

// Readiness wrapped in a Task: reads one byte.
Task<std::size_t> read_byte(Async<net::UnixStream>& s) {
    std::byte b[1];
    co_return co_await s.read(std::span<std::byte>(b));
}

Task<void> wait_writable(Async<net::UnixStream>& s) { co_await s.writable(); }

Task<void> write_after(Async<net::UnixStream>& s, Timer::duration d, std::string data) {
    co_await Timer::after(d);
    co_await s.write_all(as_bytes(data));
}

Task<void> yield_forever() {
    for (;;) co_await yield_now();
}

using ms = std::chrono::milliseconds;
ms since(Clock::time_point t0) { return std::chrono::duration_cast<ms>(Clock::now() - t0); }

}  // namespace

// ================================================================================================
// race
// ================================================================================================

TEST_CASE("race yields the first to finish as the alternative at its position", "[combinators]") {
    Log log;
    SECTION("first position") {
        auto r = block_on(race(value_after(5ms, 1), never<std::string>(log, "slow")));
        static_assert(std::is_same_v<decltype(r), std::variant<int, std::string>>);
        REQUIRE(r.index() == 0);
        REQUIRE(std::get<0>(r) == 1);
    }
    SECTION("second position") {
        auto r = block_on(race(never(log, "slow"), value_after(5ms, std::string("two"))));
        REQUIRE(r.index() == 1);
        REQUIRE(std::get<1>(r) == "two");
    }
    SECTION("equal types keep their positions") {
        auto r = block_on(race(value_after(300ms, 1), value_after(5ms, 2), value_after(600ms, 3)));
        static_assert(std::is_same_v<decltype(r), std::variant<int, int, int>>);
        REQUIRE(r.index() == 1);
        REQUIRE(std::get<1>(r) == 2);
        auto r2 = block_on(race(value_after(5ms, 1), value_after(300ms, 2)));
        REQUIRE(r2.index() == 0);
        REQUIRE(std::get<0>(r2) == 1);
    }
    SECTION("void becomes std::monostate") {
        auto r = block_on(race(never(log, "slow"), void_after(5ms)));
        static_assert(std::is_same_v<decltype(r), std::variant<int, std::monostate>>);
        REQUIRE(r.index() == 1);
        auto r2 = block_on(race(void_after(300ms), void_after(5ms)));
        static_assert(std::is_same_v<decltype(r2), std::variant<std::monostate, std::monostate>>);
        REQUIRE(r2.index() == 1);
    }
    SECTION("T& becomes std::reference_wrapper<T>, referring to the very object") {
        int x = 7;
        auto r = block_on(race(never(log, "slow"), ref_after(5ms, x)));
        static_assert(std::is_same_v<decltype(r), std::variant<int, std::reference_wrapper<int>>>);
        REQUIRE(r.index() == 1);
        REQUIRE(&std::get<1>(r).get() == &x);
    }
    SECTION("a Timer yields the deadline it fired at") {
        const auto t0 = Clock::now();
        auto r = block_on(race(never(log, "slow"), Timer::after(20ms)));
        static_assert(std::is_same_v<decltype(r), std::variant<int, Timer::time_point>>);
        REQUIRE(r.index() == 1);
        REQUIRE(std::get<1>(r) >= t0 + 20ms);
        REQUIRE(Clock::now() >= t0 + 20ms);
    }
    SECTION("a user's own awaiter") {
        auto r = block_on(race(never(log, "slow"), Nap(log, "nap", 5ms)));
        REQUIRE(r.index() == 1);
        auto r2 = block_on(race(Probe(log, "p", Mode::never), Probe(log, "q", Mode::in_suspend, 9)));
        REQUIRE(r2.index() == 1);
        REQUIRE(std::get<1>(r2) == 9);
    }
    SECTION("readiness, wrapped in a Task") {
        auto pr = Async<net::UnixStream>::pair();
        auto& a = pr.first;
        auto& b = pr.second;
        // The writer finishes first (after the reader was started, so the reader does not win
        // while being started): the reader is cancelled.
        auto r = block_on(race(write_after(b, 5ms, "x"), read_byte(a)));
        REQUIRE(r.index() == 0);
        // The cancelled reader left the byte in place.
        auto r2 = block_on(race(read_byte(a), Timer::after(5s)));
        REQUIRE(r2.index() == 0);
        REQUIRE(std::get<0>(r2) == 1u);
        auto r3 = block_on(race(read_byte(a), Timer::after(30ms)));
        REQUIRE(r3.index() == 1);  // nothing more to read
        auto r4 = block_on(race(Timer::after(5s), wait_writable(b)));
        REQUIRE(r4.index() == 1);
    }
}

namespace {

Task<void> race_with_losers_of_every_kind(Log& log) {
    // The winner is a Timer; the losers: a Task whose frame holds a RAII marker and waits on a
    // Timer of its own, a user's awaitable with operator co_await, and a user's Nap.
    auto r = noted(log, "resumed",
                   co_await race(waits_long(log, "task"), ProbeAwaitable(log, "awaitable"),
                                 Nap(log, "nap", 1h), Timer::after(10ms)));
    log.add(r.index() == 3 ? "timer won" : "wrong winner");
}

Task<void> race_with_direct_awaiter_loser(Log& log) {
    auto r = noted(log, "resumed", co_await race(Probe(log, "probe", Mode::never), Timer::after(10ms)));
    log.add(r.index() == 1 ? "timer won" : "wrong winner");
}

Task<void> race_loser_waiting_after_caller(Log& log) {
    // The loser's own timer (20 ms) fires while the caller, still in the same full-expression,
    // waits 80 ms more. A destroyed loser never wakes.
    auto p = std::pair{co_await race(wakes_after(log, "loser", 20ms), Timer::after(5ms)),
                       co_await Timer::after(80ms)};
    log.add(p.first.index() == 1 ? "timer won" : "wrong winner");
}

}  // namespace

TEST_CASE("race destroys the losers before the caller resumes", "[combinators]") {
    Log log;
    SECTION("Task, user awaitable with operator co_await, user Nap") {
        block_on(race_with_losers_of_every_kind(log));
        INFO(log.dump());
        REQUIRE(log.has("timer won"));
        REQUIRE(log.count("task destroyed") == 1);
        REQUIRE(log.count("awaitable awaiter destroyed") == 1);
        REQUIRE(log.count("nap destroyed") == 1);
        CHECK(log.before("awaitable awaiter destroyed", "resumed"));
        CHECK(log.before("task destroyed", "resumed"));
        CHECK(log.before("nap destroyed", "resumed"));
        REQUIRE_FALSE(log.has("task resumed"));
    }
    SECTION("a user's direct awaiter passed by value") {
        block_on(race_with_direct_awaiter_loser(log));
        INFO(log.dump());
        REQUIRE(log.has("timer won"));
        REQUIRE(log.has("probe suspend"));
        REQUIRE(log.count("probe destroyed") == 1);
        REQUIRE_FALSE(log.has("probe resume"));
        CHECK(log.before("probe destroyed", "resumed"));
    }
    SECTION("nothing of a loser runs after the caller resumed") {
        block_on(race_loser_waiting_after_caller(log));
        INFO(log.dump());
        REQUIRE(log.has("timer won"));
        REQUIRE_FALSE(log.has("loser woke"));
        REQUIRE(log.count("loser destroyed") == 1);
    }
}

namespace {

Task<void> race_loser_lvalue_task(Log& log) {
    // The loser is an lvalue Task: race awaits it in place and it must outlive the race. After
    // the race, its timer fires while the caller waits on: the Task's frame must not transfer to
    // the race's destroyed child frame.
    Task<int> t = value_after(20ms, 5);
    auto r = co_await race(t, Timer::after(5ms));
    log.add(r.index() == 1 ? "timer won" : "wrong winner");
    co_await Timer::after(80ms);
    log.add("caller went on");
}

}  // namespace

TEST_CASE("a Task lvalue that loses a race does not resume the race afterwards", "[combinators]") {
    Log log;
    block_on(race_loser_lvalue_task(log));
    INFO(log.dump());
    REQUIRE(log.has("timer won"));
    REQUIRE(log.has("caller went on"));
}

namespace {

Task<void> race_ready_first(Log& log) {
    auto r = co_await race(Probe(log, "a", Mode::ready, 1), Probe(log, "b", Mode::never));
    log.add(r.index() == 0 && std::get<0>(r) == 1 ? "a won" : "wrong winner");
}
Task<void> race_in_suspend_first(Log& log) {
    auto r = co_await race(Probe(log, "a", Mode::in_suspend, 2), Probe(log, "b", Mode::never),
                           never(log, "c"));
    log.add(r.index() == 0 && std::get<0>(r) == 2 ? "a won" : "wrong winner");
}
Task<void> race_sync_task_first(Log& log) {
    auto r = co_await race(never(log, "t0"), value_now(3), Probe(log, "b", Mode::never), Timer::after(1h));
    log.add(r.index() == 1 && std::get<1>(r) == 3 ? "task won" : "wrong winner");
}
Task<void> race_ready_second(Log& log) {
    auto r = co_await race(Probe(log, "a", Mode::never), Probe(log, "b", Mode::ready, 4),
                           Probe(log, "c", Mode::never));
    log.add(r.index() == 1 && std::get<1>(r) == 4 ? "b won" : "wrong winner");
}

}  // namespace

TEST_CASE("race never starts the awaitables after one that completes while being started", "[combinators]") {
    Log log;
    SECTION("completes in await_ready") {
        block_on(race_ready_first(log));
        INFO(log.dump());
        REQUIRE(log.has("a won"));
        REQUIRE(log.has("a ready"));
        REQUIRE_FALSE(log.has("a suspend"));
        REQUIRE_FALSE(log.has("b ready"));
        REQUIRE_FALSE(log.has("b suspend"));
    }
    SECTION("completes in await_suspend") {
        block_on(race_in_suspend_first(log));
        INFO(log.dump());
        REQUIRE(log.has("a won"));
        REQUIRE(log.has("a suspend"));
        REQUIRE_FALSE(log.has("b ready"));
        REQUIRE_FALSE(log.has("c started"));
        REQUIRE(log.count("c destroyed") == 1);  // created as an argument, never started
    }
    SECTION("a Task that completes synchronously") {
        block_on(race_sync_task_first(log));
        INFO(log.dump());
        REQUIRE(log.has("task won"));
        REQUIRE(log.has("t0 started"));  // the one before it was started (and then destroyed)
        REQUIRE(log.count("t0 destroyed") == 1);
        REQUIRE_FALSE(log.has("b ready"));
    }
    SECTION("the earlier ones were started and are destroyed") {
        block_on(race_ready_second(log));
        INFO(log.dump());
        REQUIRE(log.has("b won"));
        REQUIRE(log.has("a suspend"));
        REQUIRE(log.count("a destroyed") == 1);
        REQUIRE_FALSE(log.has("a resume"));
        REQUIRE_FALSE(log.has("c ready"));
    }
}

TEST_CASE("race of an awaitable that is ready at once and a long Timer returns at once", "[combinators]") {
    const auto t0 = Clock::now();
    auto r = block_on(race(value_now(1), Timer::after(1h)));
    REQUIRE(r.index() == 0);
    auto r2 = block_on(race(Timer::after(0ms), Timer::after(1h)));
    REQUIRE(r2.index() == 0);
    REQUIRE(since(t0) < slack);
}

namespace {

Task<void> race_throwing_winner(Log& log) {
    try {
        (void)co_await race(never(log, "loser"), throw_after(10ms, "boom"), Probe(log, "p", Mode::never));
        log.add("no exception");
    } catch (const std::runtime_error& e) {
        log.add(std::string("caught ") + e.what());
    }
}

}  // namespace

TEST_CASE("race rethrows the exception of the first to finish", "[combinators]") {
    Log log;
    SECTION("thrown after a wait") {
        REQUIRE_THROWS_AS(block_on(race(throw_after(5ms, "x"), never(log, "slow"))), std::runtime_error);
        REQUIRE(log.count("slow destroyed") == 1);
    }
    SECTION("thrown while being started") {
        REQUIRE_THROWS_AS(block_on(race(never(log, "slow"), throw_now("y"), Timer::after(1h))), std::runtime_error);
        REQUIRE(log.count("slow destroyed") == 1);
    }
    SECTION("the losers are gone when the exception reaches the caller") {
        block_on(race_throwing_winner(log));
        INFO(log.dump());
        REQUIRE(log.has("caught boom"));
        REQUIRE(log.before("loser destroyed", "caught boom"));
        REQUIRE(log.before("p destroyed", "caught boom"));
    }
    SECTION("a later winner's exception does not hide an earlier value") {
        auto r = block_on(race(value_after(5ms, 1), throw_after(300ms, "late")));
        REQUIRE(r.index() == 0);
    }
}

// ================================================================================================
// when_all
// ================================================================================================

TEST_CASE("when_all yields every result in argument order", "[combinators]") {
    Log log;
    int x = 3;
    const auto t0 = Clock::now();
    auto r = block_on(when_all(value_after(30ms, 1), Timer::after(10ms), void_after(5ms),
                               value_after(1ms, std::string("s")), ref_after(15ms, x),
                               Probe(log, "p", Mode::ready, 6), Nap(log, "nap", 20ms)));
    static_assert(std::is_same_v<decltype(r), std::tuple<int, Timer::time_point, std::monostate, std::string,
                                                         std::reference_wrapper<int>, int, Timer::time_point>>);
    REQUIRE(since(t0) >= 30ms);
    REQUIRE(std::get<0>(r) == 1);
    REQUIRE(std::get<1>(r) >= t0 + 10ms);
    REQUIRE(std::get<3>(r) == "s");
    REQUIRE(&std::get<4>(r).get() == &x);
    REQUIRE(std::get<5>(r) == 6);
    REQUIRE(std::get<6>(r) >= t0 + 20ms);
    REQUIRE(since(t0) < 30ms + slack);
}

TEST_CASE("when_all of nothing is ready at once", "[combinators]") {
    auto r = block_on(when_all());
    static_assert(std::is_same_v<decltype(r), std::tuple<>>);
    SUCCEED();
}

TEST_CASE("when_all with readiness wrapped in Tasks", "[combinators]") {
    auto pr = Async<net::UnixStream>::pair();
    auto r = block_on(when_all(read_byte(pr.first), write_after(pr.second, 10ms, "z"), wait_writable(pr.second)));
    REQUIRE(std::get<0>(r) == 1u);
}

namespace {

Task<void> when_all_one_throws(Log& log) {
    try {
        (void)co_await when_all(waits_long(log, "task"), throw_after(10ms, "boom"), ProbeAwaitable(log, "awaitable"),
                                Nap(log, "nap", 1h), Probe(log, "probe", Mode::never), value_after(1ms, 5));
        log.add("no exception");
    } catch (const std::runtime_error& e) {
        log.add(std::string("caught ") + e.what());
    }
}

Task<void> when_all_throws_while_starting(Log& log) {
    try {
        (void)co_await when_all(never(log, "t0"), throw_now("early"), Probe(log, "later", Mode::never));
        log.add("no exception");
    } catch (const std::runtime_error& e) {
        log.add(std::string("caught ") + e.what());
    }
}

}  // namespace

TEST_CASE("when_all destroys the others when one throws and rethrows its exception", "[combinators]") {
    Log log;
    SECTION("one throws after a wait") {
        block_on(when_all_one_throws(log));
        INFO(log.dump());
        REQUIRE(log.has("caught boom"));
        REQUIRE(log.count("task destroyed") == 1);
        REQUIRE_FALSE(log.has("task resumed"));
        CHECK(log.before("awaitable awaiter destroyed", "caught boom"));
        CHECK(log.before("task destroyed", "caught boom"));
        CHECK(log.before("nap destroyed", "caught boom"));
        CHECK(log.before("probe destroyed", "caught boom"));
        REQUIRE_FALSE(log.has("probe resume"));
    }
    SECTION("one throws while being started: the later ones are never started") {
        block_on(when_all_throws_while_starting(log));
        INFO(log.dump());
        REQUIRE(log.has("caught early"));
        REQUIRE(log.has("t0 started"));
        REQUIRE(log.before("t0 destroyed", "caught early"));
        REQUIRE_FALSE(log.has("later ready"));
    }
    SECTION("the first exception wins") {
        REQUIRE_THROWS_WITH(block_on(when_all(throw_after(100ms, "second"), throw_after(5ms, "first"))), "first");
    }
}

// ================================================================================================
// timeout
// ================================================================================================

TEST_CASE("timeout throws timed_out after the deadline and never before it", "[combinators]") {
    Log log;
    auto pr = Async<net::UnixStream>::pair();
    auto& a = pr.first;
    auto check = [](auto&& run) {
        const auto t0 = Clock::now();
        REQUIRE_THROWS_ERRC(run(), std::errc::timed_out);
        const auto took = since(t0);
        REQUIRE(took >= 40ms);
        REQUIRE(took < 40ms + slack);
    };
    SECTION("a Task") { check([&] { return block_on(timeout(40ms, never(log, "t"))); }); }
    SECTION("a Timer") { check([&] { return block_on(timeout(40ms, Timer::after(1h))); }); }
    SECTION("a never Timer") { check([&] { return block_on(timeout(40ms, Timer::never())); }); }
    SECTION("readiness, wrapped in a Task") { check([&] { return block_on(timeout(40ms, read_byte(a))); }); }
    SECTION("a user's direct awaiter") { check([&] { return block_on(timeout(40ms, Probe(log, "p", Mode::never))); }); }
    SECTION("a user's awaitable with operator co_await") {
        check([&] { return block_on(timeout(40ms, ProbeAwaitable(log, "pa"))); });
    }
    SECTION("a user's Nap") { check([&] { return block_on(timeout(40ms, Nap(log, "nap", 1h))); }); }
    SECTION("a duration in another unit") {
        check([&] { return block_on(timeout(std::chrono::microseconds(40000), Timer::never())); });
    }
}

TEST_CASE("timeout yields the result when it comes in time", "[combinators]") {
    Log log;
    auto pr = Async<net::UnixStream>::pair();
    auto& a = pr.first;
    auto& b = pr.second;
    REQUIRE(block_on(timeout(5s, value_after(5ms, 7))) == 7);
    const auto t0 = Clock::now();
    REQUIRE(block_on(timeout(5s, Timer::after(10ms))) >= t0 + 10ms);
    block_on(timeout(5s, void_after(1ms)));
    int x = 1;
    REQUIRE(&block_on(timeout(5s, ref_after(1ms, x))) == &x);
    REQUIRE(block_on(timeout(5s, Nap(log, "nap", 5ms))) >= t0 + 5ms);
    REQUIRE(b.get_ref().write(as_bytes("k")) == 1u);
    REQUIRE(block_on(timeout(5s, read_byte(a))) == 1u);
    REQUIRE(block_on(timeout(5s, Probe(log, "p", Mode::in_suspend, 8))) == 8);
    REQUIRE_THROWS_WITH(block_on(timeout(5s, throw_after(1ms, "inner"))), "inner");
    REQUIRE(since(t0) < slack);
}

TEST_CASE("timeout of an awaitable that is ready at once returns at once", "[combinators]") {
    Log log;
    const auto t0 = Clock::now();
    REQUIRE(block_on(timeout(1h, value_now(4))) == 4);
    REQUIRE(block_on(timeout(1h, Probe(log, "ready", Mode::ready, 5))) == 5);
    REQUIRE(block_on(timeout(1h, Probe(log, "in suspend", Mode::in_suspend, 6))) == 6);
    REQUIRE(block_on(timeout(std::chrono::hours::max(), value_now(7))) == 7);
    REQUIRE(since(t0) < slack);
}

namespace {

Task<void> timeout_cancels(Log& log) {
    try {
        (void)co_await timeout(20ms, waits_long(log, "inner"));
        log.add("no exception");
    } catch (const std::system_error& e) {
        log.add(e.code() == std::errc::timed_out ? "caught timed_out" : "caught other");
    }
    try {
        (void)co_await timeout(20ms, ProbeAwaitable(log, "awaitable"));
    } catch (const std::system_error&) {
        log.add("caught 2");
    }
    try {
        (void)co_await timeout(20ms, Probe(log, "probe", Mode::never));
    } catch (const std::system_error&) {
        log.add("caught 3");
    }
    // The inner awaitable's own timer would fire 20 ms after the timeout: it must not.
    try {
        (void)co_await timeout(10ms, wakes_after(log, "sleeper", 30ms));
    } catch (const std::system_error&) {
        log.add("caught 4");
    }
    co_await Timer::after(60ms);
}

}  // namespace

TEST_CASE("timeout destroys the inner awaitable when it expires", "[combinators]") {
    Log log;
    block_on(timeout_cancels(log));
    INFO(log.dump());
    REQUIRE(log.has("caught timed_out"));
    REQUIRE(log.before("inner destroyed", "caught timed_out"));
    REQUIRE_FALSE(log.has("inner resumed"));
    REQUIRE(log.before("awaitable awaiter destroyed", "caught 2"));
    REQUIRE(log.before("probe destroyed", "caught 3"));
    REQUIRE_FALSE(log.has("probe resume"));
    REQUIRE(log.before("sleeper destroyed", "caught 4"));
    REQUIRE_FALSE(log.has("sleeper woke"));
}

TEST_CASE("timeout can be spawned: its awaitable outlives the spawn call", "[combinators]") {
    // timeout() is a coroutine; the awaitable given to it must be kept alive by it, as a spawned
    // task runs long after the full-expression that created it.
    LocalExecutor ex;
    auto h = ex.spawn(timeout(5s, value_after(5ms, 11)));
    auto h2 = ex.spawn(timeout(5ms, value_after(1h, 12)));
    REQUIRE(block_on(ex.run(h)) == 11);
    REQUIRE_THROWS_ERRC(block_on(ex.run(h2)), std::errc::timed_out);
}

// ================================================================================================
// readiness awaiters passed by value (the documented forms)
// ================================================================================================

namespace {

Task<void> rvalue_readiness(Log& log) {
    auto pr = Async<net::UnixStream>::pair();
    auto& a = pr.first;
    auto& b = pr.second;
    std::byte buf[4];
    // Data already there: the read wins while being started; the timer is never started.
    (void)b.get_ref().write(as_bytes("x"));
    auto r = co_await race(a.read(std::span<std::byte>(buf)), Timer::after(1h));
    log.add(r.index() == 0 && std::get<0>(r) == 1u ? "read won" : "wrong");
    // Nothing there: the timer wins, the read is deregistered, the next byte is left in place.
    auto r2 = co_await race(a.read(std::span<std::byte>(buf)), Timer::after(10ms));
    log.add(r2.index() == 1 ? "timer won" : "wrong");
    (void)b.get_ref().write(as_bytes("y"));
    auto r3 = co_await when_all(a.readable(), b.writable(), a.read(std::span<std::byte>(buf)));
    log.add(std::get<2>(r3) == 1u && buf[0] == std::byte{'y'} ? "when_all read" : "wrong");
    try {
        (void)co_await timeout(20ms, a.read(std::span<std::byte>(buf)));
        log.add("no timeout");
    } catch (const std::system_error& e) {
        log.add(e.code() == std::errc::timed_out ? "timed out" : "wrong");
    }
}

}  // namespace

TEST_CASE("a readiness awaiter passed by value composes", "[combinators]") {
    Log log;
    block_on(rvalue_readiness(log));
    INFO(log.dump());
    REQUIRE(log.has("read won"));
    REQUIRE(log.has("timer won"));
    REQUIRE(log.has("when_all read"));
    REQUIRE(log.has("timed out"));
}

// ================================================================================================
// lvalue arguments
// ================================================================================================

namespace {

// A user's copyable direct awaiter that remembers which object was awaited.
struct WhoAwaited {
    const WhoAwaited* seen = nullptr;
    bool await_ready() noexcept {
        seen = this;
        return true;
    }
    void await_suspend(std::coroutine_handle<>) noexcept {}
    int await_resume() noexcept { return 1; }
};

}  // namespace

TEST_CASE("race when_all and timeout refuse an awaiter object by lvalue and take it by value", "[combinators]") {
    // combinators.hpp: an awaiter object passed by lvalue could not be cancelled when it loses
    // (it would stay linked after its child is destroyed), so it is refused at compile time;
    // lvalue Tasks and Timers (whose co_await makes a fresh awaiter) are fine.
    static_assert(!detail::cancellable_argument<WhoAwaited&>);
    static_assert(detail::cancellable_argument<WhoAwaited>);
    static_assert(detail::cancellable_argument<Timer&>);
    static_assert(detail::cancellable_argument<Task<int>&>);
    WhoAwaited w;
    SECTION("race") {
        auto r = block_on(race(std::move(w), Timer::after(1h)));
        REQUIRE(r.index() == 0);
    }
    SECTION("when_all") {
        auto r = block_on(when_all(WhoAwaited{}, value_now(2)));
        REQUIRE(std::get<0>(r) == 1);
    }
    SECTION("timeout") {
        REQUIRE(block_on(timeout(1h, WhoAwaited{})) == 1);
    }
}

// ================================================================================================
// nesting
// ================================================================================================

namespace {

Task<void> race_of_when_alls(Log& log) {
    auto r = noted(log, "resumed",
                   co_await race(when_all(value_after(5ms, 1), waits_long(log, "slow a")),
                                 when_all(value_after(5ms, 2), value_after(15ms, std::string("b"))),
                                 when_all(never(log, "never c"), Probe(log, "probe c", Mode::never))));
    if (r.index() == 1 && std::get<0>(std::get<1>(r)) == 2 && std::get<1>(std::get<1>(r)) == "b") {
        log.add("second group won");
    }
}

Task<void> timeout_of_race(Log& log) {
    try {
        (void)co_await timeout(20ms, race(never(log, "x"), waits_long(log, "y"), ProbeAwaitable(log, "z")));
        log.add("no exception");
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::timed_out) log.add("timed out");
    }
    auto r = co_await timeout(5s, race(never(log, "u"), value_after(5ms, 3)));
    if (r.index() == 1 && std::get<1>(r) == 3) log.add("race in time");
}

Task<void> when_all_of_races_and_timeouts(Log& log) {
    auto r = co_await when_all(race(value_after(5ms, 1), never(log, "n1")),
                               timeout(5s, value_after(10ms, 2)),
                               race(timeout(3ms, never(log, "n2")), never(log, "n3")));
    (void)r;
    log.add("unreachable");
}

Task<void> nested_timeouts(Log& log) {
    try {
        (void)co_await timeout(1h, timeout(20ms, timeout(1h, waits_long(log, "deep"))));
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::timed_out) log.add("inner timeout");
    }
}

}  // namespace

TEST_CASE("combinators nest", "[combinators]") {
    Log log;
    SECTION("a race of when_alls") {
        block_on(race_of_when_alls(log));
        INFO(log.dump());
        REQUIRE(log.has("second group won"));
        REQUIRE(log.count("slow a destroyed") == 1);
        REQUIRE(log.count("never c destroyed") == 1);
        REQUIRE(log.count("probe c destroyed") == 1);
        CHECK(log.before("slow a destroyed", "resumed"));
        CHECK(log.before("never c destroyed", "resumed"));
        CHECK(log.before("probe c destroyed", "resumed"));
    }
    SECTION("a timeout of a race") {
        block_on(timeout_of_race(log));
        INFO(log.dump());
        REQUIRE(log.has("timed out"));
        REQUIRE(log.before("x destroyed", "timed out"));
        REQUIRE(log.before("y destroyed", "timed out"));
        REQUIRE(log.before("z awaiter destroyed", "timed out"));
        REQUIRE(log.has("race in time"));
        REQUIRE(log.count("u destroyed") == 1);
    }
    SECTION("a when_all whose member throws timed_out") {
        REQUIRE_THROWS_ERRC(block_on(when_all_of_races_and_timeouts(log)), std::errc::timed_out);
        INFO(log.dump());
        REQUIRE(log.count("n1 destroyed") == 1);
        REQUIRE(log.count("n2 destroyed") == 1);
        REQUIRE(log.count("n3 destroyed") == 1);
        REQUIRE_FALSE(log.has("unreachable"));
    }
    SECTION("nested timeouts: the innermost expired one wins") {
        const auto t0 = Clock::now();
        block_on(nested_timeouts(log));
        REQUIRE(log.has("inner timeout"));
        REQUIRE(log.count("deep destroyed") == 1);
        REQUIRE(since(t0) >= 20ms);
        REQUIRE(since(t0) < slack);
    }
}

// ================================================================================================
// yield_now
// ================================================================================================

namespace {

Task<void> take_turns(Log& log, std::string name, int rounds) {
    for (int i = 0; i < rounds; ++i) {
        log.add(name + std::to_string(i));
        co_await yield_now();
    }
}

Task<void> spin_until(const bool& flag, int& spins) {
    while (!flag) {
        ++spins;
        co_await yield_now();
    }
}

Task<void> set_flag(bool& flag) {
    co_await yield_now();
    flag = true;
}

}  // namespace

TEST_CASE("yield_now lets another task run", "[combinators]") {
    Log log;
    SECTION("two tasks of one executor take turns") {
        LocalExecutor ex;
        auto a = ex.spawn(take_turns(log, "a", 3));
        auto b = ex.spawn(take_turns(log, "b", 3));
        block_on(ex.run(when_all(std::move(a), std::move(b))));
        INFO(log.dump());
        REQUIRE(log.before("a0", "b0"));
        REQUIRE(log.before("b0", "a1"));
        REQUIRE(log.before("a1", "b1"));
        REQUIRE(log.before("b1", "a2"));
        REQUIRE(log.before("a2", "b2"));
    }
    SECTION("two branches of one task take turns") {
        bool flag = false;
        int spins = 0;
        block_on(when_all(spin_until(flag, spins), set_flag(flag)));
        REQUIRE(flag);
        REQUIRE(spins >= 1);
    }
}

TEST_CASE("a coroutine that keeps yielding does not starve a timer of its own block_on", "[combinators]") {
    const auto t0 = Clock::now();
    auto r = block_on(race(yield_forever(), Timer::after(50ms)));
    REQUIRE(r.index() == 1);
    REQUIRE(since(t0) >= 50ms);
    REQUIRE(since(t0) < 50ms + slack);
}

TEST_CASE("a yield_now cancelled while its wake is queued never resumes", "[combinators]") {
    Log log;
    // The first branch yields (its wake is queued at once); the second completes while being
    // started: the first is destroyed with its wake still queued.
    auto r = block_on(race(take_turns(log, "y", 5), value_now(1)));
    REQUIRE(r.index() == 1);
    REQUIRE(log.has("y0"));
    REQUIRE_FALSE(log.has("y1"));
    // The task goes on normally afterwards.
    block_on(Timer::after(5ms));
    REQUIRE_FALSE(log.has("y1"));
}
