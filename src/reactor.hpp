// The reactor: one per process, created on first use, never destroyed (it may be in use by
// detached threads until the process exits). See DESIGN.md, layer "reactor", and
// include/async_io/detail/wait.hpp for the wake protocol.
//
// fork(): the child of a process that has a reactor must not use it: its poller (an epoll
// instance) is the parent's own kernel object, so a child waiting in it would take the parent's
// events, and its locks may be held by threads that do not exist in the child. A pthread_atfork
// child handler (registered when the reactor, the reactor lock or the async-io thread is first
// created) abandons the reactor and the driver's state; the child's next use creates fresh ones.
// The abandoned reactor is leaked (only its poller is destroyed, by the child's next reactor, to
// close the child's copies of its fds); its sources may still be destroyed in the child
// (remove_source recognises them and touches neither poller).
#pragma once

#include "poller/poller.hpp"

#include <async_io/detail/reactor.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <new>
#include <mutex>
#include <vector>

namespace async_io::detail {

class Parker;

class Reactor {
public:
    /// The process's reactor, created on first call (thread-safe); after fork(), the child's
    /// first call creates a new one.
    static Reactor& get() {
        if (Reactor* r = current_.load(std::memory_order_acquire)) [[likely]] return *r;
        return create();
    }

    Source* add_source(int fd);
    void remove_source(Source* s) noexcept;
    int source_link(Source& s, Direction d, WaitNode& n, std::uint32_t seen) noexcept;
    void source_unlink(Source& s, Direction d, WaitNode& n) noexcept;

    void timer_insert(TimerEntry& e, std::chrono::steady_clock::time_point deadline);
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
    /// Rounds of the reactor since it was created (react calls: each one poller wait), and
    /// how many of them were allowed to block (for tests and diagnostics). Any thread.
    std::uint64_t rounds() const noexcept { return rounds_.load(std::memory_order_relaxed); }
    std::uint64_t blocking_rounds() const noexcept { return blocking_rounds_.load(std::memory_order_relaxed); }

    /// The pthread_atfork child handler: abandons the reactor and the driver's state. Only
    /// atomic stores (the child may not allocate here under the sanitizers' fork interceptors).
    static void after_fork_in_child() noexcept;

private:
    Reactor();
    static Reactor& create();
    // Destroys the pollers of the reactors that fork() abandoned, once, in the child.
    static void close_abandoned() noexcept;

    static std::atomic<Reactor*> current_;
    static Reactor* abandoned_;                  // a list through abandoned_next_
    static std::atomic<bool> abandoned_open_;    // some of them still have their poller
    Reactor* abandoned_next_ = nullptr;

    struct Slot {
        Source* source = nullptr;
        std::uint32_t generation = 0;
        std::uint32_t next_free = 0;
    };

    void dispatch(std::size_t n) noexcept;
    void fire_timers(std::chrono::steady_clock::time_point now) noexcept;  // timers_lock_ held
    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;
    void rearm(Source& s) noexcept;  // s.lock held; backends without edge mode
    /// source_link's oneshot half: arms `d` for the just linked `n`; unlocks s.lock. Returns 1,
    /// or -errno (and unlinks `n`) if the backend refused.
    int arm_linked(Source& s, Direction d, WaitNode& n) noexcept;

    std::unique_ptr<Poller> poller_;
    bool edge_;  // the backend has edge mode: register once for both directions

    // The reactor's locks are spin locks (detail::SpinLock: spin briefly, then yield), not
    // std::mutex: every critical section is short (a wake under it may signal a thread), and an
    // uncontended std::mutex pair costs about as much again (callgrind: 12 lock pairs per
    // ping-pong round trip with std::mutex were a sixth of all its instructions).
    SpinLock sources_mu_;  // guards slots_ and free_head_; held while dispatching events
    std::vector<Slot> slots_;
    std::uint32_t free_head_ = UINT32_MAX;

    // Armed timers: a 4-ary min-heap of (deadline, slot) items and a slab of slots, each
    // pointing at its entry, or null once the timer was cancelled (lazy deletion). Sifting moves
    // 16-byte items only: it never writes into the entries, which live in scattered coroutine
    // frames (a heap that kept an index in each entry took a cache miss per level). A cancelled
    // item stays until it reaches the top or until cancelled items are half of the heap, when
    // the heap is rebuilt without them (amortised O(1) per cancel; memory stays O(armed)).
    struct HeapItem {
        std::chrono::steady_clock::time_point deadline;
        std::uint32_t slot;
    };
    /// The heap's array: a vector of HeapItem whose item 0 sits three items (48 bytes) past a
    /// 64-byte boundary, so that the four children of item i (4i+1 .. 4i+4) fill one cache
    /// line: a pop then touches one line per level instead of two (with 1M timers armed the
    /// lower levels miss the cache).
    class HeapArray {
    public:
        std::size_t size() const noexcept { return v_.size() - pad; }
        bool empty() const noexcept { return v_.size() == pad; }
        std::size_t capacity() const noexcept { return v_.capacity() - pad; }
        void reserve(std::size_t n) { v_.reserve(n + pad); }
        HeapItem& operator[](std::size_t i) noexcept { return v_[i + pad]; }
        const HeapItem& operator[](std::size_t i) const noexcept { return v_[i + pad]; }
        HeapItem& back() noexcept { return v_.back(); }
        void push_back(const HeapItem& item) { v_.push_back(item); }
        void pop_back() noexcept { v_.pop_back(); }
        void resize(std::size_t n) { v_.resize(n + pad); }
        HeapItem* begin() noexcept { return v_.data() + pad; }
        HeapItem* end() noexcept { return v_.data() + v_.size(); }

    private:
        static constexpr std::size_t pad = 3;
        template <class T>
        struct LineAligned {
            using value_type = T;
            LineAligned() = default;
            template <class U>
            LineAligned(const LineAligned<U>&) noexcept {}
            T* allocate(std::size_t n) {
                return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64}));
            }
            void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{64}); }
            bool operator==(const LineAligned&) const noexcept { return true; }
        };
        std::vector<HeapItem, LineAligned<HeapItem>> v_{pad, HeapItem{}};
    };
    std::uint32_t timer_slot(TimerEntry& e);  // takes a free slot for e
    void heap_push(std::chrono::steady_clock::time_point deadline, std::uint32_t slot);
    void heap_pop() noexcept;      // removes the top item and frees its slot
    void prune_cancelled() noexcept;  // pops cancelled items off the top
    void cancel_slot(TimerEntry& e) noexcept;  // e is in the heap: leave its item behind
    /// e is armed in this reactor (not in one that fork() abandoned).
    bool owns(const TimerEntry& e) const noexcept;

    SpinLock timers_mu_;  // guards the fields below
    HeapArray heap_;
    std::vector<TimerEntry*> timer_slots_;
    std::vector<std::uint32_t> free_timer_slots_;
    std::size_t cancelled_in_heap_ = 0;
    bool sleeping_with_deadline_ = false;
    std::chrono::steady_clock::time_point sleep_deadline_;

    std::atomic<bool> sleeping_{false};  // the driver is (about to be) blocked in poller_->wait
    // Written only by the reactor lock's holder (a load and a store, no locked instruction);
    // atomic so that any thread may read them.
    std::atomic<std::uint64_t> rounds_{0};
    std::atomic<std::uint64_t> blocking_rounds_{0};
    std::array<PollEvent, 1024> events_; // used by the reactor lock holder only
};

/// Registers Reactor::after_fork_in_child with pthread_atfork, once per process (a no-op where
/// there is no fork). Called by whatever creates process-wide state: the reactor, and the reactor
/// lock and the async-io thread of src/driver.cpp.
void register_fork_handler() noexcept;
/// The driver's half of Reactor::after_fork_in_child (src/driver.cpp): forgets the reactor lock
/// and the async-io thread, which the child creates afresh when it needs them.
void driver_after_fork_in_child() noexcept;
/// Polls the reactor once without blocking, on behalf of the `block_on` running on this thread,
/// if this thread is in one and no other thread holds the reactor (src/driver.cpp). An
/// executor's run loop calls it when its queue runs dry, before it goes to sleep: readiness
/// that is already there then reaches its tasks without waking and resuming the `block_on`'s
/// task in between. False if it did not poll.
bool poll_reactor_from_task();

}  // namespace async_io::detail
