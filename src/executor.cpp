// Executors: the run queue, sleeping run loops, and the life of a spawned task.
//
// A spawned task (Spawned) is a TaskCore whose runner is its executor: when it becomes ready,
// `schedule` puts it on the executor's queue (taking a reference) and wakes one sleeping run
// loop. A run loop pops it and calls `run_step`, which claims the task (`running_`) under the
// task's state lock, resumes its ready nodes, and afterwards looks at what happened meanwhile:
// completed (wake the joiner), cancelled by its JoinHandle from another thread (destroy the
// frame now, on this thread), or still ready (queue it again at the back).
//
// A JoinHandle destroyed on another thread cancels: if the task is running, it only sets
// `cancelled_` (the runner destroys the frame when the step ends); if not, it claims the task
// itself and destroys the frame on its own thread. Either way the frame is destroyed by exactly
// one thread, while no other thread resumes it, and every awaiter in it deregisters itself
// synchronously (include/async_io/detail/wait.hpp).
#include <async_io/executor.hpp>

namespace async_io::detail {

namespace {
constexpr unsigned task_budget = 32;  // nodes one task may resume per step
constexpr std::size_t loop_batch = 64;  // tasks per run-loop round before it yields
}  // namespace

// ---- Spawned ------------------------------------------------------------------------------------

Spawned::Spawned(ExecutorState& ex, std::coroutine_handle<> frame) noexcept
    : TaskCore(&ex), ex_(ex), frame_(frame) {
    start_node.task = this;
    start_node.handle = frame;
}

void Spawned::release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

bool Spawned::join_or_link(WaitNode& n) {
    st_.lock();
    if (completed_ || frame_gone_) {
        st_.unlock();
        return true;
    }
    n.state = NodeState::waiting;
    joiner_ = &n;
    st_.unlock();
    return false;
}

void Spawned::join_unlink(WaitNode& n) noexcept {
    st_.lock();
    if (joiner_ == &n) {
        joiner_ = nullptr;
        n.state = NodeState::idle;
        st_.unlock();
        return;
    }
    st_.unlock();
    n.task->cancel_ready(n);
}

void Spawned::destroy_frame() noexcept {
    st_.lock();
    if (frame_gone_) {
        st_.unlock();
        return;
    }
    frame_gone_ = true;
    st_.unlock();
    cancel_ready(start_node);  // never started: its first resumption is still queued
    frame_.destroy();
    if (in_live_list.load(std::memory_order_acquire)) ex_.unlink_live(*this);
}

void Spawned::complete() noexcept {
    st_.lock();
    completed_ = true;
    if (WaitNode* j = std::exchange(joiner_, nullptr)) j->task->wake(*j);
    const bool unwanted = handle_gone_;
    st_.unlock();
    // Leave the live list first: from here on the executor may be destroyed before the
    // JoinHandle takes the result (and destroys the frame).
    ex_.unlink_live(*this);
    if (unwanted) destroy_frame();
}

void Spawned::cancel() noexcept {
    st_.lock();
    handle_gone_ = true;
    if (completed_ || frame_gone_) {
        st_.unlock();
        destroy_frame();  // a no-op if gone; else the unclaimed result
        release();
        return;
    }
    cancelled_ = true;
    if (running_) {  // its runner destroys the frame when the current step ends
        st_.unlock();
        release();
        return;
    }
    running_ = true;  // claim it: no runner will resume it from now on
    st_.unlock();
    destroy_frame();
    st_.lock();
    running_ = false;
    st_.unlock();
    release();
}

void Spawned::cancel_by_executor() noexcept {
    st_.lock();
    if (completed_ || frame_gone_) {
        st_.unlock();
        return;
    }
    cancelled_ = true;
    running_ = true;
    st_.unlock();
    destroy_frame();
    st_.lock();
    running_ = false;
    if (WaitNode* j = std::exchange(joiner_, nullptr)) j->task->wake(*j);
    st_.unlock();
}

void Spawned::detach() noexcept {
    st_.lock();
    handle_gone_ = true;
    const bool done = completed_;
    st_.unlock();
    if (done) destroy_frame();
    release();
}

void Spawned::finish_join() noexcept {
    st_.lock();
    handle_gone_ = true;
    st_.unlock();
    destroy_frame();
    release();
}

bool Spawned::run_step(unsigned budget) {
    st_.lock();
    if (cancelled_ || frame_gone_ || completed_) {
        st_.unlock();
        return false;
    }
    running_ = true;
    st_.unlock();

    // The task stays queued through the whole step (run(..., false)): a wake meanwhile only
    // appends to its ready list, so no other runner can start it while this one still reads its
    // frame and its flags. It goes idle (schedulable again) only in finish_run, at the very end.
    run(budget, false);
    const bool done = frame_.done();

    st_.lock();
    running_ = false;
    const bool cancel = cancelled_;
    st_.unlock();
    if (done) {
        complete();  // it stays queued for good: nothing can wake a finished frame
        return false;
    }
    if (cancel) {
        destroy_frame();
        return false;
    }
    return finish_run();
}

// ---- ExecutorState ------------------------------------------------------------------------------

ExecutorState::~ExecutorState() {
    for (;;) {
        lock_.lock();
        Spawned* t = live_;
        if (!t) {
            lock_.unlock();
            break;
        }
        t->add_ref();
        lock_.unlock();
        t->cancel_by_executor();  // unlinks it from live_
        unlink_live(*t);
        t->release();
    }
    lock_.lock();
    Spawned* q = std::exchange(queue_head_, nullptr);
    queue_tail_ = nullptr;
    lock_.unlock();
    while (q) {
        Spawned* next = q->next_queued;
        q->release();
        q = next;
    }
}

Spawned* ExecutorState::spawn(std::coroutine_handle<> frame) {
    auto* t = new Spawned(*this, frame);
    t->add_ref();  // the JoinHandle's
    lock_.lock();
    t->in_live_list.store(true, std::memory_order_relaxed);
    t->next_live = live_;
    if (live_) live_->prev_live = t;
    live_ = t;
    ++live_count_;
    lock_.unlock();
    t->wake(t->start_node);  // queues its first resumption
    return t;
}

void ExecutorState::unlink_live(Spawned& t) noexcept {
    lock_.lock();
    if (!t.in_live_list.load(std::memory_order_relaxed)) {
        lock_.unlock();
        return;
    }
    t.in_live_list.store(false, std::memory_order_release);
    if (t.prev_live) t.prev_live->next_live = t.next_live; else live_ = t.next_live;
    if (t.next_live) t.next_live->prev_live = t.prev_live;
    t.prev_live = t.next_live = nullptr;
    --live_count_;
    lock_.unlock();
    t.release();  // the live list's reference
}

void ExecutorState::enqueue(Spawned& t) noexcept {
    lock_.lock();
    t.next_queued = nullptr;
    if (queue_tail_) queue_tail_->next_queued = &t; else queue_head_ = &t;
    queue_tail_ = &t;
    if (WaitNode* n = sleepers_.pop_front()) n->task->wake(*n);
    lock_.unlock();
}

void ExecutorState::schedule(TaskCore& t) noexcept {
    auto& s = static_cast<Spawned&>(t);
    s.add_ref();  // the queue's
    enqueue(s);
}

std::size_t ExecutorState::tick(std::size_t max) {
    std::size_t ran = 0;
    while (ran < max) {
        lock_.lock();
        Spawned* t = queue_head_;
        if (t) {
            queue_head_ = t->next_queued;
            if (!queue_head_) queue_tail_ = nullptr;
        }
        lock_.unlock();
        if (!t) break;
        ++ran;
        if (t->run_step(task_budget)) {
            enqueue(*t);  // still ready: to the back, keeping the queue's reference
        } else {
            t->release();
        }
    }
    return ran;
}

bool ExecutorState::empty_queue() {
    lock_.lock();
    const bool e = queue_head_ == nullptr;
    lock_.unlock();
    return e;
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
    if (ex_.queue_head_) {
        ex_.lock_.unlock();
        return false;
    }
    node_.state = NodeState::waiting;
    ex_.sleepers_.push_back(node_);
    linked_ = true;
    ex_.lock_.unlock();
    return true;
}

Task<void> ExecutorState::run_loop() {
    for (;;) {
        const std::size_t n = tick(loop_batch);
        if (n == loop_batch) {
            co_await yield_now();  // let the runner poll the reactor: no starvation of I/O
        } else if (n == 0) {
            WaitForWork w(*this);
            co_await w;
        }
    }
}

}  // namespace async_io::detail
