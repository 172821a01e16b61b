// Task<T>: the library's lazy coroutine type.
#pragma once

#include <async_io/detail/export.hpp>
#include <async_io/detail/frame_pool.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <variant>

// GCC does not compile symmetric transfer (an await_suspend returning a coroutine_handle) to a
// guaranteed tail call: at -O0 every transfer is a nested call, so a loop that awaits a million
// tasks which complete synchronously overflows the stack (GCC PR 100897; Clang emits musttail at
// every level). With GCC, Task therefore starts the awaited task with a plain call and, if it
// completed during that call, continues the awaiting coroutine without suspending it; only an
// asynchronous completion transfers back. tests/task.cpp ("a million sequential awaits...")
// guards it, and the dev and asan presets build at -O0/-O1.
#if defined(__GNUC__) && !defined(__clang__)
#define ASYNC_IO_TASK_INLINE_START 1
#else
#define ASYNC_IO_TASK_INLINE_START 0
#endif

namespace async_io {

template <class T = void>
class Task;

namespace detail {

struct TaskPromiseBase;

/// Every Task frame is allocated with this header in front of it: room for the state an executor
/// keeps for a spawned task (detail::Spawned, executor.hpp), so that `spawn` allocates nothing
/// and a spawned task is one block of memory (as a Rust task is). A frame that is never spawned
/// leaves the room unused. `refs` is 0 for a frame that was never spawned; once spawned it counts
/// the references to the whole block (the frame itself holds one, released when the frame is
/// destroyed), and the block is freed by whoever drops the last (src/executor.cpp).
struct alignas(16) FrameHeader {
    static constexpr std::uint16_t magic_value = 0x7a5c;
    alignas(16) unsigned char task_state[40];
    std::atomic<std::uint32_t> refs{0};
    std::uint16_t magic = magic_value;  // checked by spawn: the handle's address is the frame's
    /// GCC only (ASYNC_IO_TASK_INLINE_START): where an inline start of this frame stands
    /// (TaskPromiseBase::Start). Here rather than in the promise, where it would cost every
    /// frame 8 bytes of padding; nothing in the header but this and `pooled` is used by a
    /// frame that is awaited rather than spawned.
    std::uint8_t start = 0;
    /// The block came from frame_pool (else from ::operator new).
    bool pooled = false;
};
static_assert(sizeof(FrameHeader) == 48 && sizeof(FrameHeader) % alignof(std::max_align_t) == 0);

inline FrameHeader* frame_header(void* frame_address) noexcept {
    return reinterpret_cast<FrameHeader*>(static_cast<unsigned char*>(frame_address) - sizeof(FrameHeader));
}
/// A frame block of `frame_size` bytes of frame (and the header in front), from the frame pool
/// or, if it does not serve that size, from ::operator new. Returns the frame's address.
inline void* allocate_frame_block(std::size_t frame_size) {
    const std::size_t n = sizeof(FrameHeader) + frame_size;
    void* block = frame_pool::allocate(n);
    const bool pooled = block != nullptr;
    if (!pooled) block = ::operator new(n);
    FrameHeader* h = ::new (block) FrameHeader{};
    h->pooled = pooled;
    return static_cast<unsigned char*>(block) + sizeof(FrameHeader);
}
/// Frees a block that allocate_frame_block made.
inline void free_frame_block(FrameHeader* h) noexcept {
    const bool pooled = h->pooled;
    h->~FrameHeader();
    if (pooled) {
        frame_pool::deallocate(h);
    } else {
        ::operator delete(h);
    }
}
/// Drops the frame's reference to a spawned task's block (src/executor.cpp).
ASYNC_IO_API void release_spawned_frame(FrameHeader* h) noexcept;

struct TaskFinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept;
    void await_resume() const noexcept {}
};

struct TaskPromiseBase {
    std::coroutine_handle<> continuation_;
#if ASYNC_IO_TASK_INLINE_START
    /// FrameHeader::start's values.
    enum Start : std::uint8_t { idle, starting, completed_inline };
    static std::uint8_t& start_of(std::coroutine_handle<> h) noexcept { return frame_header(h.address())->start; }
#endif
    std::suspend_always initial_suspend() const noexcept { return {}; }
    TaskFinalAwaiter final_suspend() const noexcept { return {}; }

    // The frame's memory: header (see FrameHeader) + frame. Frames are created by the compiler
    // with exactly these; coroutine_handle::address() is the pointer operator new returned.
    static void* operator new(std::size_t n) { return allocate_frame_block(n); }
    static void operator delete(void* frame) noexcept {
        FrameHeader* h = frame_header(frame);
        if (h->refs.load(std::memory_order_acquire) == 0) {
            free_frame_block(h);
        } else {
            release_spawned_frame(h);
        }
    }
};

template <class P>
std::coroutine_handle<> TaskFinalAwaiter::await_suspend(std::coroutine_handle<P> h) noexcept {
    TaskPromiseBase& p = h.promise();
#if ASYNC_IO_TASK_INLINE_START
    std::uint8_t& start = TaskPromiseBase::start_of(h);
    if (start == TaskPromiseBase::starting) {
        start = TaskPromiseBase::completed_inline;
        return std::noop_coroutine();  // back into Task::Awaiter::await_suspend
    }
#endif
    // Symmetric transfer back to whoever awaited this task.
    return p.continuation_ ? p.continuation_ : std::noop_coroutine();
}

template <class T>
struct TaskPromise : TaskPromiseBase {
    std::variant<std::monostate, T, std::exception_ptr> result_;

    Task<T> get_return_object() noexcept;
    template <class U = T>
        requires std::is_convertible_v<U&&, T>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        result_.template emplace<1>(std::forward<U>(v));
    }
    void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }
    T take() {
        if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
        return std::move(std::get<1>(result_));
    }
};

template <class T>
struct TaskPromise<T&> : TaskPromiseBase {
    T* value_ = nullptr;
    std::exception_ptr error_;

    Task<T&> get_return_object() noexcept;
    void return_value(T& v) noexcept { value_ = std::addressof(v); }
    void unhandled_exception() noexcept { error_ = std::current_exception(); }
    T& take() {
        if (error_) std::rethrow_exception(error_);
        return *value_;
    }
};

template <>
struct TaskPromise<void> : TaskPromiseBase {
    std::exception_ptr error_;

    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error_ = std::current_exception(); }
    void take() {
        if (error_) std::rethrow_exception(error_);
    }
};

}  // namespace detail

/// A lazy coroutine that yields a `T` (a value, a reference, or nothing).
///
/// - Starts when first awaited (`co_await std::move(task)` or `co_await task`), or when handed to
///   `block_on` or an executor's `spawn`; until then it has done nothing.
/// - Completion: the awaiting coroutine is resumed by symmetric transfer on the thread where the
///   task finished, which is the thread running the whole chain (its `block_on` or executor), so
///   a chain of any length of tasks that complete synchronously uses constant stack.
/// - `co_await` yields the `co_return`ed value, or rethrows the exception that escaped the body.
///   A task can be awaited once.
/// - Move-only. Destroying a Task destroys its coroutine frame, wherever it is suspended, and so
///   the frames it awaits, and every awaiter in them deregisters itself from the reactor at once
///   (cancellation is destruction, DESIGN.md §4). Destroy a task only on the thread that runs it,
///   or while no thread runs it.
template <class T>
class [[nodiscard]] Task {
public:
    using promise_type = detail::TaskPromise<T>;
    using value_type = T;
    using handle_type = std::coroutine_handle<promise_type>;

    Task() noexcept = default;
    explicit Task(handle_type h) noexcept : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept {
        if (this != &o) {
            reset();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    ~Task() { reset(); }

    /// True if this object holds a coroutine (not moved from, not default-constructed).
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }
    /// True if the coroutine ran to completion (its result is ready).
    bool done() const noexcept { return h_ && h_.done(); }

    /// What `co_await task` uses. If the awaiting coroutine is destroyed while the task runs
    /// (a Task lvalue that lost a race), the task forgets it: it runs on in its owner's task and
    /// keeps its result for a later `co_await` (or is cancelled when the Task is destroyed).
    struct Awaiter {
        handle_type h;
        std::coroutine_handle<> awaiting{};
        Awaiter(handle_type t) noexcept : h(t) {}
        Awaiter(const Awaiter&) = delete;
        Awaiter& operator=(const Awaiter&) = delete;
        ~Awaiter() {
            if (awaiting && h && !h.done() && h.promise().continuation_ == awaiting)
                h.promise().continuation_ = nullptr;
        }
        bool await_ready() const noexcept { return !h || h.done(); }
#if ASYNC_IO_TASK_INLINE_START
        bool await_suspend(std::coroutine_handle<> a) {
            using detail::TaskPromiseBase;
            awaiting = a;
            h.promise().continuation_ = a;
            std::uint8_t& start = TaskPromiseBase::start_of(h);
            start = TaskPromiseBase::starting;
            h.resume();
            const bool inline_done = start == TaskPromiseBase::completed_inline;
            start = TaskPromiseBase::idle;
            return !inline_done;
        }
#else
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> a) noexcept {
            awaiting = a;
            h.promise().continuation_ = a;
            return h;
        }
#endif
        T await_resume() {
            awaiting = nullptr;
            return h.promise().take();
        }
    };
    Awaiter operator co_await() const& noexcept { return Awaiter{h_}; }
    Awaiter operator co_await() const&& noexcept { return Awaiter{h_}; }

    /// The coroutine handle (ownership stays with this Task). For runners and combinators.
    handle_type handle() const noexcept { return h_; }
    /// Gives up ownership of the coroutine frame.
    handle_type release() noexcept { return std::exchange(h_, {}); }

private:
    void reset() noexcept {
        if (h_) std::exchange(h_, {}).destroy();
    }
    handle_type h_;
};

namespace detail {
template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
    return Task<T>{std::coroutine_handle<TaskPromise<T>>::from_promise(*this)};
}
template <class T>
Task<T&> TaskPromise<T&>::get_return_object() noexcept {
    return Task<T&>{std::coroutine_handle<TaskPromise<T&>>::from_promise(*this)};
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
    return Task<void>{std::coroutine_handle<TaskPromise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace async_io
