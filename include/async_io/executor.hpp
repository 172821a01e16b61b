// Executors: LocalExecutor and the thread-safe Executor, spawn and JoinHandle.
#pragma once

#include <async_io/block_on.hpp>
#include <async_io/combinators.hpp>
#include <async_io/detail/awaitable.hpp>
#include <async_io/detail/export.hpp>
#include <async_io/detail/wait.hpp>
#include <async_io/task.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

namespace async_io {

template <class T>
class JoinHandle;
class LocalExecutor;

namespace detail {


class ExecutorState;

/// One spawned task: its scheduling core and the state its JoinHandle and its executor share.
/// It lives in the header of the spawned Task's own frame block (FrameHeader, task.hpp), so a
/// spawned task is one allocation. See src/executor.cpp for the protocol.
///
/// Lifetime: the block is reference counted (FrameHeader::refs): the frame itself, the
/// executor's list of live tasks, the run queue (from spawn until a step ends the task, kept
/// while it idles), and the JoinHandle each hold a reference; the last one frees the block. The
/// frame is destroyed exactly once: by the runner after the task completed and nobody wants the
/// result, by the JoinHandle after it took the result, or on cancellation (JoinHandle destroyed,
/// executor destroyed).
class ASYNC_IO_API Spawned : public TaskCore {
public:
    /// Builds the state in the header of `frame`'s block (a Task frame that has not started),
    /// queued for its first step and holding four references: the frame's, the live table's,
    /// the JoinHandle's and the run queue's. The caller puts it in both (ExecutorState::spawn).
    static Spawned* create(ExecutorState& ex, void* frame_address) noexcept;
    Spawned(const Spawned&) = delete;
    Spawned& operator=(const Spawned&) = delete;

    void add_ref() noexcept { header()->refs.fetch_add(1, std::memory_order_relaxed); }
    /// Drops `n` references to the block (one atomic operation), freeing it with the last.
    void release(std::uint32_t n = 1) noexcept;

    // JoinHandle side (any thread).
    /// True if completed; else links `n` to be woken at completion (false).
    bool join_or_link(WaitNode& n);
    void join_unlink(WaitNode& n) noexcept;
    /// After a completed join only (the wake ordered it after the last write of the flags).
    bool cancelled() const noexcept { return derived_flags_ & flag_cancelled; }
    /// Destroys the frame if the task is idle or done, or asks its runner to (JoinHandle's
    /// destructor, Executor's destructor).
    void cancel() noexcept;
    /// The executor is being destroyed: destroy the frame (if not done) and fail the join.
    void cancel_by_executor() noexcept;
    void detach() noexcept;
    /// After join: destroy the frame (the result was taken) and drop the handle's reference.
    void finish_join() noexcept;

    // Runner side.
    /// How a step ended, for the run loop that holds the queue's reference.
    enum class StepEnd : std::uint8_t {
        requeue,   ///< still ready: queue it again (it stays queued, the reference goes along)
        idle,      ///< nothing ready: the queue's reference stays with the task for its next wake
        done,      ///< cancelled or gone: drop the queue's reference
        finished,  ///< it completed and left the live table: drop the queue's and the table's
    };
    /// Runs one step of the task on this thread (its first, or up to `budget` ready nodes).
    StepEnd run_step(unsigned budget);

    /// The spawned Task's frame (coroutine_handle<>::address()); valid until the frame is destroyed.
    void* frame_address() const noexcept {
        return const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>(this)) + sizeof(FrameHeader);
    }

    /// Its slot in the executor's table of live tasks (written under the executor's lock), or
    /// `not_live` once it left the table (completion, cancellation, or the executor's
    /// destructor): from then on the task never touches its executor again, so a JoinHandle may
    /// outlive the executor.
    static constexpr std::uint32_t not_live = UINT32_MAX;
    std::uint32_t live_index() const noexcept { return derived_index_.load(std::memory_order_acquire); }
    void set_live_index(std::uint32_t i) noexcept { derived_index_.store(i, std::memory_order_release); }

private:
    explicit Spawned(ExecutorState& ex) noexcept;
    ~Spawned() = default;
    friend void release_spawned_frame(FrameHeader* h) noexcept;
    bool frame_ref_kept() const noexcept { return derived_own_ != 0; }
    FrameHeader* header() const noexcept {
        return reinterpret_cast<FrameHeader*>(const_cast<Spawned*>(this));  // task_state is at offset 0
    }
    std::coroutine_handle<> frame() const noexcept { return std::coroutine_handle<>::from_address(frame_address()); }
    ExecutorState& executor() const noexcept;
    void destroy_frame() noexcept;          // once (a no-op if gone)
    /// lock_ held: sets flag_frame_gone; true if this caller set it, and so must destroy the frame.
    bool claim_frame_locked() noexcept {
        const bool claimed = !has(flag_frame_gone);
        derived_flags_ |= flag_frame_gone;
        return claimed;
    }
    /// After claim_frame_locked() returned true. Destroying the frame drops its reference,
    /// unless `keep_frame_ref`: then the caller takes it over (to drop it with its own in one
    /// atomic operation).
    void destroy_claimed_frame(bool keep_frame_ref = false) noexcept;
    /// Ending the task (lock_ held): if it is idle, nothing will queue it again, the executor
    /// stops counting its queue reference, and the caller takes that reference over (returns
    /// true: it drops it); if queued, a run loop drops it.
    bool take_idle_queue_ref_locked() noexcept;
    bool has(std::uint8_t f) const noexcept { return derived_flags_ & f; }

    // Bits of derived_flags_ (TaskCore), guarded by lock_.
    static constexpr std::uint8_t flag_started = 1;      // its first step has run (or been claimed)
    static constexpr std::uint8_t flag_running = 2;      // a thread is running it (or destroying its frame)
    static constexpr std::uint8_t flag_completed = 4;
    static constexpr std::uint8_t flag_cancelled = 8;
    static constexpr std::uint8_t flag_handle_gone = 16; // detached or the JoinHandle destroyed
    static constexpr std::uint8_t flag_frame_gone = 32;

    WaitNode* joiner_ = nullptr;  // guarded by lock_
};

/// The state of an executor, shared by LocalExecutor and Executor: the run queue, the sleeping
/// run loops, and the live tasks. Thread-safe (a task may be woken from any thread).
class ASYNC_IO_API ExecutorState final : public Runner {
public:
    /// `single_runner`: only one thread ever runs it (LocalExecutor), so a run loop may take
    /// several queued tasks at once without holding back work another thread could do.
    explicit ExecutorState(bool single_runner) noexcept : single_runner_(single_runner) {}
    ExecutorState(const ExecutorState&) = delete;
    ExecutorState& operator=(const ExecutorState&) = delete;
    ~ExecutorState();  // cancels every live task

    /// Takes over `frame` (an unstarted Task frame) as a spawned task and queues its first step.
    /// Throws std::bad_alloc (the caller still owns the frame then).
    Spawned* spawn(std::coroutine_handle<> frame);
    void schedule(TaskCore& t) noexcept override;

    /// Runs up to `max` queued tasks on this thread; returns how many it ran.
    std::size_t tick(std::size_t max);
    bool idle();  // no live task

    /// Suspends the run loop until the queue is not empty (it does not suspend if it is not:
    /// await_suspend looks under the executor's lock, so await_ready need not take it first).
    class WaitForWork {
    public:
        explicit WaitForWork(ExecutorState& ex) noexcept : ex_(ex) {}
        WaitForWork(const WaitForWork&) = delete;
        WaitForWork& operator=(const WaitForWork&) = delete;
        ~WaitForWork();
        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> h);
        // Resumed through its node (a wake took it off sleepers_ and out of the task's ready
        // list), or never suspended: either way it is in no list now.
        void await_resume() noexcept { linked_ = false; }
        /// Whether it suspended (the runner then polled the reactor before it resumed).
        bool slept() const noexcept { return slept_; }

    private:
        ExecutorState& ex_;
        WaitNode node_;
        bool linked_ = false;
        bool slept_ = false;
    };

    Task<void> run_loop();

    void unlink_live(Spawned& t) noexcept;
    /// Takes `t` out of the live table without dropping the table's reference, which passes to
    /// the caller if it returns true (false: it was not in the table).
    bool take_live(Spawned& t) noexcept;
    /// Appends `t` (whose reference the queue takes over) and wakes a sleeping run loop.
    void enqueue(Spawned& t) noexcept;
    /// `n` tasks gave up the queue's reference outside a run loop (ended while idle).
    void drop_queue_refs(std::size_t n) noexcept;

private:
    friend class WaitForWork;
    void enqueue_locked(Spawned& t) noexcept;  // lock_ held
    /// tick's body; `drained` says whether it stopped because it found the queue empty.
    std::size_t run_tasks(std::size_t max, bool& drained);
    bool queue_empty_locked() const noexcept { return ring_head_ == ring_tail_; }
    void grow_ring_locked();                   // may throw std::bad_alloc

    SpinLock lock_;
    const bool single_runner_;
    // The run queue: a ring of task pointers rather than a list linked through the tasks, so
    // that a run loop takes several at once and sees the next ones without touching their
    // memory (it prefetches them: woken timer tasks sit in frames scattered over memory). It
    // never fills up: a task is queued at most once at a time, and only while it holds the
    // queue's reference, and spawn grows the ring to hold every task that does (queue_refs_).
    // Its storage is not value-initialised: growing it to hold a million spawned tasks would
    // otherwise write every slot twice (zeroes, then the copy).
    std::unique_ptr<Spawned*[]> ring_;
    std::size_t ring_size_ = 0;    // a power of two (or 0: no storage yet)
    std::size_t ring_head_ = 0;    // pops at ring_[ring_head_ & mask]; both only grow
    std::size_t ring_tail_ = 0;
    std::size_t queue_refs_ = 0;   // tasks holding the queue's reference (an upper bound)
    WaitList sleepers_;
    // The live tasks, for the destructor to cancel: a table with a free list rather than a
    // linked list, so that a task leaves it without touching other tasks' memory (1M tasks
    // completing in random order would take two cache misses each, in scattered frames).
    std::vector<Spawned*> live_;
    std::vector<std::uint32_t> free_live_;
    std::size_t live_count_ = 0;
};

/// The common interface of LocalExecutor and Executor.
template <class Derived>
class ExecutorBase {
public:
    /// Starts `task` on this executor and returns the handle to its result.
    ///
    /// - The task first runs when a thread runs the executor (`run`), never inline in spawn.
    /// - It is resumed only by threads running this executor, one thread at a time.
    /// - Any thread may call spawn, also from inside a task of this or another executor.
    /// - Memory: the task's frame and its scheduling state are one allocation (see FrameHeader in
    ///   task.hpp), freed when the task has completed and its result was taken (or discarded).
    ///   A completed task's locals are gone, but its by-value parameters live as long as its
    ///   frame, as with every C++ coroutine: a socket passed by value stays open until the
    ///   JoinHandle is awaited, detached or destroyed. Move such a parameter into a local at the
    ///   start of the body if the peer must see it closed when the task ends.
    template <class T>
    JoinHandle<T> spawn(Task<T> task) {
        detail::Spawned* s = state_->spawn(task.handle());  // may throw: `task` still owns the frame
        (void)task.release();
        return JoinHandle<T>(s);
    }
    /// Spawns any other awaitable (a Timer, `timeout(...)`, an I/O operation): it is moved into
    /// a task of its own that awaits it.
    template <class A>
        requires(awaitable<A> && !std::is_reference_v<A> && !is_task<std::remove_cvref_t<A>>::value)
    JoinHandle<await_result_t<A>> spawn(A aw) {
        return spawn(await_task<await_result_t<A>, A>(std::move(aw)));
    }

    /// Runs the executor's tasks on the calling thread until `aw` completes, then yields its
    /// result (or rethrows). Use it as `block_on(ex.run(main()))`; several threads may do so at
    /// once for an Executor. Tasks still pending when `aw` completes stay in the executor.
    /// When the queue runs dry, the thread first polls the reactor without blocking (if it is
    /// in a `block_on` and no other thread drives the reactor), so that readiness already
    /// there reaches its tasks at once; if that brought no work it waits for a task to wake
    /// (driving the reactor from its `block_on` if nobody else does), and skips the poll the
    /// next few times (up to 64) the queue runs dry. After every 64 tasks it lets the reactor
    /// poll for I/O, so that always-ready tasks cannot starve I/O and timers.
    template <class A>
        requires awaitable<A&&>
    Task<await_result_t<A&&>> run(A&& aw) {
        auto r = co_await race(std::forward<A>(aw), state_->run_loop());
        co_return detail::unstore<await_result_t<A&&>>(std::move(std::get<0>(r)));
    }

    /// Runs one queued task step if there is one; true if it ran one. For user-written loops.
    bool try_tick() { return state_->tick(1) != 0; }
    /// True if no spawned task is alive (all completed or cancelled).
    bool is_empty() { return state_->idle(); }

protected:
    ExecutorBase() : state_(std::make_unique<ExecutorState>(std::is_same_v<Derived, LocalExecutor>)) {}
    std::unique_ptr<ExecutorState> state_;
};

}  // namespace detail

/// The handle to a spawned task's result.
///
/// - `co_await handle` completes when the task finishes and yields its result or rethrows its
///   exception; it throws std::system_error(std::errc::operation_canceled) if the task was
///   cancelled (its executor was destroyed). Awaiting resumes the awaiter on its own runner.
/// - Destroying a JoinHandle cancels the task: its frames are destroyed at once if no thread is
///   running it (their awaiters deregister synchronously), or by its runner as soon as it next
///   suspends. `detach()` lets the task run on; its result is then discarded.
/// - Destroying the coroutine that awaits a handle unlinks it at once (the task runs on).
template <class T>
class [[nodiscard]] JoinHandle {
public:
    JoinHandle() noexcept = default;
    JoinHandle(JoinHandle&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    JoinHandle& operator=(JoinHandle&& o) noexcept {
        if (this != &o) {
            reset();
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    ~JoinHandle() { reset(); }

    /// Lets the task run to completion without a handle.
    void detach() noexcept {
        if (s_) std::exchange(s_, nullptr)->detach();
    }
    explicit operator bool() const noexcept { return s_ != nullptr; }

    class Awaiter {
    public:
        explicit Awaiter(JoinHandle& j) noexcept : j_(j) {}
        Awaiter(const Awaiter&) = delete;
        Awaiter& operator=(const Awaiter&) = delete;
        ~Awaiter() {
            if (linked_) j_.s_->join_unlink(node_);
        }
        bool await_ready() const noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> h) {
            node_.handle = h;
            node_.task = &detail::task_for_suspend();
            linked_ = true;  // before linking: once linked, the coroutine may run elsewhere
            if (!j_.s_->join_or_link(node_)) return true;
            linked_ = false;
            return false;
        }
        T await_resume() {
            linked_ = false;
            detail::Spawned* s = std::exchange(j_.s_, nullptr);
            struct Finish {
                detail::Spawned* s;
                ~Finish() { s->finish_join(); }
            } finish{s};
            if (s->cancelled())
                throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                                        "JoinHandle: the task was cancelled");
            return Task<T>::handle_type::from_address(s->frame_address()).promise().take();
        }

    private:
        JoinHandle& j_;
        detail::WaitNode node_;
        bool linked_ = false;
    };
    /// Await the result (once).
    Awaiter operator co_await() & noexcept { return Awaiter{*this}; }
    Awaiter operator co_await() && noexcept { return Awaiter{*this}; }

private:
    template <class>
    friend class detail::ExecutorBase;
    explicit JoinHandle(detail::Spawned* s) noexcept : s_(s) {}
    void reset() noexcept {
        if (s_) std::exchange(s_, nullptr)->cancel();
    }

    detail::Spawned* s_ = nullptr;
};

/// An executor whose tasks run on the one thread that runs it (`block_on(ex.run(...))`); wakes
/// may come from any thread. Destroying it destroys every task it still holds (cancelling them);
/// do that on the thread that ran it, when it is not running.
class LocalExecutor : public detail::ExecutorBase<LocalExecutor> {
public:
    LocalExecutor() = default;
};

/// A thread-safe executor: `spawn` from any thread; `run` from any number of threads at once,
/// each of which runs tasks from the shared queue and drives the reactor from its `block_on`
/// when it can (as smol's executor does with async-io). A task runs on one thread at a time and
/// only on threads running this executor. Destroying it destroys every task it still holds; do
/// that when no thread runs it.
class Executor : public detail::ExecutorBase<Executor> {
public:
    Executor() = default;
};

}  // namespace async_io
