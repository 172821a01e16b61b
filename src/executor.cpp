// Executors: the run queue, sleeping run loops, and the life of a spawned task.
//
// A spawned task (Spawned) is a TaskCore whose runner is its executor: when it becomes ready,
// `schedule` puts it on the executor's queue and wakes one sleeping run loop. A run loop pops it
// and calls `run_step`, which claims the task (flag_running) under the task's own lock
// (TaskCore::lock_, which guards its ready list and its life-cycle flags alike), resumes its
// ready nodes, and afterwards looks at what happened meanwhile: completed (wake the joiner),
// cancelled by its JoinHandle from another thread (destroy the frame now, on this thread), or
// still ready (queue it again at the back).
//
// Lock order: a task's lock, then its joiner's task's lock (the join slot is a wait list guarded
// by the joined task's lock), then an executor's lock, then a sleeping run loop's task's lock.
//
// References to the block (FrameHeader::refs): the frame, the live table, the JoinHandle, and the
// queue. The queue's is taken once, at spawn, and kept while the task goes idle and is queued
// again (so a wake takes none, and going idle drops none): whoever finds the task idle
// (queued_ false) when it ends it, takes that reference over and sets queued_ for good (so
// nothing queues it again); a run loop drops it when a step ends the task.
//
// A JoinHandle destroyed on another thread cancels: if the task is running, it only sets
// flag_cancelled (the runner destroys the frame when the step ends); if not, it claims the task
// itself and destroys the frame on its own thread. Either way the frame is destroyed by exactly
// one thread, while no other thread resumes it, and every awaiter in it deregisters itself
// synchronously (include/async_io/detail/wait.hpp).
#include <async_io/executor.hpp>

#include "prefetch.hpp"
#include "reactor.hpp"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <new>
#include <stdexcept>

namespace async_io::detail {

namespace {
constexpr unsigned task_budget = 32;  // nodes one task may resume per step
constexpr std::size_t loop_batch = 64;  // tasks per run-loop round before it yields
}  // namespace

// ---- Spawned ------------------------------------------------------------------------------------

static_assert(sizeof(Spawned) <= sizeof(FrameHeader::task_state), "Spawned must fit in a Task frame's header");
static_assert(alignof(Spawned) <= 16);

Spawned::Spawned(ExecutorState& ex) noexcept : TaskCore(&ex) {
    queued_ = true;  // its first step is queued by ExecutorState::spawn
    derived_index_.store(not_live, std::memory_order_relaxed);
}

Spawned* Spawned::create(ExecutorState& ex, void* frame_address) noexcept {
    FrameHeader* h = frame_header(frame_address);
    assert(h->magic == FrameHeader::magic_value && h->refs.load() == 0 &&
           "spawn: not an unspawned Task frame (coroutine_handle::address() must be the frame block)");
    auto* s = ::new (static_cast<void*>(h->task_state)) Spawned(ex);
    h->refs.store(4, std::memory_order_relaxed);  // the frame, the live table, the JoinHandle, the queue
    return s;
}

ExecutorState& Spawned::executor() const noexcept { return static_cast<ExecutorState&>(*runner()); }

void Spawned::release(std::uint32_t n) noexcept {
    FrameHeader* h = header();
    if (h->refs.fetch_sub(n, std::memory_order_acq_rel) == n) {
        this->~Spawned();
        free_frame_block(h);
    }
}

void release_spawned_frame(FrameHeader* h) noexcept {
    Spawned* s = std::launder(reinterpret_cast<Spawned*>(h->task_state));
    if (!s->frame_ref_kept()) s->release();
}

bool Spawned::join_or_link(WaitNode& n) {
    lock_.lock();
    if (has(flag_completed | flag_frame_gone)) {
        lock_.unlock();
        return true;
    }
    n.state = NodeState::waiting;
    joiner_ = &n;
    lock_.unlock();
    return false;
}

void Spawned::join_unlink(WaitNode& n) noexcept {
    lock_.lock();
    if (joiner_ == &n) {
        joiner_ = nullptr;
        n.state = NodeState::idle;
        lock_.unlock();
        return;
    }
    lock_.unlock();
    n.task->cancel_ready(n);
}

void Spawned::destroy_frame() noexcept {
    lock_.lock();
    const bool claimed = claim_frame_locked();
    lock_.unlock();
    if (claimed) destroy_claimed_frame();
}

void Spawned::destroy_claimed_frame(bool keep_frame_ref) noexcept {
    // Read first: once out of the live table the executor may be gone.
    const bool live = live_index() != not_live;
    // Its awaiters deregister themselves (cancel_ready takes lock_, which is free). Drops the
    // frame's reference (release_spawned_frame) unless kept; the caller holds another. Only
    // this thread reads derived_own_ (the frame's operator delete, called from here).
    derived_own_ = keep_frame_ref;
    frame().destroy();
    if (live) executor().unlink_live(*this);
}

void Spawned::cancel() noexcept {
    lock_.lock();
    derived_flags_ |= flag_handle_gone;
    if (has(flag_completed | flag_frame_gone)) {
        lock_.unlock();
        destroy_frame();  // a no-op if gone; else the unclaimed result
        release();
        return;
    }
    derived_flags_ |= flag_cancelled;
    if (has(flag_running)) {  // its runner destroys the frame when the current step ends
        lock_.unlock();
        release();
        return;
    }
    derived_flags_ |= flag_running | flag_frame_gone;  // claim it: no runner resumes it from now on
    const bool idle = take_idle_queue_ref_locked();
    lock_.unlock();
    destroy_claimed_frame();
    lock_.lock();
    derived_flags_ &= static_cast<std::uint8_t>(~flag_running);
    lock_.unlock();
    release(idle ? 2 : 1);  // the handle's, and the queue's if it was idle
}

void Spawned::cancel_by_executor() noexcept {
    lock_.lock();
    if (has(flag_completed | flag_frame_gone)) {
        lock_.unlock();
        return;
    }
    derived_flags_ |= flag_cancelled | flag_running | flag_frame_gone;
    const bool idle = take_idle_queue_ref_locked();
    lock_.unlock();
    destroy_claimed_frame();
    lock_.lock();
    derived_flags_ &= static_cast<std::uint8_t>(~flag_running);
    if (WaitNode* j = std::exchange(joiner_, nullptr)) j->task->wake(*j);
    lock_.unlock();
    if (idle) release();  // the caller holds a reference of its own
}

bool Spawned::take_idle_queue_ref_locked() noexcept {
    const bool idle = !queued_;
    queued_ = true;
    // Off the executor's count now, while the task is live (once it leaves the live table the
    // executor may be gone). Lock order: this task's lock, then its executor's.
    if (idle) executor().drop_queue_refs(1);
    return idle;
}

void Spawned::detach() noexcept {
    lock_.lock();
    derived_flags_ |= flag_handle_gone;
    const bool done = has(flag_completed);
    lock_.unlock();
    if (done) destroy_frame();
    release();
}

void Spawned::finish_join() noexcept {
    lock_.lock();
    derived_flags_ |= flag_handle_gone;
    const bool claimed = claim_frame_locked();
    lock_.unlock();
    if (claimed) destroy_claimed_frame(true);
    release(claimed ? 2 : 1);  // the handle's, and the frame's if this thread destroyed it
}

// One step, with the task's lock taken twice when it resumes one node: once to claim the task
// and take its first ready node, once at the end to take the next (none) and settle what
// happened meanwhile. The task stays queued through the whole step: a wake meanwhile only
// appends to its ready list, so no other runner can start it while this one still reads its
// frame and its flags; it goes idle (schedulable again) only in the last critical section.
Spawned::StepEnd Spawned::run_step(unsigned budget) {
    lock_.lock();
    if (has(flag_cancelled | flag_frame_gone | flag_completed)) {
        lock_.unlock();
        return StepEnd::done;  // it stays queued for good: nothing may run it again
    }
    const bool first = !has(flag_started);
    derived_flags_ |= flag_running | flag_started;
    WaitNode* n = nullptr;
    if (!first && (n = ready_.pop_front())) n->state = NodeState::idle;
    lock_.unlock();

    {
        Scope scope(this);
        unsigned resumed = 0;
        bool yielded = false;
        if (first) {
            frame().resume();
        } else if (n) {
            n->ready();
        }
        if (first || n) {
            ++resumed;
            yielded = take_yield_request();
        }
        lock_.lock();
        while (!yielded && resumed < budget && (n = ready_.pop_front())) {
            n->state = NodeState::idle;
            lock_.unlock();
            n->ready();
            ++resumed;
            yielded = take_yield_request();
            lock_.lock();
        }
    }
    // lock_ held
    derived_flags_ &= static_cast<std::uint8_t>(~flag_running);
    if (frame().done()) {
        derived_flags_ |= flag_completed;  // it stays queued for good: nothing can wake a finished frame
        if (WaitNode* j = std::exchange(joiner_, nullptr)) j->task->wake(*j);
        // Nobody wants the result (detached, or the JoinHandle destroyed): claim the frame now.
        const bool destroy = has(flag_handle_gone) && claim_frame_locked();
        lock_.unlock();
        // Leave the live table first: from here on the executor may be destroyed before the
        // JoinHandle takes the result (and destroys the frame). The table's reference goes to
        // the run loop, which drops it with the queue's in one atomic operation (dropping it
        // here stalled on the store into the table, a cache miss with many tasks live).
        const bool was_live = executor().take_live(*this);
        if (destroy) destroy_claimed_frame();
        return was_live ? StepEnd::finished : StepEnd::done;
    }
    if (has(flag_cancelled)) {
        const bool destroy = claim_frame_locked();
        lock_.unlock();
        if (destroy) destroy_claimed_frame();
        return StepEnd::done;
    }
    const bool more = !ready_.empty();
    if (!more) queued_ = false;  // the queue's reference stays, for the next wake
    lock_.unlock();
    return more ? StepEnd::requeue : StepEnd::idle;
}

// ---- ExecutorState ------------------------------------------------------------------------------

ExecutorState::~ExecutorState() {
    // Cancelling a task may cancel others (its frame held their JoinHandles): scan until a whole
    // pass finds no live task.
    for (bool found = true; found;) {
        found = false;
        for (std::size_t i = 0;; ++i) {
            lock_.lock();
            while (i < live_.size() && !live_[i]) ++i;
            if (i == live_.size()) {
                lock_.unlock();
                break;
            }
            Spawned* t = live_[i];
            t->add_ref();
            lock_.unlock();
            found = true;
            t->cancel_by_executor();
            unlink_live(*t);
            t->release();
        }
    }
    lock_.lock();
    const std::unique_ptr<Spawned*[]> ring = std::move(ring_);
    const std::size_t mask = std::exchange(ring_size_, 0) - 1;
    const std::size_t head = ring_head_, tail = ring_tail_;
    ring_head_ = ring_tail_ = 0;
    lock_.unlock();
    for (std::size_t i = head; i != tail; ++i) ring[i & mask]->release();
}

void ExecutorState::grow_ring_locked() {
    const std::size_t size = ring_size_ == 0 ? 64 : 2 * ring_size_;
    std::unique_ptr<Spawned*[]> bigger(new Spawned*[size]);  // default-initialised: not zeroed
    std::size_t n = 0;
    for (std::size_t i = ring_head_; i != ring_tail_; ++i) bigger[n++] = ring_[i & (ring_size_ - 1)];
    ring_ = std::move(bigger);
    ring_size_ = size;
    ring_head_ = 0;
    ring_tail_ = n;
}

void ExecutorState::drop_queue_refs(std::size_t n) noexcept {
    lock_.lock();
    queue_refs_ -= n;
    lock_.unlock();
}

Spawned* ExecutorState::spawn(std::coroutine_handle<> frame) {
    lock_.lock();
    // Room in the ring for this task too (see ring_): before anything else, as it may throw.
    if (queue_refs_ >= ring_size_) {
        try {
            grow_ring_locked();
        } catch (...) {
            lock_.unlock();
            throw;  // the Task still owns the frame and destroys it
        }
    }
    std::uint32_t index;
    if (!free_live_.empty()) {
        index = free_live_.back();
        free_live_.pop_back();
    } else {
        try {
            if (live_.size() >= Spawned::not_live) throw std::length_error("async_io: too many live tasks");
            live_.push_back(nullptr);
            // Room for every slot to be free at once: unlink_live (noexcept) never allocates.
            free_live_.reserve(live_.capacity());
        } catch (...) {
            lock_.unlock();
            throw;  // the Task still owns the frame and destroys it
        }
        index = static_cast<std::uint32_t>(live_.size() - 1);
    }
    // Nobody else knows the task yet: it enters the live table and the queue (its first step)
    // under this one lock.
    Spawned* t = Spawned::create(*this, frame.address());
    t->set_live_index(index);
    live_[index] = t;
    ++live_count_;
    ++queue_refs_;
    enqueue_locked(*t);
    lock_.unlock();
    return t;
}

void ExecutorState::unlink_live(Spawned& t) noexcept {
    if (take_live(t)) t.release();  // the live table's reference
}

bool ExecutorState::take_live(Spawned& t) noexcept {
    lock_.lock();
    const std::uint32_t index = t.live_index();
    if (index == Spawned::not_live) {
        lock_.unlock();
        return false;
    }
    t.set_live_index(Spawned::not_live);
    live_[index] = nullptr;
    free_live_.push_back(index);
    --live_count_;
    lock_.unlock();
    return true;
}

void ExecutorState::enqueue_locked(Spawned& t) noexcept {
    assert(ring_tail_ - ring_head_ < ring_size_ && "the ring has room for every task holding a queue reference");
    ring_[ring_tail_++ & (ring_size_ - 1)] = &t;
    if (WaitNode* n = sleepers_.pop_front()) n->task->wake(*n);
}

void ExecutorState::enqueue(Spawned& t) noexcept {
    lock_.lock();
    enqueue_locked(t);
    lock_.unlock();
}

void ExecutorState::schedule(TaskCore& t) noexcept {
    enqueue(static_cast<Spawned&>(t));  // with the queue's reference, which it kept while idle
}

// Loading a queued task's memory ahead of its step (a prefetch never faults, so it does not
// matter if another runner takes the task, or frees it, meanwhile): its state, and the first
// lines of its frame (small frames' awaiters, the wait node its step pops first).
static void prefetch_task(const Spawned* t) noexcept { prefetch_for_write(t); }
static void prefetch_frame(const Spawned* t) noexcept {
    const auto* frame = static_cast<const unsigned char*>(t->frame_address());
    prefetch_for_write(frame);
    prefetch_for_write(frame + 64);
}

std::size_t ExecutorState::tick(std::size_t max) {
    bool drained = false;
    return run_tasks(max, drained);
}

std::size_t ExecutorState::run_tasks(std::size_t max, bool& drained) {
    // A LocalExecutor's run loop takes up to batch_max tasks per locked section; an Executor's
    // takes one at a time, leaving the others to other threads.
    constexpr std::size_t batch_max = 16;
    // How many tasks ahead of the one it runs a batch starts loading their state.
    constexpr std::size_t lookahead = 4;
    Spawned* batch[batch_max];
    std::size_t ran = 0;
    std::size_t dropped = 0;  // queue references dropped since the last locked section
    while (ran < max) {
        const std::size_t want = std::min(single_runner_ ? batch_max : std::size_t{1}, max - ran);
        lock_.lock();
        queue_refs_ -= dropped;
        dropped = 0;
        const std::size_t queued = ring_tail_ - ring_head_;
        const std::size_t n = queued < want ? queued : want;
        const std::size_t mask = ring_size_ - 1;
        for (std::size_t k = 0; k < n; ++k) batch[k] = ring_[(ring_head_ + k) & mask];
        ring_head_ += n;
        Spawned* const next = queued > n ? ring_[ring_head_ & mask] : nullptr;
        // Only for prefetching a slot of the live table (below): if another thread's spawn
        // moves the table meanwhile, a prefetch of the old one is harmless.
        Spawned* const* live = live_.data();
        lock_.unlock();
        if (n < want) drained = true;  // run these, then stop: the run loop waits for more work
        if (n == 0) break;
        if (n > 1) {
            for (std::size_t k = 0; k < n && k < lookahead; ++k) prefetch_task(batch[k]);
            prefetch_frame(batch[0]);
        } else if (next) {
            prefetch_task(next);  // most likely this thread's next task
        }
        std::size_t i = 0;
        try {
            for (; i < n; ++i) {
                Spawned* t = batch[i];
                if (i + lookahead < n) prefetch_task(batch[i + lookahead]);
                if (i + 1 < n) prefetch_frame(batch[i + 1]);
                // If this step completes the task, it clears the task's slot in the live table:
                // a cache miss with many tasks live, which the atomic operation after the store
                // would wait for. t's state is in cache by now (prefetched above).
                if (const std::uint32_t index = t->live_index(); index != Spawned::not_live)
                    prefetch_for_write(live + index);
                switch (t->run_step(task_budget)) {
                    case Spawned::StepEnd::requeue: enqueue(*t); break;  // to the back, with its reference
                    case Spawned::StepEnd::idle: break;  // the queue's reference stays for the next wake
                    case Spawned::StepEnd::done:
                        t->release();
                        ++dropped;
                        break;
                    case Spawned::StepEnd::finished:
                        t->release(2);  // the queue's and the live table's
                        ++dropped;
                        break;
                }
            }
        } catch (...) {
            // Not expected (a step catches what its coroutines throw), but never lose the tasks
            // not run yet: back to the front of the queue, in order.
            lock_.lock();
            queue_refs_ -= dropped;
            const std::size_t m = ring_size_ - 1;
            for (std::size_t k = n; k-- > i + 1;) ring_[--ring_head_ & m] = batch[k];
            lock_.unlock();
            throw;
        }
        ran += n;
        if (drained) break;
    }
    if (dropped) drop_queue_refs(dropped);
    return ran;
}

bool ExecutorState::idle() {
    lock_.lock();
    const bool e = live_count_ == 0;
    lock_.unlock();
    return e;
}

ExecutorState::WaitForWork::~WaitForWork() {
    if (!linked_) return;
    ex_.lock_.lock();
    if (node_.state == NodeState::waiting) {
        ex_.sleepers_.erase(node_);
        node_.state = NodeState::idle;
        ex_.lock_.unlock();
        return;
    }
    ex_.lock_.unlock();
    node_.task->cancel_ready(node_);
}

bool ExecutorState::WaitForWork::await_suspend(std::coroutine_handle<> h) {
    node_.handle = h;
    node_.task = &task_for_suspend();
    ex_.lock_.lock();
    if (!ex_.queue_empty_locked()) {
        ex_.lock_.unlock();
        return false;
    }
    node_.state = NodeState::waiting;
    ex_.sleepers_.push_back(node_);
    linked_ = true;
    slept_ = true;
    ex_.lock_.unlock();
    return true;
}

Task<void> ExecutorState::run_loop() {
    // When the queue runs dry the loop first polls the reactor itself (without blocking), and
    // sleeps only if that brought no work: readiness that is already there (the peer of a
    // local connection answered meanwhile) then reaches its task without the loop suspending
    // and its runner's task being woken and resumed in between (a sixth of the instructions
    // of a ping-pong round trip). Where the poll finds nothing (the peers are far away) it is
    // a system call more than the sleep makes, so after each fruitless one the loop sleeps
    // without polling the next 1, 2, 4 ... 64 times its queue runs dry (the first of them at
    // once): about one extra epoll_wait per 64 sleeps there.
    constexpr std::uint32_t max_poll_backoff = 64;
    std::size_t since_poll = 0;    // tasks run since the loop last let its runner go on (yield, sleep)
    bool polled = false;           // this round follows an inline poll
    std::uint32_t backoff = 0;     // sleeps to skip the poll on after the next fruitless one
    std::uint32_t skip_polls = 0;  // sleeps left to skip the poll on
    for (;;) {
        bool drained = false;
        const std::size_t ran = run_tasks(loop_batch - since_poll, drained);
        since_poll += ran;
        if (polled) {
            polled = false;
            if (ran != 0) {
                backoff = 0;
            } else {
                backoff = backoff == 0 ? 1 : std::min(2 * backoff, max_poll_backoff);
                skip_polls = backoff;
            }
        }
        if (since_poll == loop_batch) {
            since_poll = 0;
            co_await yield_now();  // let the runner poll the reactor: no starvation of I/O
        } else if (drained) {
            if (skip_polls == 0) {
                if (poll_reactor_from_task()) {
                    polled = true;
                    continue;
                }
            } else {
                --skip_polls;
            }
            // Wait for work, unless some came since (WaitForWork looks again under the lock).
            WaitForWork w(*this);
            co_await w;
            if (w.slept()) since_poll = 0;
        }
    }
}

}  // namespace async_io::detail
