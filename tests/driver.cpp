// The driver without the async-io thread: block_on calls drive the reactor themselves.
// (Kept in its own test executable: the check reads the process's thread names, and the tests in
// async_io_thread.cpp deliberately start that thread.)
#include "catch.hpp"

#include <async_io/async.hpp>

#include <dirent.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> thread_names() {
    std::vector<std::string> names;
    DIR* d = opendir("/proc/self/task");
    REQUIRE(d != nullptr);
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
        std::string name;
        std::getline(f, name);
        names.push_back(name);
    }
    closedir(d);
    return names;
}

bool async_io_thread_exists() {
    for (const auto& n : thread_names())
        if (n == "async-io") return true;
    return false;
}

}  // namespace

TEST_CASE("a process that only uses block_on never spawns the async-io thread", "[driver]") {
    // Timers, sockets and executors, on one thread and then on several at once.
    LocalExecutor ex;
    block_on(ex.run([](LocalExecutor& ex) -> Task<void> {
        auto [a, b] = Async<net::UnixStream>::pair();
        auto echo = ex.spawn([](Async<net::UnixStream>& s) -> Task<void> {
            std::byte buf[16];
            for (;;) {
                const std::size_t n = co_await s.read(buf);
                if (n == 0) co_return;
                co_await s.write_all({buf, n});
            }
        }(b));
        std::byte buf[16]{};
        for (int i = 0; i < 100; ++i) {
            co_await a.write_all(buf);
            co_await a.read_exact(buf);
            co_await Timer::after(100us);
        }
        a.get_ref().shutdown(net::Shutdown::Write);
        co_await echo;
    }(ex)));
    REQUIRE_FALSE(async_io_thread_exists());

    std::vector<std::thread> ts;
    for (int i = 0; i < 3; ++i) {
        ts.emplace_back([] {
            for (int k = 0; k < 20; ++k) block_on(Timer::after(1ms));
        });
    }
    for (auto& t : ts) t.join();
    REQUIRE_FALSE(async_io_thread_exists());
}
