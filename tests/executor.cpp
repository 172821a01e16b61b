// Executors (include/async_io/executor.hpp): LocalExecutor, the thread-safe Executor, spawn and
// JoinHandle. DESIGN.md semantics 3 (a task resumes only on its runner, never on two threads at
// once) and 4 (cancellation is destruction) are checked by instrumenting the tasks themselves:
// every statement between two co_awaits runs inside enter()/leave(), which flag a second thread
// entering, a thread that does not run the task's executor, and a frame resumed after it was
// destroyed; a RAII marker in each frame records its destruction.
#include "catch.hpp"
#include "support.hpp"
#include "task_checks.hpp"

#include "reactor.hpp"  // internal: Reactor::rounds, blocking_rounds

#include <async_io/async.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace async_io;
using namespace async_io::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

namespace {

// Generous bound for "late": a loaded 2-core machine under TSan.
constexpr auto slack = 2s;

ms since(Clock::time_point t0) { return std::chrono::duration_cast<ms>(Clock::now() - t0); }

// Polls `pred` from a plain thread (driving nothing) until it holds or `limit` passed.
template <class F>
bool wait_until(F&& pred, Clock::duration limit = 10s) {
    const auto end = Clock::now() + limit;
    while (!pred()) {
        if (Clock::now() > end) return pred();
        std::this_thread::sleep_for(1ms);
    }
    return true;
}


// The instrumentation of a task (TaskState, enter/leave, Marker, checked): tests/task_checks.hpp.

// ---- running an executor on threads -----------------------------------------------------------

Task<void> until(const std::atomic<bool>& stop) {
    while (!stop.load()) co_await Timer::after(1ms);
}

// Runs `ex` on `n` threads, each `block_on(ex.run(until(stop)))`, until stop() or destruction.
// The thread ids are known when the constructor returns, before any task ran.
template <class Ex>
class Runners {
public:
    Runners(Ex& ex, int n) {
        std::latch ready(n);
        for (int i = 0; i < n; ++i) {
            threads_.emplace_back([this, &ex, &ready] {
                {
                    std::lock_guard g(m_);
                    ids_.push_back(std::this_thread::get_id());
                }
                ready.count_down();
                try {
                    block_on(ex.run(until(stop_)));
                } catch (const std::exception& e) {
                    std::lock_guard g(m_);
                    error_ = e.what();
                }
            });
        }
        ready.wait();
    }
    ~Runners() { stop(); }
    void stop() {
        stop_ = true;
        for (auto& t : threads_) {
            if (t.joinable()) t.join();
        }
    }
    const std::vector<std::thread::id>& ids() const { return ids_; }
    bool contains(std::thread::id id) const { return std::find(ids_.begin(), ids_.end(), id) != ids_.end(); }
    std::string error() {
        std::lock_guard g(m_);
        return error_;
    }

private:
    std::atomic<bool> stop_{false};
    std::mutex m_;
    std::vector<std::thread::id> ids_;
    std::string error_;
    std::vector<std::thread> threads_;
};

// ---- simple tasks -------------------------------------------------------------------------------

template <class T>
Task<T> value_after(Timer::duration d, T v) {
    co_await Timer::after(d);
    co_return v;
}

Task<int> value_now(int v) { co_return v; }

Task<int&> ref_now(int& x) { co_return x; }

Task<std::unique_ptr<int>> boxed(int v) {
    co_await yield_now();
    co_return std::make_unique<int>(v);
}

Task<void> nothing_after(Timer::duration d) { co_await Timer::after(d); }

Task<int> throw_after(Timer::duration d, std::string what) {
    co_await Timer::after(d);
    throw std::runtime_error(what);
}

// Counts its frame's destruction in `gone` (the counter is a parameter, so this also works for a
// frame destroyed before it started).
class Gone {
public:
    explicit Gone(std::atomic<int>& n) : n_(&n) {}
    Gone(Gone&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
    Gone& operator=(Gone&&) = delete;
    ~Gone() {
        if (n_) n_->fetch_add(1);
    }

private:
    std::atomic<int>* n_;
};

// Sets `started`, waits `d`, sets `fired`.
Task<int> sleeper(Gone, std::atomic<bool>& started, Timer::duration d, std::atomic<bool>& fired) {
    started = true;
    co_await Timer::after(d);
    fired = true;
    co_return 1;
}

Task<void> forever(Gone, std::atomic<bool>& started) {
    started = true;
    co_await Timer::never();
}

Task<std::size_t> read_forever(Gone, Async<net::UnixStream>& s, std::atomic<bool>& started) {
    started = true;
    std::byte b[1];
    co_return co_await s.read(std::span<std::byte>(b));
}

Task<void> yield_until(const std::atomic<bool>& stop, std::atomic<long>& spins) {
    while (!stop.load()) {
        spins.fetch_add(1, std::memory_order_relaxed);
        co_await yield_now();
    }
}

Task<void> fire_at(Timer::duration d, std::atomic<bool>& fired, std::atomic<long>& fired_after_ms, Clock::time_point t0) {
    co_await Timer::after(d);
    fired_after_ms = since(t0).count();
    fired = true;
}

}  // namespace

// ================================================================================================
// spawn and JoinHandle
// ================================================================================================

namespace {

Task<int> join_in_task(JoinHandle<int> h) { co_return co_await h + 1; }

}  // namespace

TEST_CASE("spawn returns a JoinHandle whose co_await yields the task's value", "[executor]") {
    SECTION("LocalExecutor") {
        LocalExecutor ex;
        auto h1 = ex.spawn(value_after(1ms, 1));
        auto h2 = ex.spawn(value_after(1ms, std::string("two")));
        auto h3 = ex.spawn(nothing_after(1ms));
        int x = 4;
        auto h4 = ex.spawn(ref_now(x));
        auto h5 = ex.spawn(boxed(5));
        REQUIRE(block_on(ex.run(h1)) == 1);
        REQUIRE(block_on(ex.run(h2)) == "two");
        block_on(ex.run(h3));
        REQUIRE(&block_on(ex.run(h4)) == &x);
        REQUIRE(*block_on(ex.run(h5)) == 5);
        REQUIRE(ex.is_empty());
    }
    SECTION("awaited by another task of the same executor") {
        LocalExecutor ex;
        auto inner = ex.spawn(value_after(2ms, 41));
        auto outer = ex.spawn(join_in_task(std::move(inner)));
        REQUIRE(block_on(ex.run(std::move(outer))) == 42);
    }
    SECTION("Executor, awaited from a thread that does not run it") {
        Executor ex;
        Runners<Executor> run(ex, 2);
        auto h = ex.spawn(value_after(2ms, 7));
        auto h2 = ex.spawn(boxed(8));
        REQUIRE(block_on(h) == 7);
        REQUIRE(*block_on(std::move(h2)) == 8);
        run.stop();
        REQUIRE(run.error().empty());
    }
}

TEST_CASE("awaiting a JoinHandle rethrows the task's exception", "[executor]") {
    LocalExecutor ex;
    auto h = ex.spawn(throw_after(1ms, "boom"));
    REQUIRE_THROWS_WITH(block_on(ex.run(h)), "boom");
    Executor ex2;
    Runners<Executor> run(ex2, 2);
    auto h2 = ex2.spawn(throw_after(1ms, "bang"));
    REQUIRE_THROWS_WITH(block_on(h2), "bang");
}

TEST_CASE("destroying a JoinHandle cancels its task", "[executor]") {
    std::atomic<int> gone{0};
    std::atomic<bool> started{false}, fired{false};
    SECTION("LocalExecutor: a task waiting on a timer") {
        LocalExecutor ex;
        auto h = ex.spawn(sleeper(Gone(gone), started, 50ms, fired));
        block_on(ex.run(Timer::after(5ms)));
        REQUIRE(started);
        REQUIRE(gone == 0);
        REQUIRE_FALSE(ex.is_empty());
        h = {};
        REQUIRE(gone == 1);  // the frame is destroyed at once: the task was idle
        REQUIRE(ex.is_empty());
        block_on(ex.run(Timer::after(100ms)));
        REQUIRE_FALSE(fired);  // its timer no longer fires
    }
    SECTION("LocalExecutor: a task that never started") {
        LocalExecutor ex;
        {
            auto h = ex.spawn(sleeper(Gone(gone), started, 1ms, fired));
        }
        REQUIRE(gone == 1);
        REQUIRE(ex.is_empty());
        block_on(ex.run(Timer::after(20ms)));
        REQUIRE_FALSE(started);
    }
    SECTION("LocalExecutor: destroyed on another thread") {
        LocalExecutor ex;
        auto h = ex.spawn(sleeper(Gone(gone), started, 50ms, fired));
        block_on(ex.run(Timer::after(5ms)));
        REQUIRE(started);
        std::thread([&] { h = {}; }).join();
        REQUIRE(gone == 1);
        block_on(ex.run(Timer::after(100ms)));
        REQUIRE_FALSE(fired);
    }
    SECTION("Executor: destroyed on a thread that does not run it") {
        Executor ex;
        Runners<Executor> run(ex, 2);
        auto h = ex.spawn(sleeper(Gone(gone), started, 100ms, fired));
        REQUIRE(wait_until([&] { return started.load(); }));
        std::this_thread::sleep_for(10ms);  // let it suspend
        h = {};
        REQUIRE(gone == 1);
        std::this_thread::sleep_for(200ms);
        REQUIRE_FALSE(fired);
        REQUIRE(ex.is_empty());
        run.stop();
    }
    SECTION("a task waiting on readiness") {
        LocalExecutor ex;
        auto pr = Async<net::UnixStream>::pair();
        auto h = ex.spawn(read_forever(Gone(gone), pr.first, started));
        block_on(ex.run(Timer::after(5ms)));
        REQUIRE(started);
        h = {};
        REQUIRE(gone == 1);
        // The byte is not consumed by the cancelled reader.
        REQUIRE(pr.second.get_ref().write(as_bytes("x")) == 1u);
        block_on(ex.run(Timer::after(20ms)));
        std::byte b[2];
        REQUIRE(block_on(pr.first.read(std::span<std::byte>(b))) == 1u);
    }
}

namespace {

Task<int> parent_of(Gone, LocalExecutor& ex, std::atomic<int>& child_gone, std::atomic<bool>& started) {
    auto child = ex.spawn(sleeper(Gone(child_gone), started, 1h, started));
    co_return co_await child;
}

}  // namespace

TEST_CASE("destroying a JoinHandle destroys the JoinHandles held in the task's frame", "[executor]") {
    std::atomic<int> gone{0}, child_gone{0};
    std::atomic<bool> started{false};
    LocalExecutor ex;
    auto h = ex.spawn(parent_of(Gone(gone), ex, child_gone, started));
    block_on(ex.run(Timer::after(10ms)));
    REQUIRE(started);
    h = {};
    REQUIRE(gone == 1);
    REQUIRE(child_gone == 1);
    REQUIRE(ex.is_empty());
}

namespace {

Task<void> busy_then_wait(Gone, std::atomic<bool>& in_body, const std::atomic<bool>& release, std::atomic<bool>& after) {
    in_body = true;
    while (!release.load()) std::this_thread::yield();
    co_await Timer::after(1ms);
    after = true;
}

}  // namespace

TEST_CASE("a JoinHandle destroyed while its task runs on another thread cancels it at its next suspension", "[executor]") {
    std::atomic<int> gone{0};
    std::atomic<bool> in_body{false}, release{false}, after{false};
    Executor ex;
    Runners<Executor> run(ex, 2);
    auto h = ex.spawn(busy_then_wait(Gone(gone), in_body, release, after));
    REQUIRE(wait_until([&] { return in_body.load(); }));
    const auto t0 = Clock::now();
    h = {};  // must not wait for the task
    REQUIRE(since(t0) < slack);
    REQUIRE(gone == 0);  // still running: its runner destroys it when it suspends
    release = true;
    REQUIRE(wait_until([&] { return gone.load() == 1; }, 5s));
    std::this_thread::sleep_for(20ms);
    REQUIRE_FALSE(after);
    REQUIRE(ex.is_empty());
    run.stop();
}

namespace {

Task<void> set_after(Gone, Timer::duration d, std::atomic<bool>& done) {
    co_await Timer::after(d);
    done = true;
}

Task<void> wait_flag(const std::atomic<bool>& f) {
    while (!f.load()) co_await Timer::after(1ms);
}

}  // namespace

TEST_CASE("detach lets the task run to completion", "[executor]") {
    std::atomic<int> gone{0};
    std::atomic<bool> done{false};
    SECTION("LocalExecutor") {
        LocalExecutor ex;
        ex.spawn(set_after(Gone(gone), 10ms, done)).detach();
        REQUIRE_FALSE(ex.is_empty());
        block_on(ex.run(timeout(5s, wait_flag(done))));
        REQUIRE(done);
        block_on(ex.run(Timer::after(5ms)));
        REQUIRE(gone == 1);  // its frame was freed when it completed
        REQUIRE(ex.is_empty());
    }
    SECTION("Executor") {
        Executor ex;
        Runners<Executor> run(ex, 2);
        auto h = ex.spawn(set_after(Gone(gone), 10ms, done));
        h.detach();
        REQUIRE_FALSE(h);
        REQUIRE(wait_until([&] { return done.load(); }));
        REQUIRE(wait_until([&] { return gone.load() == 1; }));
        REQUIRE(wait_until([&] { return ex.is_empty(); }));
        run.stop();
    }
    SECTION("detached after it completed") {
        LocalExecutor ex;
        auto h = ex.spawn(set_after(Gone(gone), 0ms, done));
        block_on(ex.run(timeout(5s, wait_flag(done))));
        h.detach();
        REQUIRE(gone == 1);
        REQUIRE(ex.is_empty());
    }
}

namespace {

Task<void> note_thread(std::atomic<bool>& ran, std::thread::id& where) {
    ran = true;
    where = std::this_thread::get_id();
    co_return;
}

}  // namespace

TEST_CASE("LocalExecutor runs its tasks only inside run()", "[executor]") {
    LocalExecutor ex;
    std::atomic<bool> ran{false}, ran2{false};
    std::thread::id where, where2;
    auto h = ex.spawn(note_thread(ran, where));
    std::optional<JoinHandle<void>> h2;
    std::thread([&] { h2.emplace(ex.spawn(note_thread(ran2, where2))); }).join();  // spawned elsewhere
    std::this_thread::sleep_for(20ms);
    REQUIRE_FALSE(ran);
    block_on(Timer::after(20ms));  // driving the reactor is not running the executor
    REQUIRE_FALSE(ran);
    REQUIRE_FALSE(ran2);
    REQUIRE(ex.try_tick());  // one step, on this thread
    REQUIRE(ran);
    REQUIRE(where == std::this_thread::get_id());
    block_on(ex.run(std::move(*h2)));
    REQUIRE(ran2);
    REQUIRE(where2 == std::this_thread::get_id());
    REQUIRE_FALSE(ex.try_tick());
}

// ================================================================================================
// Executor on several threads
// ================================================================================================

namespace {

struct Pool {
    Violations v;
    std::deque<TaskState> states;  // stable addresses
    std::mutex m;
    TaskState& add(const std::vector<std::thread::id>* runners) {
        std::lock_guard g(m);
        auto& s = states.emplace_back();
        s.v = &v;
        s.runners = runners;
        s.id = static_cast<int>(states.size()) - 1;
        return s;
    }
};


Task<void> nap(TaskState& s, Timer::duration d) {
    enter(s);
    co_await checked(s, Timer::after(d));
    leave(s);
}

Task<void> yielder(TaskState& s, int n) {
    enter(s);
    for (int i = 0; i < n; ++i) co_await checked(s, yield_now());
    leave(s);
}

// A task that goes through many suspension points of different kinds.
Task<int> worker(Marker, TaskState& s, unsigned seed, Executor* other, const std::vector<std::thread::id>* other_ids,
                 Pool* pool) {
    enter(s);
    s.started.fetch_add(1);
    std::minstd_rand rng(seed);
    for (int i = 0; i < 6; ++i) {
        switch (rng() % 5) {
            case 0: co_await checked(s, Timer::after(std::chrono::microseconds(rng() % 2000))); break;
            case 1: co_await checked(s, yield_now()); break;
            case 2:
                (void)co_await checked(s, when_all(nap(s, std::chrono::microseconds(rng() % 1000)), yielder(s, 2)));
                break;
            case 3:
                (void)co_await checked(s, race(nap(s, 1h), yielder(s, 3), nap(s, std::chrono::microseconds(rng() % 500))));
                break;
            case 4:
                if (other && rng() % 2 == 0) {
                    // Spawn on the other executor from this executor's thread, and join it.
                    TaskState& c = pool->add(other_ids);
                    auto h = other->spawn(worker(Marker(c), c, static_cast<unsigned>(rng()), nullptr, nullptr, pool));
                    const int r = co_await checked(s, h);
                    if (r != c.id) s.v->add("a joined child yielded the wrong value");
                }
                break;
        }
    }
    s.finishing = true;
    s.completed.fetch_add(1);
    leave(s);
    co_return s.id;
}

}  // namespace

TEST_CASE("Executor runs every task exactly once on one thread at a time and only on its own threads", "[executor]") {
    const int threads = GENERATE(2, 3, 4);
    CAPTURE(threads);
    Pool pool;
    Executor a, b;
    Runners<Executor> run_a(a, threads);
    Runners<Executor> run_b(b, 2);
    constexpr int per_spawner = 100;
    std::mutex hm;
    std::vector<std::pair<TaskState*, JoinHandle<int>>> handles;

    auto spawner = [&](unsigned seed) {
        std::minstd_rand rng(seed);
        for (int i = 0; i < per_spawner; ++i) {
            const bool on_a = rng() % 2 == 0;
            Executor& ex = on_a ? a : b;
            Executor& other = on_a ? b : a;
            const auto* ids = on_a ? &run_a.ids() : &run_b.ids();
            const auto* other_ids = on_a ? &run_b.ids() : &run_a.ids();
            TaskState& s = pool.add(ids);
            auto h = ex.spawn(worker(Marker(s), s, static_cast<unsigned>(rng()), &other, other_ids, &pool));
            std::lock_guard g(hm);
            handles.emplace_back(&s, std::move(h));
        }
    };
    // Spawn from this thread and from two threads that run no executor, all at once.
    std::thread t1(spawner, 1u), t2(spawner, 2u);
    spawner(3u);
    t1.join();
    t2.join();
    for (auto& [s, h] : handles) {
        const int r = block_on(timeout(20s, h));
        if (r != s->id) pool.v.add("a JoinHandle yielded the wrong value");
    }
    handles.clear();
    REQUIRE(wait_until([&] { return a.is_empty() && b.is_empty(); }));
    run_a.stop();
    run_b.stop();
    REQUIRE(run_a.error().empty());
    REQUIRE(run_b.error().empty());
    INFO(pool.v.first());
    REQUIRE(pool.v.count() == 0);
    for (auto& s : pool.states) {
        CAPTURE(s.id);
        REQUIRE(s.started == 1);
        REQUIRE(s.completed == 1);
        REQUIRE(s.destroyed == 0);
        REQUIRE(s.dead);
        REQUIRE_FALSE(s.running);
    }
    REQUIRE(pool.states.size() >= static_cast<std::size_t>(3 * per_spawner));
}

namespace {

// Ping-pong through a socket pair: every wake comes from whichever thread drives the reactor,
// often right after the task suspended on another thread.
Task<int> pinger(Marker, TaskState& s, Async<net::UnixStream>& sock, int rounds) {
    enter(s);
    s.started.fetch_add(1);
    std::byte b[1]{std::byte{1}};
    for (int i = 0; i < rounds; ++i) {
        co_await checked(s, sock.write_all(std::span<const std::byte>(b)));
        (void)co_await checked(s, sock.read_exact(std::span<std::byte>(b)));
    }
    s.finishing = true;
    s.completed.fetch_add(1);
    leave(s);
    co_return s.id;
}

Task<int> ponger(Marker, TaskState& s, Async<net::UnixStream>& sock, int rounds) {
    enter(s);
    s.started.fetch_add(1);
    std::byte b[1];
    for (int i = 0; i < rounds; ++i) {
        (void)co_await checked(s, sock.read_exact(std::span<std::byte>(b)));
        co_await checked(s, sock.write_all(std::span<const std::byte>(b)));
    }
    s.finishing = true;
    s.completed.fetch_add(1);
    leave(s);
    co_return s.id;
}

}  // namespace

TEST_CASE("tasks woken from other threads right after they suspend are never run twice at once", "[executor]") {
    Pool pool;
    Executor ex;
    Runners<Executor> run(ex, 3);
    constexpr int pairs = 40, rounds = 100;
    std::vector<std::pair<Async<net::UnixStream>, Async<net::UnixStream>>> socks;
    for (int i = 0; i < pairs; ++i) socks.push_back(Async<net::UnixStream>::pair());
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < pairs; ++i) {
        TaskState& s1 = pool.add(&run.ids());
        hs.push_back(ex.spawn(pinger(Marker(s1), s1, socks[i].first, rounds)));
        TaskState& s2 = pool.add(&run.ids());
        hs.push_back(ex.spawn(ponger(Marker(s2), s2, socks[i].second, rounds)));
    }
    for (auto& h : hs) (void)block_on(timeout(30s, h));
    hs.clear();
    run.stop();
    INFO(pool.v.first());
    REQUIRE(pool.v.count() == 0);
    for (auto& s : pool.states) {
        CAPTURE(s.id);
        REQUIRE(s.completed == 1);
        REQUIRE(s.destroyed == 0);
    }
}

TEST_CASE("JoinHandles destroyed on another thread while their tasks are being woken never destroy a running frame", "[executor]") {
    Pool pool;
    Executor ex;
    Runners<Executor> run(ex, 3);
    constexpr int pairs = 60, rounds = 1000000;  // they run until cancelled
    std::vector<std::pair<Async<net::UnixStream>, Async<net::UnixStream>>> socks;
    for (int i = 0; i < pairs; ++i) socks.push_back(Async<net::UnixStream>::pair());
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < pairs; ++i) {
        TaskState& s1 = pool.add(&run.ids());
        hs.push_back(ex.spawn(pinger(Marker(s1), s1, socks[i].first, rounds)));
        TaskState& s2 = pool.add(&run.ids());
        hs.push_back(ex.spawn(ponger(Marker(s2), s2, socks[i].second, rounds)));
    }
    std::minstd_rand rng(42);
    std::shuffle(hs.begin(), hs.end(), rng);
    std::this_thread::sleep_for(20ms);
    // Cancel them one by one from this thread (which runs no executor) while they ping-pong.
    for (auto& h : hs) {
        h = {};
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
    }
    REQUIRE(wait_until([&] { return ex.is_empty(); }));
    run.stop();
    INFO(pool.v.first());
    REQUIRE(pool.v.count() == 0);
    for (auto& s : pool.states) {
        CAPTURE(s.id);
        REQUIRE(s.destroyed + s.completed == 1);
        REQUIRE(s.dead);
    }
}

namespace {

Task<int> ticker(Marker, TaskState& s, unsigned seed) {
    enter(s);
    s.started.fetch_add(1);
    std::minstd_rand rng(seed);
    for (int i = 0; i < 20; ++i) co_await checked(s, Timer::after(std::chrono::microseconds(rng() % 50)));
    s.finishing = true;
    s.completed.fetch_add(1);
    leave(s);
    co_return s.id;
}

}  // namespace

TEST_CASE("tasks woken by short timers survive JoinHandles dropped on a thread that runs none of them", "[executor]") {
    // Every wake comes from whichever thread polls the reactor, often while the runner that last
    // ran the task is still finishing that step; meanwhile this thread drops JoinHandles.
    Pool pool;
    Executor ex;
    Runners<Executor> run(ex, 3);
    std::vector<JoinHandle<int>> hs;
    std::minstd_rand rng(7);
    const auto end = Clock::now() + 1s;
    while (Clock::now() < end) {
        for (int i = 0; i < 50; ++i) {
            TaskState& s = pool.add(&run.ids());
            hs.push_back(ex.spawn(ticker(Marker(s), s, static_cast<unsigned>(rng()))));
        }
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
        for (int i = 0; i < 50 && !hs.empty(); ++i) {
            std::swap(hs[rng() % hs.size()], hs.back());
            hs.pop_back();
        }
    }
    hs.clear();
    REQUIRE(wait_until([&] { return ex.is_empty(); }));
    run.stop();
    INFO(pool.v.first());
    REQUIRE(pool.v.count() == 0);
    for (auto& st : pool.states) {
        CAPTURE(st.id);
        REQUIRE(st.completed + st.destroyed == 1);
        REQUIRE(st.dead);
    }
}

// ================================================================================================
// fairness
// ================================================================================================

TEST_CASE("a task that keeps yielding does not starve a timer of another task", "[executor]") {
    std::atomic<bool> stop{false}, fired{false};
    std::atomic<long> spins{0}, fired_after{0};
    SECTION("LocalExecutor") {
        LocalExecutor ex;
        const auto t0 = Clock::now();
        auto spinner = ex.spawn(yield_until(stop, spins));
        auto timer = ex.spawn(fire_at(50ms, fired, fired_after, t0));
        block_on(ex.run(timeout(10s, timer)));
        REQUIRE(fired);
        REQUIRE(fired_after >= 50);
        REQUIRE(fired_after < 50 + 2000);
        REQUIRE(spins > 0);
    }
    SECTION("Executor") {
        Executor ex;
        Runners<Executor> run(ex, 2);
        const auto t0 = Clock::now();
        auto spinner = ex.spawn(yield_until(stop, spins));
        auto timer = ex.spawn(fire_at(50ms, fired, fired_after, t0));
        // Only the executor's threads drive the reactor here: this thread just looks.
        wait_until([&] { return fired.load(); }, 10s);
        REQUIRE(fired);
        REQUIRE(fired_after >= 50);
        REQUIRE(fired_after < 50 + 2000);
        REQUIRE(spins > 0);
        stop = true;
        spinner = {};
        run.stop();
    }
    stop = true;
}

TEST_CASE("a run loop whose tasks answer each other over a local socket does not sleep between messages", "[executor]") {
    // The run loop polls the reactor itself when its queue runs dry (src/executor.cpp,
    // run_loop): the answer of a local peer, already there, reaches its task in that poll, with
    // no blocking round (the run loop's sleep, the wake of the block_on's task). Without the
    // poll every message costs one.
    constexpr int round_trips = 500;
    auto [a, b] = net::UnixStream::pair();
    Async<net::UnixStream> left(std::move(a)), right(std::move(b));
    auto& reactor = detail::Reactor::get();
    std::uint64_t blocking = 0, rounds = 0;
    LocalExecutor ex;
    block_on(ex.run([&]() -> Task<void> {
        auto echo = ex.spawn([](Async<net::UnixStream>& s) -> Task<void> {
            std::byte byte{};
            for (int i = 0; i < round_trips; ++i) {
                co_await s.read_exact({&byte, 1});
                co_await s.write_all({&byte, 1});
            }
        }(right));
        auto ping = ex.spawn([](Async<net::UnixStream>& s) -> Task<void> {
            std::byte byte{1};
            for (int i = 0; i < round_trips; ++i) {
                co_await s.write_all({&byte, 1});
                co_await s.read_exact({&byte, 1});
            }
        }(left));
        const std::uint64_t blocking0 = reactor.blocking_rounds(), rounds0 = reactor.rounds();
        co_await ping;
        co_await echo;
        blocking = reactor.blocking_rounds() - blocking0;
        rounds = reactor.rounds() - rounds0;
    }()));
    INFO("reactor rounds " << rounds << ", of them blocking " << blocking);
    REQUIRE(rounds >= round_trips);  // the messages did go through the reactor
    REQUIRE(blocking < round_trips / 10);
}

TEST_CASE("a run loop whose tasks wait for timers polls the reactor about once per sleep", "[executor]") {
    // Where its poll finds nothing the run loop skips it on its next sleeps (1, 2, 4 ... 64 of
    // them): a poll that always came up empty would double the system calls of a loop that
    // waits for far peers or timers.
    constexpr int sleeps = 200;
    auto& reactor = detail::Reactor::get();
    std::uint64_t blocking = 0, rounds = 0;
    LocalExecutor ex;
    block_on(ex.run([&]() -> Task<void> {
        const std::uint64_t blocking0 = reactor.blocking_rounds(), rounds0 = reactor.rounds();
        co_await ex.spawn([]() -> Task<void> {
            for (int i = 0; i < sleeps; ++i) co_await Timer::after(200us);
        }());
        blocking = reactor.blocking_rounds() - blocking0;
        rounds = reactor.rounds() - rounds0;
    }()));
    INFO("reactor rounds " << rounds << ", of them blocking " << blocking);
    // Each sleep's timer fires in a round of its own. Usually that is a blocking round; on a
    // loaded machine the thread may lose the CPU for longer than the sleep, and then a poll finds
    // the timer due and fires it instead: a poll that replaces a blocking round, not one more.
    // So the bound is on all rounds: fruitless polls are what would push them over.
    REQUIRE(rounds >= sleeps);
    REQUIRE(rounds < sleeps + sleeps / 4);
}

TEST_CASE("run() returns when its awaitable completes even while other tasks keep yielding", "[executor]") {
    std::atomic<bool> stop{false};
    std::atomic<long> spins{0};
    SECTION("LocalExecutor") {
        LocalExecutor ex;
        auto spinner = ex.spawn(yield_until(stop, spins));
        const auto t0 = Clock::now();
        block_on(ex.run(Timer::after(50ms)));
        REQUIRE(since(t0) >= 50ms);
        REQUIRE(since(t0) < 50ms + slack);
    }
    SECTION("Executor, two threads each running it") {
        Executor ex;
        auto spinner = ex.spawn(yield_until(stop, spins));
        const auto t0 = Clock::now();
        std::atomic<long> took2{0};
        std::thread other([&] {
            const auto t1 = Clock::now();
            block_on(ex.run(Timer::after(50ms)));
            took2 = since(t1).count();
        });
        block_on(ex.run(Timer::after(50ms)));
        const auto took = since(t0);
        other.join();
        REQUIRE(took >= 50ms);
        REQUIRE(took < 50ms + slack);
        REQUIRE(took2 >= 50);
        REQUIRE(took2 < 50 + 2000);
        stop = true;
    }
    stop = true;
}

// ================================================================================================
// destroying an executor
// ================================================================================================

TEST_CASE("destroying an executor destroys its tasks and their JoinHandles throw operation_canceled", "[executor]") {
    std::atomic<int> gone{0};
    std::atomic<bool> s1{false}, s2{false}, s3{false};
    auto pr = Async<net::UnixStream>::pair();
    SECTION("LocalExecutor") {
        std::optional<LocalExecutor> ex(std::in_place);
        auto h1 = ex->spawn(forever(Gone(gone), s1));
        auto h2 = ex->spawn(read_forever(Gone(gone), pr.first, s2));
        ex->spawn(forever(Gone(gone), s3)).detach();
        block_on(ex->run(Timer::after(5ms)));
        REQUIRE(s1);
        REQUIRE(s2);
        REQUIRE(s3);
        auto h4 = ex->spawn(forever(Gone(gone), s1));  // never started
        // A thread waits on h1 meanwhile.
        std::atomic<bool> joined_cancelled{false};
        std::thread joiner([&] {
            try {
                block_on(h1);
            } catch (const std::system_error& e) {
                joined_cancelled = e.code() == std::errc::operation_canceled;
            }
        });
        std::this_thread::sleep_for(20ms);
        ex.reset();
        REQUIRE(gone == 4);
        joiner.join();
        REQUIRE(joined_cancelled);
        REQUIRE_THROWS_ERRC(block_on(h2), std::errc::operation_canceled);
        REQUIRE_THROWS_ERRC(block_on(h4), std::errc::operation_canceled);
    }
    SECTION("Executor") {
        std::optional<Executor> ex(std::in_place);
        std::optional<Runners<Executor>> run(std::in_place, *ex, 2);
        auto h1 = ex->spawn(forever(Gone(gone), s1));
        auto h2 = ex->spawn(read_forever(Gone(gone), pr.first, s2));
        ex->spawn(forever(Gone(gone), s3)).detach();
        REQUIRE(wait_until([&] { return s1 && s2 && s3; }));
        run.reset();  // destroy it when no thread runs it
        auto h4 = ex->spawn(forever(Gone(gone), s1));
        ex.reset();
        REQUIRE(gone == 4);
        REQUIRE_THROWS_ERRC(block_on(h1), std::errc::operation_canceled);
        REQUIRE_THROWS_ERRC(block_on(std::move(h2)), std::errc::operation_canceled);
        h4 = {};  // dropping one after its executor is gone is fine too
    }
}

TEST_CASE("a JoinHandle of a task that completed stays usable after its executor is destroyed", "[executor]") {
    std::optional<LocalExecutor> ex(std::in_place);
    auto h = ex->spawn(value_now(42));
    auto h2 = ex->spawn(value_now(43));
    block_on(ex->run(Timer::after(5ms)));  // both complete; their results wait in their handles
    REQUIRE(ex->is_empty());
    ex.reset();
    REQUIRE(block_on(h) == 42);
    h2 = {};  // dropping the other one
}

namespace {

Task<int> waits_for(Gone, JoinHandle<int> other, std::atomic<bool>& started) {
    started = true;
    co_return co_await other;
}

}  // namespace

TEST_CASE("destroying an executor whose tasks await each other's JoinHandles", "[executor]") {
    std::atomic<int> gone{0};
    std::atomic<bool> s1{false}, s2{false}, s3{false};
    std::optional<LocalExecutor> ex(std::in_place);
    auto inner = ex->spawn(sleeper(Gone(gone), s1, 1h, s1));
    auto middle = ex->spawn(waits_for(Gone(gone), std::move(inner), s2));
    auto outer = ex->spawn(waits_for(Gone(gone), std::move(middle), s3));
    block_on(ex->run(Timer::after(5ms)));
    REQUIRE(s1);
    REQUIRE(s2);
    REQUIRE(s3);
    ex.reset();
    REQUIRE(gone == 3);
    REQUIRE_THROWS_ERRC(block_on(outer), std::errc::operation_canceled);
}

namespace {

Task<int> drops_own_handle(Gone, std::optional<JoinHandle<int>>& own, const std::atomic<bool>& installed,
                           std::atomic<int>& steps) {
    while (!installed.load()) co_await Timer::after(1ms);
    steps = 1;
    own.reset();  // cancels this very task: it goes on until it next suspends
    steps = 2;
    co_await Timer::after(1ms);
    steps = 3;  // never
    co_return 0;
}

}  // namespace

TEST_CASE("a task that destroys its own JoinHandle is cancelled at its next suspension", "[executor]") {
    std::atomic<int> gone{0}, steps{0};
    std::atomic<bool> installed{false};
    std::optional<JoinHandle<int>> own;
    SECTION("LocalExecutor") {
        LocalExecutor ex;
        own.emplace(ex.spawn(drops_own_handle(Gone(gone), own, installed, steps)));
        installed = true;
        block_on(ex.run(Timer::after(20ms)));
        REQUIRE(steps == 2);
        REQUIRE(gone == 1);
        REQUIRE(ex.is_empty());
    }
    SECTION("Executor") {
        Executor ex;
        Runners<Executor> run(ex, 2);
        own.emplace(ex.spawn(drops_own_handle(Gone(gone), own, installed, steps)));
        installed = true;
        REQUIRE(wait_until([&] { return gone.load() == 1; }));
        std::this_thread::sleep_for(10ms);
        REQUIRE(steps == 2);
        REQUIRE(ex.is_empty());
        run.stop();
    }
}

// ================================================================================================
// is_empty and run
// ================================================================================================

TEST_CASE("is_empty tells whether the executor holds live tasks", "[executor]") {
    std::atomic<int> gone{0};
    std::atomic<bool> started{false}, fired{false};
    LocalExecutor ex;
    REQUIRE(ex.is_empty());
    auto h = ex.spawn(value_after(5ms, 1));
    REQUIRE_FALSE(ex.is_empty());
    block_on(ex.run(Timer::after(30ms)));
    REQUIRE(ex.is_empty());  // completed, its result not yet taken
    REQUIRE(block_on(ex.run(h)) == 1);
    REQUIRE(ex.is_empty());
    auto h2 = ex.spawn(sleeper(Gone(gone), started, 1h, fired));
    block_on(ex.run(Timer::after(5ms)));
    REQUIRE_FALSE(ex.is_empty());
    h2 = {};
    REQUIRE(ex.is_empty());
    ex.spawn(sleeper(Gone(gone), started, 1h, fired)).detach();
    REQUIRE_FALSE(ex.is_empty());
}

TEST_CASE("run returns its awaitable's result and rethrows its exception", "[executor]") {
    LocalExecutor ex;
    REQUIRE(block_on(ex.run(value_after(1ms, 5))) == 5);
    REQUIRE(block_on(ex.run(value_now(6))) == 6);
    const auto t0 = Clock::now();
    REQUIRE(block_on(ex.run(Timer::after(10ms))) >= t0 + 10ms);
    block_on(ex.run(nothing_after(1ms)));
    int x = 0;
    REQUIRE(&block_on(ex.run(ref_now(x))) == &x);
    REQUIRE_THROWS_WITH(block_on(ex.run(throw_after(1ms, "oops"))), "oops");
    REQUIRE_THROWS_ERRC(block_on(ex.run(timeout(5ms, Timer::never()))), std::errc::timed_out);
    Executor ex2;
    REQUIRE(block_on(ex2.run(value_after(1ms, 7))) == 7);
    REQUIRE_THROWS_WITH(block_on(ex2.run(throw_after(1ms, "oops2"))), "oops2");
}

TEST_CASE("run leaves the tasks still pending in the executor for a later run", "[executor]") {
    std::atomic<bool> done{false};
    std::atomic<int> gone{0};
    LocalExecutor ex;
    auto h = ex.spawn(set_after(Gone(gone), 30ms, done));
    block_on(ex.run(Timer::after(1ms)));
    REQUIRE_FALSE(ex.is_empty());
    REQUIRE_FALSE(done);
    block_on(ex.run(h));
    REQUIRE(done);
}

namespace {

Task<int> race_then_join(JoinHandle<int>& h) {
    auto r = co_await race(h, Timer::after(5ms));  // the timer wins: this wait on h is dropped
    if (r.index() != 1) co_return -1;
    co_return co_await h;  // the task ran on meanwhile
}

Task<int> join_other(JoinHandle<int> h) { co_return co_await std::move(h); }

}  // namespace

TEST_CASE("a wait on a JoinHandle that is cancelled leaves the task running", "[executor]") {
    LocalExecutor ex;
    auto h = ex.spawn(value_after(30ms, 9));
    REQUIRE(block_on(ex.run(race_then_join(h))) == 9);
}

TEST_CASE("a task may await a JoinHandle of a task on another executor", "[executor]") {
    Executor a;
    Runners<Executor> run(a, 2);
    LocalExecutor b;
    auto ha = a.spawn(value_after(10ms, 3));
    auto hb = b.spawn(join_other(std::move(ha)));
    REQUIRE(block_on(b.run(hb)) == 3);
    run.stop();
}

// ================================================================================================
// The run queue (a ring that a LocalExecutor's run loop takes several tasks from at once)
// ================================================================================================

namespace {

Task<void> log_steps(std::vector<int>& log, int id, bool yields) {
    log.push_back(id);
    if (yields) {
        co_await yield_now();
        log.push_back(1000 + id);
    }
}

Task<void> sleep_long() { co_await Timer::after(1h); }

Task<void> when_all_handles(std::vector<JoinHandle<void>>& handles) {
    for (auto& h : handles) co_await h;
}

}  // namespace

TEST_CASE("queued tasks run in FIFO order across batches, with re-queued and cancelled ones", "[executor]") {
    for (const bool local : {true, false}) {
        INFO((local ? "LocalExecutor" : "Executor"));
        std::vector<int> log;
        std::vector<int> expected;
        std::vector<int> yielded;
        auto body = [&](auto& ex) {
            std::vector<JoinHandle<void>> handles;
            for (int i = 0; i < 300; ++i) {
                const bool yields = i % 3 == 0;
                handles.push_back(ex.spawn(log_steps(log, i, yields)));
                if (i % 7 == 3) {
                    handles.pop_back();  // cancelled while queued, before its first step
                    continue;
                }
                expected.push_back(i);
                if (yields) yielded.push_back(1000 + i);
            }
            // try_tick runs exactly one step, whatever the batching.
            REQUIRE(ex.try_tick());
            REQUIRE(log == std::vector<int>{0});
            block_on(ex.run(when_all_handles(handles)));
        };
        if (local) {
            LocalExecutor ex;
            body(ex);
        } else {
            Executor ex;
            body(ex);
        }
        expected.insert(expected.end(), yielded.begin(), yielded.end());  // re-queued at the back
        CHECK(log == expected);
    }
}

TEST_CASE("cancelling idle tasks and spawning more keeps every queued task", "[executor]") {
    LocalExecutor ex;
    std::vector<JoinHandle<void>> sleepers;
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 500; ++i) sleepers.push_back(ex.spawn(sleep_long()));
        block_on(ex.run(Timer::after(1ms)));  // all of them ran their first step and sleep
        // Cancel four of five while idle: each gives up the queue's reference it kept.
        std::vector<JoinHandle<void>> kept;
        for (std::size_t i = 0; i < sleepers.size(); ++i)
            if (i % 5 == 0) kept.push_back(std::move(sleepers[i]));
        sleepers = std::move(kept);
    }
    // Many runnable at once (more than the ring held so far), all of them must run.
    std::vector<int> log;
    std::vector<JoinHandle<void>> runners;
    for (int i = 0; i < 5000; ++i) runners.push_back(ex.spawn(log_steps(log, i, false)));
    block_on(ex.run(when_all_handles(runners)));
    REQUIRE(log.size() == 5000);
    CHECK(std::is_sorted(log.begin(), log.end()));
    CHECK_FALSE(ex.is_empty());  // the kept sleepers
}
