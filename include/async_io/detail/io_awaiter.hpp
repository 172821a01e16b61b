// The readiness awaiters behind every operation of Async<T>: "try the syscall; on would-block,
// wait for the source's next event and try again", with the readiness cache of
// include/async_io/detail/reactor.hpp deciding whether a syscall is worth trying at all.
#pragma once

#include <async_io/detail/reactor.hpp>
#include <async_io/detail/sys.hpp>
#include <async_io/detail/wait.hpp>

#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace async_io::detail {

inline bool would_block(std::ptrdiff_t r) noexcept {
    return r == -EAGAIN || r == -EWOULDBLOCK;
}

/// Asks a TCP socket to report its remaining receive queue with every read (src/sys/tcp_inq.cpp);
/// false where the OS cannot.
ASYNC_IO_API bool enable_tcp_inq(native_handle_type fd) noexcept;
/// recvmsg(2) on a socket with TCP_INQ enabled: bytes read or -errno; `*inq` receives the bytes
/// still queued after the read, or -1 if unknown.
ASYNC_IO_API std::ptrdiff_t sys_recv_inq(native_handle_type fd, std::span<std::byte> buf, int* inq) noexcept;

/// An operation on a source. `Op` provides
///   std::ptrdiff_t attempt() noexcept   // the syscall(s): >= 0 done, -errno failed or would block
///                                       // (or attempt(Source&), for an op that keeps hints there)
///   R finish(std::ptrdiff_t r)          // the awaiter's result (throws for errors)
///   bool drained(std::ptrdiff_t r)      // the successful attempt emptied (or filled) the kernel
///                                       // buffer: a fewer-bytes-than-asked transfer, or TCP_INQ
///                                       // said 0 bytes are left
///
/// - Completes when `attempt` returns anything but would-block. It is tried at once if the
///   direction may be ready, and after every event for that direction; would-block is never
///   seen by the caller.
/// - When `drained`, the ready bit is cleared (unless an event came meanwhile), so the next
///   operation waits for the next event without a syscall.
/// - The retry after a wake runs on the task's own thread (in `on_ready`), not on the reactor's.
/// - Destroying the awaiting coroutine unlinks it from the source at once.
template <class Op>
class IoAwaiter : private IoNode {
public:
    IoAwaiter(Source* s, Direction d, Op op) noexcept(std::is_nothrow_move_constructible_v<Op>)
        : IoNode(d, &on_ready_fn), s_(s), op_(std::move(op)) {}
    /// Movable until awaited (so that race/when_all/timeout can hold it).
    IoAwaiter(IoAwaiter&& o) noexcept(std::is_nothrow_move_constructible_v<Op>)
        : IoNode(o.d, &on_ready_fn), s_(o.s_), op_(std::move(o.op_)) {}
    IoAwaiter& operator=(IoAwaiter&&) = delete;
    ~IoAwaiter() {
        if (linked) source_unlink(*s_, d, node());
    }

    bool await_ready() noexcept { return try_op(); }
    bool await_suspend(std::coroutine_handle<> h) {  // may throw: task_for_suspend
        handle = h;
        task = &task_for_suspend();
        return !wait_or_complete();
    }
    decltype(auto) await_resume() { return op_.finish(result_); }

private:
    WaitNode& node() noexcept { return *this; }
    std::atomic<std::uint32_t>& word() noexcept { return s_->state[static_cast<unsigned>(d)]; }

    std::ptrdiff_t attempt() noexcept {
        if constexpr (requires(Op& o, Source& s) { o.attempt(s); })
            return op_.attempt(*s_);
        else
            return op_.attempt();
    }

    static constexpr bool stream_read = requires { Op::marks_read; };
    static constexpr bool stream_write = requires { Op::marks_write; };

    // Runs the operation if the direction may be ready; true when it completed.
    bool try_op() noexcept {
        // An operation on an empty buffer completes at once with 0, without a syscall and
        // whatever the readiness cache says (recv(2) of 0 bytes on a stream socket would wait).
        if constexpr (requires(const Op& o) { o.empty_buffer(); }) {
            if (op_.empty_buffer()) {
                result_ = 0;
                return true;
            }
        }
        auto& st = word();
        for (;;) {
            seen = st.load(std::memory_order_acquire);
            if (!(seen & (state_ready | state_closed))) {
                if constexpr (stream_read) return speculate();
                return false;
            }
            result_ = attempt();
            if (!would_block(result_)) {
                if (op_.drained(result_)) {
                    std::uint32_t expected = seen;  // drained: clear unless an event came meanwhile
                    st.compare_exchange_strong(expected, seen & ~state_ready, std::memory_order_acq_rel);
                    if constexpr (stream_read) allow_speculation();
                }
                if constexpr (stream_write) {
                    if (s_->read_hint.load(std::memory_order_relaxed) & read_hint_speculate)
                        s_->read_hint.fetch_and(static_cast<std::uint8_t>(~read_hint_speculate), std::memory_order_relaxed);
                }
                return true;
            }
            if (st.compare_exchange_strong(seen, seen & ~state_ready, std::memory_order_acq_rel)) {
                seen &= ~state_ready;
                return false;
            }
        }
    }

    // Source::read_hint: after a drain, with no own write since, a read tries once anyway.
    void allow_speculation() noexcept {
        if (s_->read_hint.load(std::memory_order_relaxed) == 0)
            s_->read_hint.store(read_hint_speculate, std::memory_order_relaxed);
    }
    bool speculate() noexcept {
        if (s_->read_hint.load(std::memory_order_relaxed) != read_hint_speculate) return false;
        s_->read_hint.store(0, std::memory_order_relaxed);  // one try per drain
        result_ = attempt();
        if (would_block(result_)) {
            s_->read_hint.store(read_hint_off, std::memory_order_relaxed);
            return false;  // seen is still the word read before the attempt: no event is lost
        }
        if (result_ > 0) allow_speculation();
        return true;
    }

    // Links the node, or completes if an event arrived since try_op looked; true when completed.
    // `linked` is set before linking: once linked, the coroutine may be resumed elsewhere.
    bool wait_or_complete() noexcept {
        for (;;) {
            linked = true;
            const int r = source_link(*s_, d, node(), seen);
            if (r > 0) return false;
            linked = false;
            if (r < 0) {
                result_ = r;
                return true;
            }
            if (try_op()) return true;
        }
    }

    static void on_ready_fn(WaitNode* n) {
        IoAwaiter* self = static_cast<IoAwaiter*>(static_cast<IoNode*>(n));
        self->linked = false;
        if (self->try_op() || self->wait_or_complete()) self->handle.resume();
    }

    // The node's fields (IoNode): d, linked (set before linking: once linked, the coroutine may
    // be resumed elsewhere), seen (the readiness word the last attempt saw).
    Source* s_;
    std::ptrdiff_t result_ = 0;
    Op op_;
};

/// `readable()`/`writable()`: completes once an event has reported the direction ready and no
/// operation has seen would-block since (it may still be a false positive, as in async-io: the
/// next operation must handle would-block, which the operations of Async<T> do). A new source
/// has seen no event yet, so this waits for the first one (epoll reports the current state
/// right after registration).
class ReadyAwaiter {
public:
    ReadyAwaiter(Source* s, Direction d) noexcept : s_(s), d_(d) {}
    /// Movable until awaited.
    ReadyAwaiter(ReadyAwaiter&& o) noexcept : s_(o.s_), d_(o.d_) {}
    ReadyAwaiter& operator=(ReadyAwaiter&&) = delete;
    ~ReadyAwaiter() {
        if (linked_) source_unlink(*s_, d_, node_);
    }
    bool await_ready() noexcept {
        seen_ = s_->state[static_cast<unsigned>(d_)].load(std::memory_order_acquire);
        return (seen_ & state_closed) || ((seen_ & state_ready) && seen_ >= state_tick);
    }
    bool await_suspend(std::coroutine_handle<> h) {  // may throw: task_for_suspend
        node_.handle = h;
        node_.task = &task_for_suspend();
        for (;;) {
            linked_ = true;  // before linking: once linked, the coroutine may run elsewhere
            const int r = source_link(*s_, d_, node_, seen_);
            if (r > 0) return true;
            linked_ = false;
            if (r < 0) {
                error_ = -r;
                return false;
            }
            if (await_ready()) return false;
        }
    }
    void await_resume() {
        linked_ = false;
        if (error_) throw_os_error(error_, d_ == Direction::read ? "readable" : "writable");
    }

private:
    Source* s_;
    Direction d_;
    bool linked_ = false;
    int error_ = 0;
    std::uint32_t seen_ = 0;
    WaitNode node_;
};

}  // namespace async_io::detail
