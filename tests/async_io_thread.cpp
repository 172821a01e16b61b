// The async-io thread: started only for coroutines that no runner of this library drives,
// resumes them, sleeps without wakeups when idle, and lets block_on take the reactor back.
#include "catch.hpp"

#include <async_io/async.hpp>

#include <dirent.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

// A user's own fire-and-forget coroutine type: starts at once, no runner of ours drives it.
struct Detached {
    struct promise_type {
        Detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
};

std::string current_thread_name() {
    char name[32] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    return name;
}

// The TID of the thread named "async-io", or 0.
long async_io_tid() {
    DIR* d = opendir("/proc/self/task");
    REQUIRE(d != nullptr);
    long tid = 0;
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
        std::string name;
        std::getline(f, name);
        if (name == "async-io") tid = std::stol(e->d_name);
    }
    closedir(d);
    return tid;
}

// Context switches (voluntary + involuntary) of thread `tid` so far.
long context_switches(long tid) {
    std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/status");
    std::string line;
    long total = 0;
    while (std::getline(f, line)) {
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0 || line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
            std::istringstream in(line.substr(line.find(':') + 1));
            long v = 0;
            in >> v;
            total += v;
        }
    }
    return total;
}

Detached sleep_then(std::chrono::milliseconds d, std::promise<std::string>& done) {
    co_await Timer::after(d);
    done.set_value(current_thread_name());
}

}  // namespace

TEST_CASE("a coroutine no runner drives is resumed on the async-io thread", "[driver]") {
    REQUIRE(async_io_tid() == 0);  // nothing has needed it yet
    std::promise<std::string> done;
    auto result = done.get_future();
    const auto start = std::chrono::steady_clock::now();
    sleep_then(50ms, done);  // suspends on the timer; main does not drive anything
    REQUIRE(result.wait_for(10s) == std::future_status::ready);
    REQUIRE(std::chrono::steady_clock::now() - start >= 50ms);
    REQUIRE(result.get() == "async-io");
    REQUIRE(async_io_tid() != 0);

    // (One test case, not sections: the first steps must run once per process.)
    {  // idle, it does not wake up
        const long tid = async_io_tid();
        std::this_thread::sleep_for(100ms);  // let it settle into its wait
        const long before = context_switches(tid);
        std::this_thread::sleep_for(1s);
        const long after = context_switches(tid);
        REQUIRE(after - before == 0);
    }

    {  // block_on takes the reactor over from it, and both keep working
        // The async-io thread is asleep in the poller; block_on must get its own events promptly.
        for (int i = 0; i < 3; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            block_on(Timer::after(20ms));
            REQUIRE(std::chrono::steady_clock::now() - t0 < 5s);
            auto [a, b] = Async<net::UnixStream>::pair();
            block_on([](Async<net::UnixStream>& a, Async<net::UnixStream>& b) -> Task<void> {
                std::byte x[4]{};
                for (int k = 0; k < 200; ++k) {
                    co_await a.write_all(x);
                    co_await b.read_exact(x);
                }
            }(a, b));
            // ... and foreign coroutines still run on it afterwards.
            std::promise<std::string> again;
            auto f = again.get_future();
            sleep_then(5ms, again);
            REQUIRE(f.wait_for(10s) == std::future_status::ready);
            REQUIRE(f.get() == "async-io");
        }
    }
}
