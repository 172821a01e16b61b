// linux_timerfd: a Linux timerfd, an OS timer that is a file descriptor, awaited through
// Async<OwnedFd> like a socket. The fd becomes readable when the timer expires; reading it yields
// an 8-byte count of the expirations since the last read. (async_io's own Timer needs no fd: this
// shows how any such kernel object is brought into the reactor; async-io's linux-timerfd.rs does
// the same with the timerfd crate.)
//
// With no arguments it runs three short demos (about half a second in all):
//  1. sleep 200 ms on a one-shot timerfd, reading it with read_with() as the Rust example does;
//  2. a periodic timerfd of 50 ms: print 5 ticks with their elapsed times (never early);
//  3. leave that timerfd unread for 175 ms (an async_io Timer sleeps meanwhile): the next read
//     reports the 3 missed expirations at once, as a count, instead of 3 separate ticks.
//
//   linux_timerfd                   the demos
//   linux_timerfd MS [COUNT]        a periodic timerfd of MS milliseconds, printing COUNT ticks
//                                   (default 10)
#include <async_io/async.hpp>

#include <sys/timerfd.h>
#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC on Linux, the timerfds' clock here

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

timespec to_timespec(std::chrono::nanoseconds d) {
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(d);
    return timespec{static_cast<time_t>(s.count()), static_cast<long>((d - s).count())};
}

// A non-blocking timerfd on CLOCK_MONOTONIC that first expires `first` from now, then every
// `period` (never again if `period` is zero).
OwnedFd make_timerfd(std::chrono::nanoseconds first, std::chrono::nanoseconds period) {
    const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::system_category(), "timerfd_create");
    OwnedFd timer = OwnedFd::from_raw_fd(fd);  // closes it if anything below throws
    itimerspec spec{};
    spec.it_value = to_timespec(first);
    spec.it_interval = to_timespec(period);
    if (::timerfd_settime(fd, 0, &spec, nullptr) < 0)
        throw std::system_error(errno, std::system_category(), "timerfd_settime");
    return timer;
}

// Reads the expiration count of a timerfd. OwnedFd::read throws std::errc::operation_would_block
// when the timer has not expired yet, which is how read_with() knows to wait for readability.
std::uint64_t read_expirations(OwnedFd& timer) {
    std::uint64_t count = 0;
    if (timer.read(std::as_writable_bytes(std::span(&count, 1))) != sizeof count)
        throw std::runtime_error("timerfd: short read");
    return count;
}

// Sleeps for `d` on an OS timer (the Rust example's `sleep`).
Task<void> sleep_on_timerfd(std::chrono::nanoseconds d) {
    Async<OwnedFd> timer(make_timerfd(d, 0ns));
    co_await timeout(d + 2s, timer.read_with(read_expirations));
}

// The same read with the stream API: read() yields the bytes once the fd is readable.
Task<std::uint64_t> next_tick(Async<OwnedFd>& timer, std::chrono::nanoseconds period) {
    std::uint64_t count = 0;
    const std::size_t n = co_await timeout(period + 2s, timer.read(std::as_writable_bytes(std::span(&count, 1))));
    if (n != sizeof count) throw std::runtime_error("timerfd: short read");
    co_return count;
}

Task<void> demo() {
    // 1. One-shot.
    std::printf("1. sleeping 200 ms on a one-shot timerfd...\n");
    auto start = Clock::now();
    co_await sleep_on_timerfd(200ms);
    const double slept = ms_since(start);
    std::printf("   woke up after %.1f ms\n", slept);
    if (slept < 200.0) throw std::runtime_error("the timerfd woke us up early");

    // 2. Periodic.
    constexpr auto period = 50ms;
    std::printf("2. a periodic timerfd, every %lld ms:\n", static_cast<long long>(period.count()));
    start = Clock::now();
    Async<OwnedFd> ticker(make_timerfd(period, period));
    std::uint64_t expired = 0;
    for (int i = 1; i <= 5; ++i) {
        const std::uint64_t n = co_await next_tick(ticker, period);
        expired += n;
        const double at = ms_since(start);
        std::printf("   tick %d at %6.1f ms (%llu expiration%s)\n", i, at, static_cast<unsigned long long>(n),
                    n == 1 ? "" : "s");
        if (at < static_cast<double>(expired) * static_cast<double>(period.count())) throw std::runtime_error("a tick came early");
    }

    // 3. Missed ticks are counted.
    std::printf("3. not reading the timerfd for 175 ms...\n");
    co_await Timer::after(175ms);
    const std::uint64_t missed = co_await next_tick(ticker, period);
    expired += missed;
    std::printf("   one read at %.1f ms reports %llu expirations (about 3 expected: at 300, 350, 400 ms)\n",
                ms_since(start), static_cast<unsigned long long>(missed));
    if (missed < 2) throw std::runtime_error("expected the missed expirations to be counted");
    std::printf("done: %llu expirations of the periodic timerfd in all\n", static_cast<unsigned long long>(expired));
}

Task<void> ticks(std::chrono::milliseconds period, int count) {
    const auto start = Clock::now();
    Async<OwnedFd> ticker(make_timerfd(period, period));
    for (int i = 1; i <= count; ++i) {
        const std::uint64_t n = co_await next_tick(ticker, period);
        std::printf("tick %d at %.1f ms (%llu expiration%s)\n", i, ms_since(start), static_cast<unsigned long long>(n),
                    n == 1 ? "" : "s");
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        if (argc == 1) {
            block_on(demo());
            return 0;
        }
        const long ms = std::strtol(argv[1], nullptr, 10);
        const long count = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 10;
        if (ms <= 0 || count <= 0 || argc > 3) {
            std::fprintf(stderr, "usage: linux_timerfd [MS [COUNT]]\n");
            return 2;
        }
        block_on(ticks(std::chrono::milliseconds(ms), static_cast<int>(count)));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "linux_timerfd: %s\n", e.what());
        return 1;
    }
}
