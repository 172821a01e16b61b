// block_on: the port of async-io's tests/block_on.rs, then more.
#include "catch.hpp"

#include <async_io/async.hpp>
#include <async_io/detail/wait.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// Awaits readability of a pipe that a helper thread writes to after `delay`.
Task<void> wait_for_thread(std::chrono::milliseconds delay) {
    auto [r, w] = async_io::pipe();
    Async<OwnedFd> reader(std::move(r));
    std::thread t([w = std::move(w), delay]() mutable {
        std::this_thread::sleep_for(delay);
        std::byte b{1};
        w.write({&b, 1});
    });
    std::byte b{};
    const std::size_t n = co_await reader.read({&b, 1});
    t.join();
    REQUIRE(n == 1);
}

// An awaitable that is ready at once and fails the test if it is resumed twice.
struct Bomb {
    int* resumed;
    bool await_ready() const noexcept { return true; }
    void await_suspend(std::coroutine_handle<>) { FAIL("a ready awaitable was suspended"); }
    void await_resume() {
        if (++*resumed > 1) FAIL("resumed again after it completed");
    }
};

}  // namespace

// async-io tests/block_on.rs: doesnt_poll_after_ready
TEST_CASE("block_on does not resume an awaitable again after it completed", "[block_on]") {
    int resumed = 0;
    block_on(Bomb{&resumed});
    REQUIRE(resumed == 1);
}

// async-io tests/block_on.rs: recursive_wakers_are_different
TEST_CASE("a nested block_on runs a task of its own", "[block_on]") {
    block_on([]() -> Task<void> {
        detail::TaskCore* outer = detail::TaskCore::current();
        REQUIRE(outer != nullptr);
        block_on([](detail::TaskCore* o) -> Task<void> {
            REQUIRE(detail::TaskCore::current() != nullptr);
            REQUIRE(detail::TaskCore::current() != o);
            co_return;
        }(outer));
        REQUIRE(detail::TaskCore::current() == outer);
        co_return;
    }());
}

// async-io tests/block_on.rs: inner_cannot_wake_outer
TEST_CASE("a wake inside a nested block_on does not wake the outer one", "[block_on]") {
    block_on([]() -> Task<void> {
        // The inner call wakes its own task (yield_now) and completes.
        block_on([]() -> Task<void> { co_await yield_now(); }());
        const auto start = clock_type::now();
        co_await wait_for_thread(1000ms);
        REQUIRE(clock_type::now() - start >= 1000ms);
    }());
}

// async-io tests/block_on.rs: outer_cannot_wake_inner
TEST_CASE("a pending wake of the outer task does not wake a nested block_on", "[block_on]") {
    block_on([]() -> Task<void> {
        // yield_now leaves a wake pending for the outer task; the nested block_on then runs
        // while it is pending and must still wait for its own event.
        co_await when_all(yield_now(), []() -> Task<void> {
            const auto start = clock_type::now();
            block_on(wait_for_thread(1000ms));
            REQUIRE(clock_type::now() - start >= 1000ms);
            co_return;
        }());
    }());
}

// async-io tests/block_on.rs: first_cannot_wake_second
TEST_CASE("a wake left over by one block_on does not wake the next", "[block_on]") {
    block_on([]() -> Task<void> {
        // Completes with a wake of its own task still pending (the loser's yield).
        co_await race(yield_now(), []() -> Task<void> { co_return; }());
    }());
    const auto start = clock_type::now();
    block_on(wait_for_thread(1000ms));
    REQUIRE(clock_type::now() - start >= 1000ms);
}

TEST_CASE("block_on returns the value and rethrows the exception", "[block_on]") {
    REQUIRE(block_on([]() -> Task<int> { co_return 7; }()) == 7);
    REQUIRE_THROWS_AS(block_on([]() -> Task<int> {
                          co_await Timer::after(1ms);
                          throw std::runtime_error("boom");
                      }()),
                      std::runtime_error);
    int x = 3;
    int& r = block_on([](int& v) -> Task<int&> { co_return v; }(x));
    REQUIRE(&r == &x);
}

TEST_CASE("block_on awaits an lvalue awaitable in place", "[block_on]") {
    auto t = Timer::after(5ms);
    const auto deadline = *t.deadline();
    REQUIRE(block_on(t) == deadline);
    REQUIRE_FALSE(t.will_fire());
}

TEST_CASE("a wake from another thread interrupts the driving thread", "[block_on]") {
    const auto start = clock_type::now();
    block_on(wait_for_thread(100ms));
    const auto took = clock_type::now() - start;
    REQUIRE(took >= 100ms);
    REQUIRE(took < 5s);
}

TEST_CASE("concurrent block_on calls each get their own wakes, and the reactor is handed over",
          "[block_on]") {
    // Threads with different timer deadlines: whichever drives first finishes first and must
    // hand the reactor to the others, which then still see their timers and pipes.
    constexpr int threads = 6;
    std::vector<std::thread> ts;
    std::atomic<int> done{0};
    for (int i = 0; i < threads; ++i) {
        ts.emplace_back([i, &done] {
            const auto start = clock_type::now();
            const auto d = std::chrono::milliseconds(20 + 60 * i);
            block_on([](std::chrono::milliseconds d) -> Task<void> {
                co_await Timer::after(d);
                co_await wait_for_thread(10ms);
                co_await Timer::after(d);
            }(d));
            const auto took = clock_type::now() - start;
            CHECK(took >= 2 * d);
            CHECK(took < 2 * d + 5s);
            ++done;
        });
    }
    for (auto& t : ts) t.join();
    REQUIRE(done == threads);
}

TEST_CASE("many threads ping-pong through block_on without losing a wake", "[block_on]") {
    // Two threads, each in block_on, exchange 2000 messages over a socket pair: every wake
    // crosses threads, and the reactor lock moves between them all the time.
    auto pair = Async<net::UnixStream>::pair();
    auto& a = pair.first;
    auto& b = pair.second;  // (not a structured binding: Clang 14 cannot capture those)
    constexpr int rounds = 2000;
    std::thread peer([&b] {
        block_on([](Async<net::UnixStream>& s) -> Task<void> {
            std::byte buf[8];
            for (int i = 0; i < rounds; ++i) {
                co_await s.read_exact(buf);
                co_await s.write_all(buf);
            }
        }(b));
    });
    block_on([](Async<net::UnixStream>& s) -> Task<void> {
        std::byte buf[8]{};
        for (int i = 0; i < rounds; ++i) {
            buf[0] = static_cast<std::byte>(i);
            co_await s.write_all(buf);
            co_await s.read_exact(buf);
            REQUIRE(buf[0] == static_cast<std::byte>(i));
        }
    }(a));
    peer.join();
}
