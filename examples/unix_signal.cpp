// unix_signal: receiving signals as I/O with a Linux signalfd. The signals are blocked first
// (pthread_sigmask, before any thread exists, so that every thread inherits the mask): instead of
// running a handler or killing the process, a blocked signal stays pending, and a signalfd for it
// becomes readable, yielding one `struct signalfd_siginfo` per signal. Wrapped in
// Async<OwnedFd>, it is awaited like a socket. (async-io's unix-signal.rs gets the same effect
// with signal-hook's self-pipe trick.)
//
// With no arguments, a sender task sends this process SIGUSR1 three times, 100 ms apart, each
// carrying a number (sigqueue), then SIGINT as a pretend Ctrl-C; the receiver task prints each
// signal as it reads it from the signalfd and stops at SIGINT.
//
//   unix_signal                  the demo
//   unix_signal wait [SECONDS]   wait for a real Ctrl-C (or SIGTERM) for up to SECONDS (default
//                                60), printing any SIGUSR1/SIGUSR2 that comes meanwhile
//                                (try `kill -USR1 PID` from another terminal)
#include <async_io/async.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

[[noreturn]] void throw_errno(const char* what) {
    throw std::system_error(errno, std::system_category(), what);
}

std::string signal_name(int sig) {
    switch (sig) {
        case SIGINT: return "SIGINT";
        case SIGTERM: return "SIGTERM";
        case SIGUSR1: return "SIGUSR1";
        case SIGUSR2: return "SIGUSR2";
        default: return "signal " + std::to_string(sig);
    }
}

// Blocks `signals` in the calling thread (and in the threads it starts later) and returns a
// non-blocking signalfd that reports them.
OwnedFd block_and_open_signalfd(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (const int sig : signals) {
        sigaddset(&set, sig);
        // A signal whose disposition is "ignore" (as a shell may leave SIGINT for a background
        // job) is discarded at once and never becomes pending: restore the default. Blocked, the
        // default action (terminate) never runs; the signalfd consumes the signal instead.
        if (::signal(sig, SIG_DFL) == SIG_ERR) throw_errno("signal");
    }
    if (const int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0)
        throw std::system_error(err, std::system_category(), "pthread_sigmask");
    const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) throw_errno("signalfd");
    return OwnedFd::from_raw_fd(fd);
}

struct Received {
    int signo;
    int value;  // what sigqueue attached (0 for kill)
    int code;   // SI_QUEUE, SI_USER, ...
    pid_t pid;  // the sender
};

// Waits for the signalfd to have signals, and reads all that are pending (one read).
Task<std::vector<Received>> next_signals(Async<OwnedFd>& sigfd) {
    signalfd_siginfo info[8];
    const std::size_t n = co_await sigfd.read(std::as_writable_bytes(std::span(info)));
    if (n % sizeof(signalfd_siginfo) != 0) throw std::runtime_error("signalfd: partial record");
    std::vector<Received> out;
    for (std::size_t i = 0; i < n / sizeof(signalfd_siginfo); ++i) {
        out.push_back({static_cast<int>(info[i].ssi_signo), info[i].ssi_int, info[i].ssi_code,
                       static_cast<pid_t>(info[i].ssi_pid)});
    }
    co_return out;
}

void print_signal(const Received& r, Clock::time_point start) {
    std::printf("  %7.1f ms  received %s from pid %d", ms_since(start), signal_name(r.signo).c_str(),
                static_cast<int>(r.pid));
    if (r.code == SI_QUEUE) std::printf(" carrying the value %d", r.value);
    std::printf("\n");
}

// ---- the demo -----------------------------------------------------------------------------

constexpr int kUsr1Count = 3;

Task<void> send_signals() {
    for (int i = 1; i <= kUsr1Count; ++i) {
        co_await Timer::after(100ms);
        std::printf("  [sender] sigqueue(getpid(), SIGUSR1, %d)\n", i);
        sigval value{};
        value.sival_int = i;
        if (::sigqueue(::getpid(), SIGUSR1, value) < 0) throw_errno("sigqueue");
    }
    co_await Timer::after(100ms);
    std::printf("  [sender] kill(getpid(), SIGINT), a pretend Ctrl-C\n");
    if (::kill(::getpid(), SIGINT) < 0) throw_errno("kill");
}

Task<void> receive_signals(Async<OwnedFd>& sigfd, Clock::time_point start) {
    std::vector<int> values;
    for (;;) {
        for (const auto& r : co_await timeout(2s, next_signals(sigfd))) {
            print_signal(r, start);
            if (r.signo == SIGINT) {
                if (values.empty()) throw std::runtime_error("SIGINT came, but no SIGUSR1 before it");
                if (values.size() < kUsr1Count) {
                    // Standard signals do not queue: a second one sent while the first is still
                    // pending is merged into it. With 100 ms between them this takes a stall.
                    std::printf("  (%zu of the %d SIGUSR1 were merged with others: the process was stalled)\n",
                                kUsr1Count - values.size(), kUsr1Count);
                }
                std::printf("SIGINT received: stopping (it did not kill the process: it is blocked)\n");
                co_return;
            }
            if (r.signo == SIGUSR1) {
                // Sent as 1, 2, 3: each value must be larger than the one before.
                if (r.code != SI_QUEUE || r.value < 1 || r.value > kUsr1Count || (!values.empty() && r.value <= values.back()))
                    throw std::runtime_error("unexpected SIGUSR1 value " + std::to_string(r.value));
                values.push_back(r.value);
            }
        }
    }
}

Task<void> demo() {
    Async<OwnedFd> sigfd(block_and_open_signalfd({SIGUSR1, SIGINT}));
    std::printf("pid %d: SIGUSR1 and SIGINT blocked; reading them from a signalfd\n", static_cast<int>(::getpid()));
    const auto start = Clock::now();
    co_await timeout(10s, when_all(receive_signals(sigfd, start), send_signals()));
}

// ---- waiting for a real Ctrl-C -----------------------------------------------------------

Task<bool> wait_for_ctrl_c(Async<OwnedFd>& sigfd) {
    const auto start = Clock::now();
    for (;;) {
        for (const auto& r : co_await next_signals(sigfd)) {
            print_signal(r, start);
            if (r.signo == SIGINT || r.signo == SIGTERM) co_return true;
        }
    }
}

int wait_mode(int seconds) {
    Async<OwnedFd> sigfd(block_and_open_signalfd({SIGINT, SIGTERM, SIGUSR1, SIGUSR2}));
    std::printf("pid %d: waiting up to %d s for Ctrl-C (also try: kill -USR1 %d)...\n", static_cast<int>(::getpid()),
                seconds, static_cast<int>(::getpid()));
    try {
        block_on(timeout(std::chrono::seconds(seconds), wait_for_ctrl_c(sigfd)));
        std::printf("done!\n");
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::timed_out) throw;
        std::printf("no Ctrl-C within %d s, giving up\n", seconds);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        if (argc == 1) {
            block_on(demo());
            return 0;
        }
        if (std::string_view(argv[1]) == "wait" && argc <= 3) {
            const long seconds = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 60;
            if (seconds > 0 && seconds <= 86400) return wait_mode(static_cast<int>(seconds));
        }
        std::fprintf(stderr, "usage: unix_signal [wait [SECONDS]]\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unix_signal: %s\n", e.what());
        return 1;
    }
}
