// The cancellation storm (DESIGN.md semantics 3 and 4): thousands of tasks suspended on timers,
// on socket readiness, inside race/when_all/timeout of both, or on another task's JoinHandle,
// while a "waker" thread makes sockets ready at random moments and JoinHandles are destroyed at
// random moments from the spawning thread, from the waker thread and from the executor's own
// threads. Every task records its life in a TaskState outside its frame:
//  - every stretch of its code between two co_awaits runs inside enter()/leave(), which catch a
//    second thread entering, a thread that does not run its executor, and a frame resumed after
//    it was destroyed;
//  - a RAII marker (a by-value parameter, so it lives in the frame from its creation) records the
//    frame's destruction, catches a frame destroyed while a thread runs it or destroyed twice,
//    and counts live frames.
// At the end every task has completed exactly once or been destroyed exactly once, never both,
// and no frame is alive.
//
// Scale: ASYNC_IO_STORM_SCALE multiplies the number of tasks (default 1: four rounds of 4000
// tasks on an Executor run by 3 threads, two rounds of 2000 on a LocalExecutor run by one).
// The long mode, `test_executor_storm "[long]"` (not run by ctest), repeats Executor rounds on
// four or more threads until ASYNC_IO_STORM_CANCELLATIONS (default a million) were cancelled.
// ASYNC_IO_STORM_SEED fixes the seed of the first round (round k uses seed + k); otherwise a
// random one is used. The seed is printed either way. ASYNC_IO_STORM_THREADS overrides the number
// of threads running the Executor; ASYNC_IO_STORM_WATCHDOG the seconds after which a run that
// makes no progress is aborted with a report.
#include "catch.hpp"
#include "support.hpp"
#include "task_checks.hpp"

#include <async_io/async.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

using namespace async_io;
using namespace async_io::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using us = std::chrono::microseconds;

namespace {

// ---- configuration ------------------------------------------------------------------------------

std::size_t storm_scale() {
    if (const char* s = std::getenv("ASYNC_IO_STORM_SCALE")) {
        const long v = std::strtol(s, nullptr, 10);
        if (v > 0) return static_cast<std::size_t>(v);
    }
    return 1;
}

std::uint64_t storm_seed() {
    if (const char* s = std::getenv("ASYNC_IO_STORM_SEED")) return std::strtoull(s, nullptr, 0);
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

// How long a run may take before the watchdog aborts it (ASYNC_IO_STORM_WATCHDOG seconds;
// a normal CI-size run takes about a second plain and a few under TSan).
std::chrono::seconds watchdog_limit() {
    if (const char* s = std::getenv("ASYNC_IO_STORM_WATCHDOG")) return std::chrono::seconds(std::max(1, std::atoi(s)));
    return std::chrono::seconds(90);
}

using Rng = std::mt19937_64;

// ---- invariant bookkeeping: TaskState, enter/leave, Marker, checked (tests/task_checks.hpp) --------

// A little work inside a stretch, now and then giving the CPU away, to widen the windows in
// which another thread could wrongly enter.
using TaskRng = std::minstd_rand;

void busy(TaskRng& rng) {
    const auto r = rng() % 64;
    if (r == 0) {
        std::this_thread::yield();
    } else {
        static std::atomic<unsigned> sink{0};
        for (unsigned i = 0; i < r; ++i) sink.fetch_add(1, std::memory_order_relaxed);
    }
}

// ---- what the tasks do ----------------------------------------------------------------------------

enum class Kind { timer, ticker, read, readable, race_mix, when_all_mix, nested, timeout_read, join_child, hold, forever };
constexpr Kind simple_kinds[] = {Kind::timer,    Kind::ticker, Kind::read,   Kind::readable,
                                 Kind::race_mix, Kind::when_all_mix, Kind::nested, Kind::timeout_read};

// What becomes of a root task's JoinHandle.
enum class Fate {
    await_end,      // awaited by the main thread at the end (must complete)
    cancel_random,  // destroyed at a random moment, by the main thread or the waker thread
    detach_random,  // detached at a random moment
    destroy_end,    // destroyed at the end
    held,           // handed to a "hold" task, which awaits or drops it
    outlive,        // kept past the executor's destruction: its co_await throws operation_canceled
};

template <class Ex>
struct Storm;

template <class Ex>
Task<int> storm_task(Marker, Storm<Ex>* st, TaskState& s, Kind kind, bool throws, std::uint64_t seed,
                     JoinHandle<int> victim);

template <class Ex>
struct Storm {
    Violations v{"storm", 5};
    std::size_t roots = 0;
    std::unique_ptr<TaskState[]> states;  // roots first, then one child slot per root
    std::vector<Fate> fates;              // the main thread's
    Ex* ex = nullptr;
    std::vector<std::thread::id> runners;
    // Sockets: tasks read from `readers`; the waker thread writes to `writers`. Nobody ever
    // writes to `silent_writer`.
    std::vector<Async<net::UnixStream>> readers;
    std::vector<net::UnixStream> writers;
    std::optional<Async<net::UnixStream>> silent_reader;
    std::optional<net::UnixStream> silent_writer;

    Storm(std::size_t n, std::size_t socket_pairs) : roots(n), states(new TaskState[2 * n]) {
        for (std::size_t i = 0; i < 2 * n; ++i) {
            states[i].v = &v;
            states[i].runners = &runners;
            states[i].id = static_cast<int>(i);
        }
        fates.resize(n, Fate::destroy_end);
        readers.reserve(socket_pairs);
        for (std::size_t i = 0; i < socket_pairs; ++i) {
            auto [a, b] = net::UnixStream::pair();
            b.set_nonblocking(true);
            readers.emplace_back(std::move(a));
            writers.push_back(std::move(b));
        }
        auto [a, b] = net::UnixStream::pair();
        silent_reader.emplace(std::move(a));
        silent_writer.emplace(std::move(b));
    }

    Async<net::UnixStream>& reader(TaskRng& rng) { return readers[rng() % readers.size()]; }
    Kind kind(std::size_t id) const { return static_cast<Kind>(states[id].kind.load()); }
    bool throws(std::size_t id) const { return states[id].throws.load(); }

    JoinHandle<int> spawn(std::size_t id, Kind kind, bool throws_at_end, std::uint64_t seed, JoinHandle<int> victim = {}) {
        TaskState& s = states[id];
        s.kind = static_cast<int>(kind);
        s.throws = throws_at_end;
        return ex->spawn(storm_task<Ex>(Marker(s), this, s, kind, throws_at_end, seed, std::move(victim)));
    }
};

// Reads one byte (a readiness wait on a socket many tasks share).
Task<std::size_t> read_one(TaskState& s, Async<net::UnixStream>& sock) {
    enter(s);
    std::byte b[1];
    const std::size_t n = co_await checked(s, sock.read(std::span<std::byte>(b)));
    leave(s);
    co_return n;
}

Task<void> nap(TaskState& s, us d) {
    enter(s);
    co_await checked(s, Timer::after(d));
    leave(s);
}

Task<void> yields(TaskState& s, int n) {
    enter(s);
    for (int i = 0; i < n; ++i) co_await checked(s, yield_now());
    leave(s);
}

us short_time(TaskRng& rng) { return us(rng() % 3000); }

void expect_timed_out(TaskState& s, const std::system_error& e) {
    if (e.code() != std::errc::timed_out) s.v->add(s.name() + ": unexpected error " + e.what());
}

// Checks what a JoinHandle of task `id` yielded.
template <class Ex>
void check_joined(Storm<Ex>& st, TaskState& s, std::size_t id, const std::function<int()>& join) {
    try {
        const int r = join();
        if (st.throws(id)) s.v->add(s.name() + ": a throwing task yielded a value");
        if (r != static_cast<int>(id)) s.v->add(s.name() + ": a JoinHandle yielded the wrong value");
    } catch (const std::runtime_error& e) {
        if (!st.throws(id) || e.what() != st.states[id].name())
            s.v->add(s.name() + ": unexpected exception from a join: " + e.what());
    }
}

template <class Ex>
Task<int> storm_task(Marker, Storm<Ex>* st, TaskState& s, Kind kind, bool throws, std::uint64_t seed,
                     JoinHandle<int> victim) {
    enter(s);
    s.started.fetch_add(1);
    TaskRng rng(static_cast<TaskRng::result_type>(seed % 2147483646u + 1u));
    busy(rng);
    const bool simple = kind != Kind::join_child && kind != Kind::hold && kind != Kind::forever;
    const int rounds = simple ? 1 + static_cast<int>(rng() % 4) : 1;
    for (int round = 0; round < rounds; ++round) switch (kind) {
        case Kind::timer: {
            const int n = 1 + static_cast<int>(rng() % 3);
            for (int i = 0; i < n; ++i) {
                co_await checked(s, Timer::after(short_time(rng)));
                busy(rng);
            }
            break;
        }
        case Kind::ticker: {
            // Many short waits: each wake comes from another thread soon after the suspension.
            const int n = 2 + static_cast<int>(rng() % 12);
            for (int i = 0; i < n; ++i) co_await checked(s, Timer::after(us(rng() % 50)));
            break;
        }
        case Kind::read:
            (void)co_await checked(s, read_one(s, st->reader(rng)));
            break;
        case Kind::readable:
            co_await checked(s, st->reader(rng).readable());
            break;
        case Kind::race_mix:
            (void)co_await checked(s, race(read_one(s, st->reader(rng)), nap(s, short_time(rng)), yields(s, 2)));
            break;
        case Kind::when_all_mix:
            (void)co_await checked(s, when_all(read_one(s, st->reader(rng)), nap(s, short_time(rng)), yields(s, 1)));
            break;
        case Kind::nested:
            try {
                (void)co_await checked(
                    s, timeout(short_time(rng), race(when_all(nap(s, short_time(rng)), nap(s, short_time(rng))),
                                                     read_one(s, st->reader(rng)))));
            } catch (const std::system_error& e) {
                expect_timed_out(s, e);
            }
            break;
        case Kind::timeout_read:
            try {
                (void)co_await checked(s, timeout(short_time(rng), read_one(s, st->reader(rng))));
            } catch (const std::system_error& e) {
                expect_timed_out(s, e);
            }
            break;
        case Kind::join_child: {
            // Spawned from this executor's thread; its state is this task's child slot.
            const std::size_t cid = static_cast<std::size_t>(s.id) + st->roots;
            const Kind ck = simple_kinds[rng() % std::size(simple_kinds)];
            auto h = st->spawn(cid, ck, rng() % 8 == 0, rng());
            busy(rng);
            if (rng() % 3 != 0) {
                bool threw = false;
                int r = -1;
                std::string what;
                try {
                    r = co_await checked(s, h);
                } catch (const std::runtime_error& e) {
                    threw = true;
                    what = e.what();
                }
                if (threw != st->throws(cid) || (!threw && r != static_cast<int>(cid)) ||
                    (threw && what != st->states[cid].name()))
                    s.v->add(s.name() + ": its child's JoinHandle yielded the wrong outcome");
            } else {
                try {
                    (void)co_await checked(s, race(std::move(h), nap(s, short_time(rng))));
                } catch (const std::runtime_error&) {
                }
            }
            break;
        }
        case Kind::hold: {
            co_await checked(s, Timer::after(short_time(rng)));
            if (rng() % 2 == 0) {
                try {
                    (void)co_await checked(s, race(victim, nap(s, short_time(rng))));
                } catch (const std::runtime_error&) {
                }
            }
            victim = {};  // cancels it from this executor's thread, if it still runs
            busy(rng);
            break;
        }
        case Kind::forever:
            if (rng() % 2 == 0) {
                co_await checked(s, Timer::never());
            } else {
                (void)co_await checked(s, race(Timer::never(), read_one(s, *st->silent_reader)));
            }
            s.v->add(s.name() + " finished waiting forever");
            break;
    }
    busy(rng);
    s.finishing = true;
    s.completed.fetch_add(1);
    leave(s);
    if (throws) throw std::runtime_error(s.name());
    co_return s.id;
}

// ---- the run loops, the waker and the cancellers --------------------------------------------------

Task<void> until(const std::atomic<bool>& stop) {
    while (!stop.load()) co_await Timer::after(1ms);
}

struct Action {
    Clock::time_point when;
    std::size_t id;
    bool detach;
    bool operator>(const Action& o) const { return when > o.when; }
};

template <class Ex>
class Harness {
public:
    explicit Harness(std::size_t n) : handles_(n) {}

    void put(std::size_t id, JoinHandle<int> h) {
        std::lock_guard g(hm_);
        handles_[id] = std::move(h);
    }
    JoinHandle<int> take(std::size_t id) {
        std::lock_guard g(hm_);
        return std::move(handles_[id]);
    }
    void schedule(Action a) {
        std::lock_guard g(am_);
        actions_.push(a);
    }
    // Runs the actions that are due (at most `max`); returns how many remain.
    std::size_t run_due(std::size_t max) {
        for (std::size_t i = 0; i < max; ++i) {
            Action a;
            {
                std::lock_guard g(am_);
                if (actions_.empty() || actions_.top().when > Clock::now()) return actions_.size();
                a = actions_.top();
                actions_.pop();
            }
            JoinHandle<int> h = take(a.id);
            if (a.detach) {
                h.detach();
            } else {
                h = {};  // cancels it, from this thread
            }
        }
        std::lock_guard g(am_);
        return actions_.size();
    }
    std::size_t pending_actions() {
        std::lock_guard g(am_);
        return actions_.size();
    }

private:
    std::mutex hm_;
    std::vector<JoinHandle<int>> handles_;
    std::mutex am_;
    std::priority_queue<Action, std::vector<Action>, std::greater<Action>> actions_;
};

template <class Ex>
std::size_t run_storm(const char* label, int runner_threads, std::size_t base_tasks, std::uint64_t seed) {
    constexpr bool local = std::is_same_v<Ex, LocalExecutor>;
    if (const char* t = std::getenv("ASYNC_IO_STORM_THREADS"); t && !local) runner_threads = std::max(1, std::atoi(t));
    const std::size_t n = base_tasks * storm_scale();
    std::printf("storm %s: %zu tasks, %d runner thread(s), seed %llu (ASYNC_IO_STORM_SEED=%llu to repeat)\n", label,
                n, runner_threads, static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    std::fflush(stdout);
    const auto t_start = Clock::now();
    Rng rng(seed);
    live_frames = 0;

    Storm<Ex> st(n, 48);
    std::optional<Ex> ex(std::in_place);
    st.ex = &*ex;
    Harness<Ex> hx(n);

    // The executor's threads. For a LocalExecutor, its one thread also destroys it at the end.
    std::atomic<bool> stop_run{false}, destroy_now{false};
    std::mutex rm;
    std::string runner_error;
    std::vector<std::thread> runners;
    {
        std::latch ready(runner_threads);
        for (int i = 0; i < runner_threads; ++i) {
            runners.emplace_back([&] {
                {
                    std::lock_guard g(rm);
                    st.runners.push_back(std::this_thread::get_id());
                }
                ready.count_down();
                try {
                    block_on(ex->run(until(stop_run)));
                } catch (const std::exception& e) {
                    std::lock_guard g(rm);
                    runner_error = e.what();
                }
                if (local) {
                    while (!destroy_now.load()) std::this_thread::sleep_for(1ms);
                    ex.reset();
                }
            });
        }
        ready.wait();
    }

    // A watchdog: a run that hangs (a lost wake, a corrupted frame) fails with a report instead
    // of running into the test driver's timeout.
    std::atomic<bool> finished{false};
    std::thread watchdog([&] {
        const auto limit = Clock::now() + watchdog_limit();
        while (!finished.load()) {
            if (Clock::now() > limit) {
                std::fprintf(stderr, "storm %s (seed %llu): no progress after %lld s; %d violation(s): %s\n", label,
                             static_cast<unsigned long long>(seed),
                             static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(watchdog_limit()).count()),
                             st.v.count(), st.v.first().c_str());
                int shown = 0;
                for (std::size_t i = 0; i < 2 * n && shown < 10; ++i) {
                    const TaskState& s = st.states[i];
                    if (s.created && s.completed + s.destroyed == 0 && st.kind(i) != Kind::forever) {
                        std::fprintf(stderr, "  unresolved task %zu: kind %d, started %d, running %d\n", i,
                                     s.kind.load(), s.started.load(), static_cast<int>(s.running.load()));
                        ++shown;
                    }
                }
                std::fflush(stderr);
                std::abort();
            }
            std::this_thread::sleep_for(10ms);
        }
    });

    // The waker: makes sockets readable at random moments, and cancels too.
    std::atomic<bool> stop_waker{false}, flood{false};
    std::thread waker([&, wseed = rng()] {
        Rng wr(wseed);
        const std::byte byte[1]{std::byte{7}};
        while (!stop_waker.load()) {
            const int writes = flood.load() ? static_cast<int>(st.writers.size()) : 1 + static_cast<int>(wr() % 3);
            for (int i = 0; i < writes; ++i) {
                auto& w = flood.load() ? st.writers[static_cast<std::size_t>(i)] : st.writers[wr() % st.writers.size()];
                try {
                    (void)w.write(std::span<const std::byte>(byte));
                } catch (const std::system_error&) {
                    // full: nobody reads this one for now
                }
            }
            hx.run_due(1 + wr() % 4);
            if (wr() % 4 == 0) {
                std::this_thread::yield();
            } else {
                std::this_thread::sleep_for(us(wr() % 300));
            }
        }
    });

    // Spawn in waves, cancelling meanwhile.
    constexpr std::size_t waves = 40;
    std::vector<std::size_t> await_end, destroy_end, outlive;
    std::size_t id = 0;
    for (std::size_t w = 0; w < waves; ++w) {
        const std::size_t wave_end = (w + 1 == waves) ? n : (w + 1) * n / waves;
        for (; id < wave_end; ++id) {
            const auto pick = rng() % 100;
            Fate fate = pick < 30   ? Fate::await_end
                        : pick < 58 ? Fate::cancel_random
                        : pick < 70 ? Fate::detach_random
                        : pick < 80 ? Fate::destroy_end
                        : pick < 95 ? Fate::held
                                    : Fate::outlive;
            if (fate == Fate::held && id + 1 >= wave_end) fate = Fate::destroy_end;
            auto any_kind = [&] {
                const auto k = rng() % 10;
                if (k == 0) return Kind::forever;
                if (k == 1) return Kind::join_child;
                return simple_kinds[rng() % std::size(simple_kinds)];
            };
            auto finite_kind = [&] {
                return rng() % 6 == 0 ? Kind::join_child : simple_kinds[rng() % std::size(simple_kinds)];
            };
            const auto now = Clock::now();
            st.fates[id] = fate;
            switch (fate) {
                case Fate::await_end: {
                    const Kind k = finite_kind();
                    hx.put(id, st.spawn(id, k, rng() % 10 == 0, rng()));
                    await_end.push_back(id);
                    break;
                }
                case Fate::cancel_random:
                case Fate::detach_random: {
                    const Kind k = any_kind();
                    hx.put(id, st.spawn(id, k, k != Kind::forever && rng() % 10 == 0, rng()));
                    hx.schedule({now + us(rng() % 10000), id, fate == Fate::detach_random});
                    break;
                }
                case Fate::destroy_end: {
                    const Kind k = any_kind();
                    hx.put(id, st.spawn(id, k, k != Kind::forever && rng() % 10 == 0, rng()));
                    destroy_end.push_back(id);
                    break;
                }
                case Fate::outlive:
                    hx.put(id, st.spawn(id, Kind::forever, false, rng()));
                    outlive.push_back(id);
                    break;
                case Fate::held: {
                    // This one is the victim; the next one holds its handle and has a fate of its own.
                    const Kind vk = any_kind();
                    auto vh = st.spawn(id, vk, vk != Kind::forever && rng() % 10 == 0, rng());
                    const std::size_t holder = ++id;
                    const auto hp = rng() % 4;
                    const Fate hf = hp == 0 ? Fate::await_end
                                    : hp == 1 ? Fate::cancel_random
                                    : hp == 2 ? Fate::detach_random
                                              : Fate::destroy_end;
                    st.fates[holder] = hf;
                    hx.put(holder, st.spawn(holder, Kind::hold, rng() % 10 == 0, rng(), std::move(vh)));
                    if (hf == Fate::await_end) await_end.push_back(holder);
                    if (hf == Fate::destroy_end) destroy_end.push_back(holder);
                    if (hf == Fate::cancel_random || hf == Fate::detach_random)
                        hx.schedule({now + us(rng() % 10000), holder, hf == Fate::detach_random});
                    break;
                }
            }
        }
        // Let them run and cancel some for a few milliseconds.
        const auto until_t = Clock::now() + 5ms;
        while (Clock::now() < until_t) {
            hx.run_due(8);
            std::this_thread::sleep_for(us(rng() % 200));
        }
    }
    // The remaining scheduled cancellations.
    while (hx.run_due(16) != 0) std::this_thread::sleep_for(100us);

    // The end: join the ones to be awaited (the waker keeps every socket busy), drop the others.
    flood = true;
    const auto join_deadline = Clock::now() + 30s;
    for (std::size_t i : await_end) {
        JoinHandle<int> h = hx.take(i);
        TaskState& s = st.states[i];
        try {
            const auto left = std::max<Clock::duration>(join_deadline - Clock::now(), 1ms);
            check_joined(st, s, i, [&] { return block_on(timeout(left, h)); });
        } catch (const std::system_error& e) {
            st.v.add(s.name() + ": awaiting it at the end failed: " + e.what());
        }
    }
    for (std::size_t i : destroy_end) {
        JoinHandle<int> h = hx.take(i);
        h = {};
    }

    // Wait for the detached ones that can finish.
    auto unresolved = [&] {
        std::size_t left = 0;
        for (std::size_t i = 0; i < 2 * n; ++i) {
            const TaskState& s = st.states[i];
            if (!s.created) continue;
            if (st.kind(i) == Kind::forever) continue;  // they end with the executor
            if (s.completed + s.destroyed == 0) ++left;
        }
        return left;
    };
    const auto wait_end = Clock::now() + 20s;
    while (unresolved() != 0 && Clock::now() < wait_end) std::this_thread::sleep_for(1ms);
    const std::size_t stuck = unresolved();

    stop_waker = true;
    waker.join();
    stop_run = true;
    if (local) {
        destroy_now = true;
        for (auto& t : runners) t.join();
    } else {
        for (auto& t : runners) t.join();
        ex.reset();  // destroys the tasks still held: those that wait forever
    }
    const long live_after = live_frames.load();
    finished = true;
    watchdog.join();

    // The outliving handles: their task was destroyed with the executor.
    std::size_t outlive_ok = 0;
    for (std::size_t i : outlive) {
        JoinHandle<int> h = hx.take(i);
        try {
            (void)block_on(h);
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::operation_canceled) ++outlive_ok;
        }
    }

    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t_start);
    std::size_t created = 0, completed = 0, destroyed = 0;
    for (std::size_t i = 0; i < 2 * n; ++i) {
        const TaskState& s = st.states[i];
        if (!s.created) continue;
        ++created;
        completed += static_cast<std::size_t>(s.completed.load());
        destroyed += static_cast<std::size_t>(s.destroyed.load());
    }
    std::printf("storm %s: %zu tasks created, %zu completed, %zu destroyed, in %lld ms\n", label, created, completed,
                destroyed, static_cast<long long>(took.count()));
    std::fflush(stdout);

    CAPTURE(seed);
    REQUIRE(runner_error.empty());
    INFO(st.v.first());
    REQUIRE(st.v.count() == 0);
    REQUIRE(stuck == 0);
    REQUIRE(live_after == 0);
    REQUIRE(outlive_ok == outlive.size());
    for (std::size_t i = 0; i < 2 * n; ++i) {
        const TaskState& s = st.states[i];
        if (!s.created) continue;
        CAPTURE(i);
        REQUIRE(s.completed + s.destroyed == 1);
        REQUIRE(s.started <= 1);
        REQUIRE(s.dead);
        REQUIRE_FALSE(s.running);
        if (s.completed == 1) REQUIRE(s.started == 1);
        if (i < n && st.fates[i] == Fate::await_end) REQUIRE(s.completed == 1);
        if (i < n && st.fates[i] == Fate::outlive) REQUIRE(s.destroyed == 1);
    }
    REQUIRE(created >= n);
    return destroyed;
}

}  // namespace

// Several rounds (each a fresh executor and seed) make a CI run about a second or two plain.
TEST_CASE("cancellation storm on an Executor run by three threads", "[storm]") {
    const std::uint64_t seed = storm_seed();
    for (std::uint64_t round = 0; round < 4; ++round) run_storm<Executor>("Executor", 3, 4000, seed + round);
}

TEST_CASE("cancellation storm on a LocalExecutor", "[storm]") {
    const std::uint64_t seed = storm_seed();
    for (std::uint64_t round = 0; round < 2; ++round) run_storm<LocalExecutor>("LocalExecutor", 1, 2000, seed + round);
}

// The long mode (not run by ctest): rounds on an Executor run by at least four threads until at
// least ASYNC_IO_STORM_CANCELLATIONS (default 1,000,000) tasks were cancelled mid-flight.
//   ASYNC_IO_STORM_SCALE=8 tests/test_executor_storm "[long]"
TEST_CASE("cancellation storm, long mode: a million cancellations on four or more threads", "[.][storm][long]") {
    std::size_t target = 1'000'000;
    if (const char* c = std::getenv("ASYNC_IO_STORM_CANCELLATIONS")) target = std::strtoull(c, nullptr, 10);
    int threads = 4;
    if (const char* t = std::getenv("ASYNC_IO_STORM_THREADS")) threads = std::max(4, std::atoi(t));
    const std::uint64_t seed = storm_seed();
    const auto start = Clock::now();
    std::size_t cancelled = 0, rounds = 0;
    while (cancelled < target) cancelled += run_storm<Executor>("Executor (long)", threads, 4000, seed + rounds++);
    std::printf("storm long: %zu cancellations in %zu rounds on %d threads, %lld s\n", cancelled, rounds, threads,
                static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count()));
    REQUIRE(cancelled >= target);
}
