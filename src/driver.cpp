// The driver: who runs the reactor, and when. `block_on` (run_root) drives it on its own thread
// while its task waits, if no other thread is driving; otherwise it parks and is woken by its
// task's wakes. An executor's run loop inside a `block_on` also polls it once, without blocking,
// when its queue runs dry (poll_reactor_from_task). When a driver stops (its own task became
// ready), it hands the reactor lock to the threads parked waiting for it. The async-io thread
// exists only for coroutines that no runner of this library drives (a user's own coroutine type
// awaiting a Timer from a plain thread): it is spawned the first time such a coroutine suspends,
// resumes those coroutines, drives the reactor only while no `block_on` thread wants it, and sleeps
// in the poller (no periodic wakeups) when there is nothing to do. In the child of a fork, the
// reactor lock and the async-io thread are forgotten (driver_after_fork_in_child) and created
// afresh when needed.
#include "parker.hpp"
#include "reactor.hpp"

#include <async_io/detail/wait.hpp>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__) || defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__)
#include <pthread.h>
#endif

namespace async_io::detail {

// ---- Parker -------------------------------------------------------------------------------------

void Parker::unpark() noexcept {
    const int prev = state_.exchange(notified, std::memory_order_seq_cst);
    if (prev == parked) {
        std::lock_guard g(m_);
        cv_.notify_one();
    } else if (prev == driving) {
        Reactor::get().notify_if_sleeping();
    }
}

void Parker::park() {
    if (try_consume()) return;
    std::unique_lock l(m_);
    int s = empty;
    if (!state_.compare_exchange_strong(s, parked, std::memory_order_seq_cst)) {
        state_.store(empty, std::memory_order_relaxed);  // it was notified meanwhile
        return;
    }
    cv_.wait(l, [&] { return state_.load(std::memory_order_acquire) != parked; });
    state_.store(empty, std::memory_order_relaxed);
}

// ---- the reactor lock and its hand-over ---------------------------------------------------------

namespace {

/// The reactor lock: at most one thread drives the reactor at a time. A thread that finds it held
/// registers as a waiter and parks; the holder, when it stops driving, wakes every waiter so that
/// one of them takes over (a waiter may meanwhile have been woken for its own task and not want
/// the lock any more, so waking just one could strand the others). `block_on` threads take
/// precedence over the async-io thread, which is asked to let go when one of them arrives.
class ReactorLock {
public:
    /// Takes the lock (true), or registers `p` as a waiter (false): then park and `leave`.
    bool acquire_or_wait(Parker& p) {
        std::lock_guard g(mu_);
        if (!locked_ && !(p.is_async_io_thread() && !waiters_.empty())) {
            locked_ = true;
            holder_ = &p;
            return true;
        }
        waiters_.push_back(&p);
        if (!p.is_async_io_thread()) {
            block_on_waiting_.fetch_add(1, std::memory_order_relaxed);
            if (holder_ && holder_->is_async_io_thread()) Reactor::get().notify();
        }
        return false;
    }
    bool try_acquire(Parker& p) {
        std::lock_guard g(mu_);
        if (locked_) return false;
        locked_ = true;
        holder_ = &p;
        return true;
    }
    void leave(Parker& p) {
        std::lock_guard g(mu_);
        auto it = std::find(waiters_.begin(), waiters_.end(), &p);
        if (it != waiters_.end()) {
            waiters_.erase(it);
            if (!p.is_async_io_thread()) block_on_waiting_.fetch_sub(1, std::memory_order_relaxed);
        }
    }
    void release() {
        std::lock_guard g(mu_);
        locked_ = false;
        holder_ = nullptr;
        bool any_block_on = false;
        for (Parker* w : waiters_) {
            if (!w->is_async_io_thread()) {
                w->unpark();
                any_block_on = true;
            }
        }
        if (!any_block_on) {
            for (Parker* w : waiters_) w->unpark();
        }
    }
    bool block_on_waiting() const noexcept {
        return block_on_waiting_.load(std::memory_order_relaxed) != 0;
    }

private:
    SpinLock mu_;  // short sections (at most an unpark, which may signal a sleeping thread)
    bool locked_ = false;
    Parker* holder_ = nullptr;
    std::vector<Parker*> waiters_;
    std::atomic<int> block_on_waiting_{0};
};

// Never destroyed (as the reactor); replaced in the child of a fork (driver_after_fork_in_child).
std::atomic<ReactorLock*> current_reactor_lock{nullptr};

ReactorLock& reactor_lock() {
    if (ReactorLock* l = current_reactor_lock.load(std::memory_order_acquire)) [[likely]] return *l;
    register_fork_handler();
    auto fresh = std::make_unique<ReactorLock>();
    ReactorLock* expected = nullptr;
    if (current_reactor_lock.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel,
                                                     std::memory_order_acquire))
        return *fresh.release();
    return *expected;
}

/// Blocks until `p` is unparked (its task was woken) or the reactor lock is handed over; drives
/// the reactor meanwhile if it can.
void wait_for_wake(Parker& p) {
    Reactor& reactor = Reactor::get();
    ReactorLock& lock = reactor_lock();
    if (!lock.acquire_or_wait(p)) {
        p.park();
        lock.leave(p);
        return;
    }
    struct Release {
        ReactorLock& l;
        ~Release() { l.release(); }
    } release{lock};
    if (!p.begin_driving()) return;
    try {
        do {
            reactor.react(&p, true);
        } while (p.is_driving() && !(p.is_async_io_thread() && lock.block_on_waiting()));
    } catch (...) {
        p.end_driving();
        throw;
    }
    p.end_driving();
}

/// A runner that is one thread: schedule() unparks it.
class ThreadRunner final : public Runner {
public:
    explicit ThreadRunner(Parker& p) noexcept : parker_(p) {}
    void schedule(TaskCore&) noexcept override { parker_.unpark(); }

private:
    Parker& parker_;
};

// How many ready nodes a runner resumes before it looks at the reactor again (fairness: a task
// that keeps itself ready must not starve I/O and timers).
constexpr unsigned run_budget = 128;

/// Polls the reactor without blocking if no other thread holds it (fairness for busy tasks).
/// False if it did not poll.
bool poll_reactor(Parker& p) {
    ReactorLock& lock = reactor_lock();
    if (!lock.try_acquire(p)) return false;
    struct Release {
        ReactorLock& l;
        ~Release() { l.release(); }
    } release{lock};
    Reactor::get().react(&p, false);
    return true;
}

// The Parker of the `block_on` whose task runs on this thread (null outside one, and on the
// async-io thread).
thread_local Parker* block_on_parker = nullptr;

// ---- the async-io thread ----------------------------------------------------------------------

struct AsyncIoThread {
    Parker parker{true};
    ThreadRunner runner{parker};
    TaskCore core{&runner};

    // Wakes that come before start() are not lost: the parker keeps the notification.
    void start() {
        std::thread([this] {
#if defined(__linux__)
            pthread_setname_np(pthread_self(), "async-io");
#elif defined(__APPLE__)
            pthread_setname_np("async-io");
#endif
            for (;;) {
                while (core.run(run_budget)) poll_reactor(parker);
                try {
                    wait_for_wake(parker);
                } catch (const std::exception&) {
                    // The poller failed (e.g. out of memory); nothing to report to: try again.
                    std::this_thread::yield();
                }
            }
        }).detach();
    }
};

// Never destroyed: it runs forever. Forgotten in the child of a fork (its thread is not there).
std::atomic<AsyncIoThread*> current_async_io_thread{nullptr};

// What the child of a fork inherits from the parent's driver and no longer uses: leaked, but
// reachable (leak checkers stay quiet).
ReactorLock* abandoned_reactor_lock = nullptr;
AsyncIoThread* abandoned_async_io_thread = nullptr;

}  // namespace

void driver_after_fork_in_child() noexcept {
    if (ReactorLock* l = current_reactor_lock.exchange(nullptr, std::memory_order_acq_rel))
        abandoned_reactor_lock = l;
    if (AsyncIoThread* a = current_async_io_thread.exchange(nullptr, std::memory_order_acq_rel))
        abandoned_async_io_thread = a;
}

TaskCore& task_for_suspend() {
    if (TaskCore* t = TaskCore::current()) return *t;
    AsyncIoThread* aio = current_async_io_thread.load(std::memory_order_acquire);
    if (!aio) [[unlikely]] {
        register_fork_handler();
        auto fresh = std::make_unique<AsyncIoThread>();
        if (current_async_io_thread.compare_exchange_strong(aio, fresh.get(), std::memory_order_acq_rel,
                                                            std::memory_order_acquire)) {
            aio = fresh.release();
            try {
                aio->start();
            } catch (...) {
                current_async_io_thread.store(nullptr, std::memory_order_release);  // next time
                throw;
            }
        }
    }
    return aio->core;
}

// ---- tasks --------------------------------------------------------------------------------------

thread_local TaskCore* TaskCore::current_ = nullptr;
namespace {
thread_local bool yield_requested = false;
}

bool TaskCore::run(unsigned budget) {
    Scope scope(this);
    for (unsigned i = 0; i < budget; ++i) {
        lock_.lock();
        WaitNode* n = ready_.pop_front();
        if (!n) {
            queued_ = false;
            lock_.unlock();
            return false;
        }
        n->state = NodeState::idle;
        lock_.unlock();
        n->ready();
        if (take_yield_request()) break;
    }
    lock_.lock();
    const bool more = !ready_.empty();
    if (!more) queued_ = false;
    lock_.unlock();
    return more;
}

bool TaskCore::take_yield_request() noexcept {
    if (!yield_requested) return false;
    yield_requested = false;
    return true;
}

void request_yield() noexcept { yield_requested = true; }

// ---- block_on -----------------------------------------------------------------------------------

bool poll_reactor_from_task() { return block_on_parker && poll_reactor(*block_on_parker); }

void run_root(std::coroutine_handle<> root) {
    Parker parker;
    ThreadRunner runner(parker);
    TaskCore core(&runner);
    struct SetParker {
        Parker* saved;
        explicit SetParker(Parker* p) noexcept : saved(std::exchange(block_on_parker, p)) {}
        ~SetParker() { block_on_parker = saved; }
    } set_parker(&parker);
    {
        TaskCore::Scope scope(&core);
        root.resume();
    }
    while (!root.done()) {
        if (core.run(run_budget)) {
            if (!root.done()) poll_reactor(parker);
            continue;
        }
        if (root.done()) break;
        wait_for_wake(parker);
    }
}

}  // namespace async_io::detail
