// Micro-benchmarks for what the peer workloads (async_io_bench.cpp) lump together: the cost of
// arming and cancelling a timer with none and with a million others armed (as async-io's
// benches/timer.rs), spawning tasks, and a wake that crosses threads. Written with the public API
// only, as a user would.
//
//   micro [NAME...]        runs the named benchmarks (all by default); one line each:
//   name=timer_arm_cancel/0 ops=200000 ns_per_op=123.4
//
// Timings on a shared VM are noisy: compare runs made side by side. For stable figures count
// instructions instead: valgrind --tool=callgrind --toggle-collect='*measure*' micro NAME
// (README "Performance" explains both).
#include <async_io/async.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct Bench {
    const char* name;
    std::function<void()> run;
};

void report(const char* name, std::uint64_t ops, clock_type::duration d) {
    const double ns = std::chrono::duration<double, std::nano>(d).count() / static_cast<double>(ops);
    std::printf("name=%s ops=%llu ns_per_op=%.1f\n", name, static_cast<unsigned long long>(ops), ns);
    std::fflush(stdout);
}

// The timed part of every benchmark runs in a function whose name contains "measure", so that
// callgrind's --toggle-collect='*measure*' counts exactly that.
Task<clock_type::duration> measure_arm_cancel(std::uint64_t ops) {
    const auto start = clock_type::now();
    for (std::uint64_t i = 0; i < ops; ++i) {
        // yield_now() suspends once, so the timer is armed when race awaits it, and cancelled
        // (removed from the reactor) when the yield wins.
        co_await race(Timer::after(1h), yield_now());
    }
    co_return clock_type::now() - start;
}

Task<clock_type::duration> measure_yield(std::uint64_t ops) {
    const auto start = clock_type::now();
    for (std::uint64_t i = 0; i < ops; ++i) co_await race(Timer::never(), yield_now());
    co_return clock_type::now() - start;
}

Task<void> sleep_long() { co_await Timer::after(24h); }

// Arm-then-cancel with `armed` other timers pending in the reactor, minus the same loop with a
// timer that is never armed (Timer::never()), i.e. the timer's own cost.
void timer_arm_cancel(const char* name, std::size_t armed, std::uint64_t ops) {
    LocalExecutor ex;
    block_on(ex.run([](LocalExecutor& ex, const char* name, std::size_t armed, std::uint64_t ops) -> Task<void> {
        std::vector<JoinHandle<void>> sleepers;
        sleepers.reserve(armed);
        for (std::size_t i = 0; i < armed; ++i) sleepers.push_back(ex.spawn(sleep_long()));
        co_await yield_now();  // let them all arm their timers
        while (!ex.is_empty() && ex.try_tick()) {
        }
        const auto with_timer = co_await measure_arm_cancel(ops);
        const auto baseline = co_await measure_yield(ops);
        report(name, ops, with_timer - baseline);
        sleepers.clear();  // cancels them: their timers leave the reactor
    }(ex, name, armed, ops)));
}

Task<void> empty_task() { co_return; }

// spawn + first run + completion + join, one at a time.
void spawn_join(std::uint64_t ops) {
    LocalExecutor ex;
    block_on(ex.run([](LocalExecutor& ex, std::uint64_t ops) -> Task<void> {
        const auto start = clock_type::now();
        for (std::uint64_t i = 0; i < ops; ++i) co_await ex.spawn(empty_task());
        report("spawn_join", ops, clock_type::now() - start);
    }(ex, ops)));
}

// A burst: spawn `ops` tasks, then join them all.
void spawn_burst(std::uint64_t ops) {
    LocalExecutor ex;
    block_on(ex.run([](LocalExecutor& ex, std::uint64_t ops) -> Task<void> {
        std::vector<JoinHandle<void>> handles;
        handles.reserve(ops);
        const auto start = clock_type::now();
        for (std::uint64_t i = 0; i < ops; ++i) handles.push_back(ex.spawn(empty_task()));
        for (auto& h : handles) co_await h;
        report("spawn_burst", ops, clock_type::now() - start);
    }(ex, ops)));
}

// Round trips between two threads: thread A spawns a task on the Executor that thread B runs and
// awaits its JoinHandle. Each trip is a cross-thread schedule (B is parked: A wakes it) and a
// cross-thread join wake back (A is parked: B wakes it). Reports half a round trip: one wake.
void cross_thread_wake(std::uint64_t trips) {
    Executor remote;
    std::atomic<bool> stop{false};
    std::thread b([&] {
        block_on(remote.run([](std::atomic<bool>& stop) -> Task<void> {
            while (!stop.load(std::memory_order_acquire)) co_await Timer::after(1ms);
        }(stop)));
    });
    block_on([](Executor& remote, std::uint64_t trips) -> Task<void> {
        for (int i = 0; i < 100; ++i) co_await remote.spawn(empty_task());  // warm up
        const auto start = clock_type::now();
        for (std::uint64_t i = 0; i < trips; ++i) co_await remote.spawn(empty_task());
        const auto d = clock_type::now() - start;
        report("cross_thread_wake", 2 * trips, d);
    }(remote, trips));
    stop.store(true, std::memory_order_release);
    b.join();
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<Bench> benches = {
        {"timer_arm_cancel/0", [] { timer_arm_cancel("timer_arm_cancel/0", 0, 200'000); }},
        {"timer_arm_cancel/1000000",
         [] { timer_arm_cancel("timer_arm_cancel/1000000", 1'000'000, 200'000); }},
        {"spawn_join", [] { spawn_join(1'000'000); }},
        {"spawn_burst", [] { spawn_burst(1'000'000); }},
        {"cross_thread_wake", [] { cross_thread_wake(20'000); }},
    };
    std::vector<std::string> wanted(argv + 1, argv + argc);
    int ran = 0;
    for (const Bench& b : benches) {
        bool want = wanted.empty();
        for (const auto& w : wanted) want = want || w == b.name;
        if (!want) continue;
        b.run();
        ++ran;
    }
    if (ran == 0) {
        std::fprintf(stderr, "usage: %s [", argv[0]);
        for (const Bench& b : benches) std::fprintf(stderr, " %s", b.name);
        std::fprintf(stderr, " ]\n");
        return 2;
    }
    return 0;
}
