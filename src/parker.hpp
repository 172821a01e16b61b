// Parker: how a runner thread (a `block_on` call, or the async-io thread) sleeps until its task
// is woken, and how the reactor lock is handed between such threads.
//
// Contract
//  - Purpose: one Parker per running `block_on` call (and one for the async-io thread). Its
//    task's Runner::schedule calls `unpark()`, from any thread.
//  - States: empty -> (unpark) notified; empty -> (park) parked -> (unpark) notified -> empty;
//    empty -> (begin_driving) driving -> (unpark) notified.
//    `unpark` on a parked thread signals its condition variable; on a driving thread it
//    interrupts the poller, but only if the driver is actually asleep in it
//    (Reactor::notify_if_sleeping), so a wake that the driver itself causes while dispatching
//    events costs no syscall.
//  - Memory ordering: `unpark` and `is_driving` are sequentially consistent, so that with the
//    reactor's `sleeping_` flag either the waker sees the driver asleep and notifies, or the
//    driver sees the notification before it blocks (a Dekker pair; no lost wakeup).
//  - Lifetime: lives in the `block_on` frame; every unpark for it happens under its task's lock
//    or the driver lock, and the thread cannot leave `block_on` while either is held by someone
//    else working on its behalf.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace async_io::detail {

class Parker {
public:
    explicit Parker(bool is_async_io_thread = false) noexcept : is_aio_(is_async_io_thread) {}
    Parker(const Parker&) = delete;
    Parker& operator=(const Parker&) = delete;

    /// Wakes the owner: from park(), or out of the poller if it is driving. Any thread.
    void unpark() noexcept;
    /// Sleeps until unpark() (returns at once if a notification is pending); consumes it.
    void park();
    /// Empty -> driving; false (and the pending notification consumed) if one was pending.
    bool begin_driving() noexcept {
        int s = empty;
        if (state_.compare_exchange_strong(s, driving, std::memory_order_seq_cst)) return true;
        state_.store(empty, std::memory_order_relaxed);
        return false;
    }
    bool is_driving() const noexcept { return state_.load(std::memory_order_seq_cst) == driving; }
    /// Leaves the driving state; a notification received meanwhile is dropped (the owner looks
    /// at its task right after).
    void end_driving() noexcept { state_.store(empty, std::memory_order_seq_cst); }
    /// Consumes a pending notification; true if there was one.
    bool try_consume() noexcept {
        int s = notified;
        return state_.compare_exchange_strong(s, empty, std::memory_order_acq_rel);
    }

    bool is_async_io_thread() const noexcept { return is_aio_; }

private:
    enum : int { empty, notified, parked, driving };
    std::atomic<int> state_{empty};
    std::mutex m_;
    std::condition_variable cv_;
    const bool is_aio_;
};

}  // namespace async_io::detail
