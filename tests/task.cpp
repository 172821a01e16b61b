// Task<T>: laziness, results, exceptions, symmetric transfer, cancellation by destruction.
#include "catch.hpp"
#include "reactor.hpp"  // internal: Reactor::timer_count

#include <async_io/async.hpp>

#include <memory>
#include <stdexcept>
#include <string>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

Task<int> ready_value(int v) { co_return v; }

Task<long> sum_sequential(int n) {
    long s = 0;
    for (int i = 0; i < n; ++i) s += co_await ready_value(1);
    co_return s;
}

Task<int> deep(int n) {
    if (n == 0) co_return 0;
    co_return 1 + co_await deep(n - 1);
}

struct Marker {
    bool* destroyed;
    ~Marker() { *destroyed = true; }
};

}  // namespace

TEST_CASE("a task does nothing until it is awaited", "[task]") {
    bool ran = false;
    auto t = [](bool& r) -> Task<void> {
        r = true;
        co_return;
    }(ran);
    REQUIRE_FALSE(ran);
    block_on(std::move(t));
    REQUIRE(ran);
}

TEST_CASE("a million sequential awaits of ready tasks use constant stack", "[task]") {
    // Symmetric transfer: each co_await of a ready task jumps into it and back. Without it, this
    // overflows the stack (the suite also runs at -O0, where GCC and Clang must still tail-call).
    REQUIRE(block_on(sum_sequential(1'000'000)) == 1'000'000);
}

TEST_CASE("a deep chain of nested tasks completes", "[task]") {
    REQUIRE(block_on(deep(10'000)) == 10'000);
}

TEST_CASE("exceptions propagate through awaiting tasks", "[task]") {
    auto inner = []() -> Task<std::string> {
        co_await Timer::after(1ms);
        throw std::runtime_error("inner failed");
    };
    auto outer = [&]() -> Task<std::string> { co_return co_await inner(); };
    REQUIRE_THROWS_AS(block_on(outer()), std::runtime_error);
    auto v = []() -> Task<void> { throw std::logic_error("void failed"); co_return; };
    REQUIRE_THROWS_AS(block_on(v()), std::logic_error);
}

TEST_CASE("Task<T&> yields the reference and Task<T> moves its value", "[task]") {
    int x = 1;
    auto ref = [](int& v) -> Task<int&> { co_return v; };
    block_on([&]() -> Task<void> {
        int& r = co_await ref(x);
        r = 5;
    }());
    REQUIRE(x == 5);
    auto up = block_on([]() -> Task<std::unique_ptr<int>> { co_return std::make_unique<int>(9); }());
    REQUIRE(*up == 9);
}

TEST_CASE("a task can be moved and awaited as an lvalue", "[task]") {
    Task<int> a = ready_value(3);
    Task<int> b = std::move(a);
    REQUIRE_FALSE(a);
    REQUIRE(block_on([&]() -> Task<int> { co_return co_await b; }()) == 3);
}

TEST_CASE("destroying a suspended task cancels it and deregisters its timer", "[task]") {
    auto& reactor = detail::Reactor::get();
    const auto before = reactor.timer_count();
    bool destroyed = false;
    bool finished = false;
    block_on([&]() -> Task<void> {
        auto sleeper = [](bool& d, bool& f) -> Task<void> {
            Marker m{&d};
            co_await Timer::after(1h);
            f = true;
        }(destroyed, finished);
        // race starts the sleeper (arming its timer), then the ready yield wins.
        co_await race(std::move(sleeper), yield_now());
    }());
    REQUIRE(destroyed);
    REQUIRE_FALSE(finished);
    REQUIRE(reactor.timer_count() == before);
}

TEST_CASE("destroying an unstarted task runs no part of it", "[task]") {
    bool ran = false;
    {
        auto t = [](bool& r) -> Task<void> {
            r = true;
            co_return;
        }(ran);
    }
    REQUIRE_FALSE(ran);
}
