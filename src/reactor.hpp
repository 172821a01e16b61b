// The reactor: one per process, created on first use, never destroyed (it may be in use by
// detached threads until the process exits). See DESIGN.md, layer "reactor", and
// include/async_io/detail/wait.hpp for the wake protocol.
#pragma once

#include "poller/poller.hpp"

#include <async_io/detail/reactor.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

namespace async_io::detail {

class Parker;

class Reactor {
public:
    /// The process's reactor, created on first call (thread-safe).
    static Reactor& get();

    Source* add_source(int fd);
    void remove_source(Source* s) noexcept;
    int source_link(Source& s, Direction d, WaitNode& n, std::uint32_t seen) noexcept;
    void source_unlink(Source& s, Direction d, WaitNode& n) noexcept;

    void timer_insert(TimerEntry& e);
    void timer_remove(TimerEntry& e) noexcept;
    void timer_reset(TimerEntry& e, std::chrono::steady_clock::time_point deadline);

    /// One round of the reactor, by the holder of the reactor lock (src/driver.cpp): fires due
    /// timers, then waits in the poller until an event, the next timer, or a notification (not
    /// at all if `block` is false, or if `self` is no longer driving), then dispatches what came
    /// and fires due timers again. Wakes nodes; never resumes a coroutine.
    void react(Parker* self, bool block);

    /// Interrupts the poller wait of the driving thread if it is asleep (a no-op otherwise, so a
    /// wake on the driving thread itself costs no syscall).
    void notify_if_sleeping() noexcept;
    /// Interrupts the poller wait unconditionally (coalesced by the poller).
    void notify() noexcept { poller_->notify(); }

    const char* backend_name() const noexcept { return poller_->name(); }
    /// Number of armed timers (for tests).
    std::size_t timer_count();

private:
    Reactor();

    struct Slot {
        Source* source = nullptr;
        std::uint32_t generation = 0;
        std::uint32_t next_free = 0;
    };

    void dispatch(std::size_t n) noexcept;
    void fire_timers(std::chrono::steady_clock::time_point now) noexcept;  // timers_lock_ held
    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;
    void heap_erase(TimerEntry& e) noexcept;
    void rearm(Source& s) noexcept;  // s.lock held; backends without edge mode

    std::unique_ptr<Poller> poller_;
    bool edge_;  // the backend has edge mode: register once for both directions

    std::mutex sources_mu_;  // guards slots_ and free_head_; held while dispatching events
    std::vector<Slot> slots_;
    std::uint32_t free_head_ = UINT32_MAX;

    // A binary min-heap of armed timers. Each item carries its deadline inline, so sifting
    // compares contiguous memory instead of chasing entries in scattered coroutine frames; the
    // entry's heap_index is written only when an item moves.
    struct HeapItem {
        std::chrono::steady_clock::time_point deadline;
        TimerEntry* entry;
    };
    std::mutex timers_mu_;  // guards heap_ and sleep_deadline_
    std::vector<HeapItem> heap_;
    bool sleeping_with_deadline_ = false;
    std::chrono::steady_clock::time_point sleep_deadline_;

    std::atomic<bool> sleeping_{false};  // the driver is (about to be) blocked in poller_->wait
    std::array<PollEvent, 1024> events_; // used by the reactor lock holder only
};

}  // namespace async_io::detail
