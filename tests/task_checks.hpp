// The instrumentation that tests/executor.cpp and tests/executor_storm.cpp put into their tasks:
// a record per task outside its frame, checked at every stretch of its code between two
// co_awaits and when its frame is destroyed. Violations go to the record's Violations (any
// thread), to be checked on the main thread.
#pragma once

#include "support.hpp"

#include <async_io/detail/awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <coroutine>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace async_io::test {

/// Frames of instrumented tasks alive now (Marker counts them).
inline std::atomic<long> live_frames{0};

/// One task's record. `runners` are the threads allowed to resume it (its executor's); null
/// means any thread.
struct TaskState {
    Violations* v = nullptr;
    const std::vector<std::thread::id>* runners = nullptr;
    int id = 0;
    std::atomic<bool> created{false};    // its frame exists (or existed)
    std::atomic<bool> running{false};
    std::atomic<bool> dead{false};       // its frame was destroyed
    std::atomic<bool> finishing{false};  // its body finished (the frame's end is no cancellation)
    std::atomic<int> started{0};
    std::atomic<int> completed{0};
    std::atomic<int> destroyed{0};   // destroyed before it finished (cancelled)
    std::atomic<int> segments{0};    // stretches entered
    std::atomic<int> kind{0};        // what the task does (the storm's Kind)
    std::atomic<bool> throws{false}; // it throws at the end

    std::string name() const { return "task " + std::to_string(id); }
};

/// Begins a stretch of the task's code (its start, or right after a co_await resumed it).
inline void enter(TaskState& s) {
    if (s.dead.load()) s.v->add(s.name() + " resumed after its frame was destroyed");
    if (s.running.exchange(true)) s.v->add(s.name() + " resumed on two threads at once");
    if (s.runners) {
        const auto me = std::this_thread::get_id();
        if (std::find(s.runners->begin(), s.runners->end(), me) == s.runners->end())
            s.v->add(s.name() + " resumed on a thread that does not run its executor");
    }
    s.segments.fetch_add(1, std::memory_order_relaxed);
}

/// Ends a stretch (before a co_await that may suspend, or before co_return).
inline void leave(TaskState& s) {
    if (s.dead.load()) s.v->add(s.name() + " ran while its frame was being destroyed");
    if (!s.running.exchange(false)) s.v->add(s.name() + " left a stretch it was not in");
}

/// A by-value parameter of a task's coroutine: it lives in the frame from its creation, so its
/// destructor tells when the frame is destroyed, also when the task never started.
class Marker {
public:
    explicit Marker(TaskState& s) : s_(&s) {
        if (s.created.exchange(true)) s.v->add(s.name() + " created twice");
        live_frames.fetch_add(1);
    }
    Marker(Marker&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Marker& operator=(Marker&&) = delete;
    ~Marker() {
        if (!s_) return;
        if (s_->running.load() && !s_->finishing.load())
            s_->v->add(s_->name() + " destroyed while a thread runs it");
        if (s_->dead.exchange(true)) s_->v->add(s_->name() + " frame destroyed twice");
        if (!s_->finishing.load()) s_->destroyed.fetch_add(1);
        live_frames.fetch_sub(1);
    }

private:
    TaskState* s_;
};

/// Wraps an awaitable so that the stretch ends before the task suspends and begins again when
/// it resumes. Holds the awaitable by reference: use it within one full-expression
/// (co_await checked(s, x)).
template <class A>
class Checked {
public:
    using Inner = decltype(detail::get_awaiter(std::declval<A&&>()));
    Checked(TaskState& s, A&& a) : s_(s), inner_(detail::get_awaiter(static_cast<A&&>(a))) {}
    Checked(const Checked&) = delete;
    Checked& operator=(const Checked&) = delete;

    bool await_ready() { return inner_.await_ready(); }
    template <class P>
    decltype(auto) await_suspend(std::coroutine_handle<P> h) {
        suspended_ = true;
        leave(s_);
        return inner_.await_suspend(h);
    }
    decltype(auto) await_resume() {
        if (suspended_) enter(s_);
        return inner_.await_resume();
    }

private:
    TaskState& s_;
    Inner inner_;
    bool suspended_ = false;
};

template <class A>
Checked<A> checked(TaskState& s, A&& a) {
    return Checked<A>(s, static_cast<A&&>(a));
}

}  // namespace async_io::test
