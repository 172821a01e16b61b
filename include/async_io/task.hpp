// Task<T>: the library's lazy coroutine type.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
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

struct TaskFinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept;
    void await_resume() const noexcept {}
};

struct TaskPromiseBase {
    std::coroutine_handle<> continuation_;
#if ASYNC_IO_TASK_INLINE_START
    enum class Start : unsigned char { idle, starting, completed_inline };
    Start start_ = Start::idle;
#endif
    std::suspend_always initial_suspend() const noexcept { return {}; }
    TaskFinalAwaiter final_suspend() const noexcept { return {}; }
};

template <class P>
std::coroutine_handle<> TaskFinalAwaiter::await_suspend(std::coroutine_handle<P> h) noexcept {
    TaskPromiseBase& p = h.promise();
#if ASYNC_IO_TASK_INLINE_START
    if (p.start_ == TaskPromiseBase::Start::starting) {
        p.start_ = TaskPromiseBase::Start::completed_inline;
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
            auto& p = h.promise();
            awaiting = a;
            p.continuation_ = a;
            p.start_ = detail::TaskPromiseBase::Start::starting;
            h.resume();
            const bool inline_done = p.start_ == detail::TaskPromiseBase::Start::completed_inline;
            p.start_ = detail::TaskPromiseBase::Start::idle;
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
