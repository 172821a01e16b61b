// The wake protocol shared by every awaitable, runner and the reactor. Three files tell the whole
// life of a wake: this one (wait nodes, task cores), src/reactor.cpp (who wakes a node) and
// src/driver.cpp (who resumes it).
//
// Vocabulary
//  - A *task* is the unit a runner schedules: the argument of one `block_on`, or one spawned
//    task. Each has one TaskCore that outlives all of the task's coroutine frames.
//  - A *wait node* lives inside an awaiter, i.e. inside a suspended coroutine frame of one task.
//    While the coroutine waits, the node is linked into exactly one *wait list* owned by the thing
//    it waits for (a source direction, the timer heap, an executor's sleepers, a join slot), each
//    guarded by that thing's lock.
//  - Waking a node (any thread): with the wait list's lock held, unlink the node and call
//    `TaskCore::wake(node)`, which, under the task's lock, appends it to the task's *ready list*
//    and, if the task was idle, hands the task to its runner (`Runner::schedule`). The task pointer
//    is valid because the node was still linked, so its frame, and so the task, was alive.
//    Lock order: wait-list lock -> task lock -> runner's own lock.
//  - Resuming (only on the thread that runs the task): the runner pops ready nodes one at a time
//    and calls `node->ready()`, which usually resumes the node's coroutine. The reactor never
//    resumes user code itself.
//  - Cancelling (destroying an awaiter; only the thread running the task, or a thread that owns an
//    idle task, destroys frames): take the wait list's lock; if the node is still linked there,
//    unlink it and stop. Otherwise it was woken: it sits in its task's ready list, so remove it
//    there under the task lock. Nobody can be resuming it meanwhile, because only this thread
//    resumes the task. After the destructor returns nothing refers to the node.
// Hence every node is resumed exactly once or never, and a task runs on one thread at a time.
#pragma once

#include <async_io/detail/export.hpp>

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <thread>

namespace async_io::detail {

/// A one-byte test-and-test-and-set lock for the short critical sections of the wake protocol
/// (a few pointer writes). Waiters spin briefly, then yield the CPU. Not recursive.
/// Memory order: lock() acquires, unlock() releases.
class SpinLock {
public:
    void lock() noexcept {
        for (int spins = 0;; ++spins) {
            if (!locked_.exchange(true, std::memory_order_acquire)) return;
            while (locked_.load(std::memory_order_relaxed)) {
                if (++spins > 64) std::this_thread::yield();
            }
        }
    }
    bool try_lock() noexcept {
        return !locked_.load(std::memory_order_relaxed) &&
               !locked_.exchange(true, std::memory_order_acquire);
    }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> locked_{false};
};

class TaskCore;
struct WaitNode;

/// Where a wait node is linked; read and written only under the lock of the list it is in (or by
/// the thread running its task while it is in no list).
enum class NodeState : std::uint8_t { idle, waiting, ready };

/// The direction of an I/O wait (IoNode, and the reactor's sources).
enum class Direction : std::uint8_t { read = 0, write = 1 };

/// The part of an awaiter that a wait list links. See the protocol at the top of this file.
/// 40 bytes; a derived node may keep six bytes of its own in the tail padding (TimerEntry,
/// IoNode).
struct WaitNode {
    WaitNode* prev = nullptr;
    WaitNode* next = nullptr;
    TaskCore* task = nullptr;              ///< the task the awaiting coroutine belongs to
    std::coroutine_handle<> handle;        ///< the coroutine to resume
    NodeState state = NodeState::idle;
    /// An IoNode: its runner calls the node's `on_ready` rather than resuming `handle`. (A flag
    /// rather than a function pointer in every node: a timer's node, in every sleeping frame,
    /// stays 8 bytes smaller.)
    bool io = false;

    /// What the task's runner does, on its thread, with a node it took from the ready list.
    inline void ready();
};

/// The wait node of an I/O awaiter (io_awaiter.hpp), which retries its operation in `on_ready`
/// before it resumes the coroutine (or waits again). Its small fields sit in WaitNode's tail
/// padding: 48 bytes in all. The awaiter derives from it, so that `on_ready` gets from the
/// node to the awaiter by a plain downcast.
struct IoNode : WaitNode {
    Direction d;
    bool linked = false;     ///< linked in its source's wait list (see IoAwaiter)
    std::uint32_t seen = 0;  ///< the readiness word the last attempt saw
    void (*on_ready)(WaitNode*);
    IoNode(Direction dir, void (*f)(WaitNode*)) noexcept : d(dir), on_ready(f) { io = true; }
};
#if !defined(_MSC_VER)  // the Itanium C++ ABI reuses a non-POD base's tail padding; MSVC does not
static_assert(sizeof(WaitNode) == 40 || sizeof(void*) != 8);
static_assert(sizeof(IoNode) == sizeof(WaitNode) + sizeof(void*), "IoNode's small fields should fit in WaitNode's tail padding");
#endif

inline void WaitNode::ready() {
    if (io) {
        static_cast<IoNode*>(this)->on_ready(this);
    } else {
        handle.resume();
    }
}

/// An intrusive FIFO of wait nodes; O(1) push, pop and erase. Not synchronised: its owner's lock
/// guards it.
class WaitList {
public:
    bool empty() const noexcept { return head_ == nullptr; }
    WaitNode* front() const noexcept { return head_; }

    void push_back(WaitNode& n) noexcept {
        n.next = nullptr;
        n.prev = tail_;
        if (tail_) tail_->next = &n; else head_ = &n;
        tail_ = &n;
    }
    WaitNode* pop_front() noexcept {
        WaitNode* n = head_;
        if (n) erase(*n);
        return n;
    }
    void erase(WaitNode& n) noexcept {
        if (n.prev) n.prev->next = n.next; else head_ = n.next;
        if (n.next) n.next->prev = n.prev; else tail_ = n.prev;
        n.prev = n.next = nullptr;
    }
    /// Moves every node of `other` to the end of this list.
    void splice_back(WaitList& other) noexcept {
        if (other.empty()) return;
        if (tail_) { tail_->next = other.head_; other.head_->prev = tail_; } else { head_ = other.head_; }
        tail_ = other.tail_;
        other.head_ = other.tail_ = nullptr;
    }

private:
    WaitNode* head_ = nullptr;
    WaitNode* tail_ = nullptr;
};

/// Whoever resumes a task: a `block_on` call, an executor, or the async-io thread.
class Runner {
public:
    /// Called when `task` goes from idle to having ready nodes, with the task's lock held, from
    /// any thread (also the runner's own). Must make the runner call `TaskCore::run` for the task
    /// soon; must not take any task lock; must not throw.
    virtual void schedule(TaskCore& task) noexcept = 0;

protected:
    ~Runner() = default;
};

/// The scheduling state of one task (see the protocol at the top of this file).
///
/// Lifetime: owned by whatever owns the task's root coroutine; it must outlive every frame of the
/// task, and nobody may hold its lock when it is destroyed (the owner destroys it on the running
/// thread after the task completed or its frames were destroyed).
class TaskCore {
public:
    explicit TaskCore(Runner* runner) noexcept : runner_(runner) {}
    TaskCore(const TaskCore&) = delete;
    TaskCore& operator=(const TaskCore&) = delete;

    /// Makes `n` ready. The caller holds the lock of the wait list `n` was unlinked from (or `n`
    /// was never linked and belongs to the calling thread's running task). Any thread.
    void wake(WaitNode& n) noexcept {
        lock_.lock();
        n.state = NodeState::ready;
        ready_.push_back(n);
        if (!queued_) {
            queued_ = true;
            runner_->schedule(*this);
        }
        lock_.unlock();
    }

    /// Removes `n` from the ready list if it is there (the cancel half of the protocol). Only the
    /// thread that runs or owns the task.
    void cancel_ready(WaitNode& n) noexcept {
        lock_.lock();
        if (n.state == NodeState::ready) {
            ready_.erase(n);
            n.state = NodeState::idle;
        }
        lock_.unlock();
    }

    /// Resumes ready nodes, at most `budget` of them, on the calling thread, which becomes the
    /// task's running thread meanwhile (`current()` returns this task). Returns true if ready
    /// nodes remain (the task stays queued: the runner must call `run` again later), false if
    /// none remain: then the task has gone idle (the next wake schedules it again, possibly on
    /// another thread at once). Only the task's runner calls it. (A spawned task has its own
    /// step, Spawned::run_step in src/executor.cpp, which keeps its life-cycle flags under the
    /// same lock.)
    ASYNC_IO_API bool run(unsigned budget = ~0u);

    /// The task whose coroutine is running on this thread, or nullptr outside any runner.
    static TaskCore* current() noexcept { return current_; }

    /// Makes `t` the current task of this thread for the lifetime of the scope (for starting a
    /// root coroutine, whose first steps run before any node exists).
    class Scope {
    public:
        explicit Scope(TaskCore* t) noexcept : saved_(current_) { current_ = t; }
        ~Scope() { current_ = saved_; }
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;

    private:
        TaskCore* saved_;
    };

    Runner* runner() const noexcept { return runner_; }

protected:
    /// Consumes a `request_yield()` made on this thread by the node just resumed.
    ASYNC_IO_API static bool take_yield_request() noexcept;

    SpinLock lock_;
    bool queued_ = false;  // guarded by lock_: the runner has been told and not yet found it idle
    /// For a derived task type, guarded by lock_ (Spawned's life-cycle flags). Declared here to
    /// fill what would be padding: a spawned task's whole state takes 40 bytes.
    std::uint8_t derived_flags_ = 0;
    /// For a derived task type, used by one thread at a time as its protocol says (Spawned: set
    /// by the thread that destroys the frame, to keep the frame's reference for itself).
    std::uint8_t derived_own_ = 0;
    /// For a derived task type (Spawned's slot in its executor's table of live tasks).
    std::atomic<std::uint32_t> derived_index_{0};
    WaitList ready_;  // guarded by lock_

private:
    ASYNC_IO_API static thread_local TaskCore* current_;

    Runner* runner_;
};

/// The task for an awaiter that is suspending now: the running task of this thread, or, for a
/// coroutine that no runner of this library drives (a user's own coroutine type resumed from a
/// plain thread), the process-wide task that the async-io thread runs. Throws std::system_error
/// if that thread has to be started and cannot be: awaiters call it before linking anything, and
/// their await_suspend is not noexcept, so the exception reaches the awaiting coroutine.
ASYNC_IO_API TaskCore& task_for_suspend();

/// Makes the innermost `TaskCore::run` on this thread return after the node it is resuming now
/// suspends, so that its runner looks at other tasks and at the reactor first (`yield_now`).
ASYNC_IO_API void request_yield() noexcept;

}  // namespace async_io::detail
