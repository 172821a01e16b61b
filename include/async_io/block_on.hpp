// block_on: run an awaitable to completion on the calling thread.
#pragma once

#include <async_io/detail/awaitable.hpp>
#include <async_io/detail/export.hpp>
#include <async_io/task.hpp>

#include <coroutine>
#include <type_traits>
#include <utility>

namespace async_io {

namespace detail {

/// Runs the root coroutine `root` (not started yet) on this thread until it is done: resumes it,
/// then resumes whatever of its task becomes ready, and while nothing is ready drives the reactor
/// (if no other thread does) or parks. Implemented in src/driver.cpp.
ASYNC_IO_API void run_root(std::coroutine_handle<> root);

/// A task that awaits `a` and yields its result. With A a value type the task owns the
/// awaitable (moved in); with A a reference it awaits the caller's, which must outlive it.
template <class R, class A>
Task<R> await_task(A a) {
    if constexpr (std::is_void_v<R>) {
        co_await std::forward<A>(a);
    } else {
        co_return co_await std::forward<A>(a);
    }
}

template <class A>
struct is_task : std::false_type {};
template <class T>
struct is_task<Task<T>> : std::true_type {};

}  // namespace detail

/// Runs `aw` (a Task, a Timer, a readiness awaitable, any awaitable) on the calling thread and
/// returns what `co_await aw` yields, or rethrows what it throws.
///
/// - While `aw` waits, this thread drives the reactor itself (I/O events and timers of the whole
///   process) when no other thread is driving it, and otherwise sleeps until `aw`'s task is woken
///   or the driving thread hands the reactor over. The async-io thread is never needed for it.
/// - Every coroutine of `aw`'s task resumes on this thread, never on the thread that woke it.
/// - Any thread may call it, several threads at once, and a coroutine may call it recursively
///   (the inner call blocks the outer task until it returns); a wake for one call never wakes
///   another.
/// - If `aw` is an lvalue it must outlive the call (it is awaited in place).
template <class A>
    requires detail::awaitable<A&&>
detail::await_result_t<A&&> block_on(A&& aw) {
    using R = detail::await_result_t<A&&>;
    if constexpr (detail::is_task<std::remove_cvref_t<A>>::value && std::is_rvalue_reference_v<A&&>) {
        Task<R> root = std::move(aw);
        detail::run_root(root.handle());
        return root.handle().promise().take();
    } else {
        Task<R> root = detail::await_task<R, A&&>(std::forward<A>(aw));
        detail::run_root(root.handle());
        return root.handle().promise().take();
    }
}

}  // namespace async_io
