// Helpers shared by several test files (grep for support.hpp to see which).
#pragma once

#include <async_io/task.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace async_io::test {

/// True in a build under a sanitizer: tests/CMakeLists.txt sets ASYNC_IO_SANITIZER to the
/// build's sanitizers, or "none". Long tests do less under them (they run several times slower).
inline bool under_sanitizer() {
    const char* s = std::getenv("ASYNC_IO_SANITIZER");
    return s != nullptr && *s != '\0' && std::string_view(s) != "none";
}

/// What an awaitable or a call threw: the code and message of a std::system_error, if any.
struct Failure {
    bool threw = false;
    std::error_code code;
    std::string what;
};

/// Awaits `aw` (in the same full expression as the call) and reports the std::system_error it
/// threw; anything else propagates.
template <class A>
Task<Failure> failure_of(A&& aw) {
    Failure f;
    try {
        co_await aw;  // by name: GCC 12 would copy a forwarded operand (std::forward<A>(aw))
    } catch (const std::system_error& e) {
        f = Failure{true, e.code(), e.what()};
    }
    co_return f;
}

/// The std::system_error that `f()` throws synchronously.
template <class F>
Failure sync_failure_of(F f) {
    try {
        f();
    } catch (const std::system_error& e) {
        return Failure{true, e.code(), e.what()};
    }
    return {};
}

/// waitpid with a deadline, for tests that fork: a child that is late (hung) is killed, so the
/// test fails instead of hanging until ctest's timeout. Returns its wait status, or -1.
inline int wait_child(pid_t pid, std::chrono::steady_clock::duration limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) return -1;
        if (std::chrono::steady_clock::now() > end) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

/// A fresh directory under /tmp, removed with everything in it at the end of the scope.
class TempDir {
public:
    explicit TempDir(std::string_view prefix = "async_io_test") {
        std::string tmpl = "/tmp/" + std::string(prefix) + "_XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
        path_ = std::move(tmpl);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const noexcept { return path_; }
    std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

private:
    std::string path_;
};

/// Invariant violations seen on any thread, checked on the main thread (Catch2's assertion
/// macros are not thread-safe). The first `keep` are kept for the report and, if `label` is
/// given, printed at once (if the damage makes the run hang later, the log still says why).
class Violations {
public:
    explicit Violations(const char* label = nullptr, int keep = 10) noexcept : label_(label), keep_(keep) {}
    void add(const std::string& what) {
        if (count_.fetch_add(1) >= keep_) return;
        std::lock_guard g(m_);
        first_ += what + "\n";
        if (label_) {
            std::fprintf(stderr, "%s violation: %s\n", label_, what.c_str());
            std::fflush(stderr);
        }
    }
    int count() const { return count_.load(); }
    std::string first() {
        std::lock_guard g(m_);
        return first_;
    }

private:
    const char* label_;
    int keep_;
    std::atomic<int> count_{0};
    std::mutex m_;
    std::string first_;
};

}  // namespace async_io::test
