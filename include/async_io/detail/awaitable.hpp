// Concepts and traits for "anything that can be co_awaited".
#pragma once

#include <concepts>
#include <coroutine>
#include <type_traits>
#include <utility>

namespace async_io::detail {

template <class A>
concept direct_awaiter = requires(A a, std::coroutine_handle<> h) {
    { a.await_ready() } -> std::convertible_to<bool>;
    a.await_suspend(h);
    a.await_resume();
};

template <class A>
concept has_member_co_await = requires(A&& a) { std::forward<A>(a).operator co_await(); };

template <class A>
concept has_free_co_await = requires(A&& a) { operator co_await(std::forward<A>(a)); };

/// The awaiter that `co_await a` would use.
template <class A>
decltype(auto) get_awaiter(A&& a) {
    if constexpr (has_member_co_await<A>) {
        return std::forward<A>(a).operator co_await();
    } else if constexpr (has_free_co_await<A>) {
        return operator co_await(std::forward<A>(a));
    } else {
        return std::forward<A>(a);
    }
}

template <class A>
using awaiter_t = decltype(get_awaiter(std::declval<A>()));

/// The type of `co_await std::declval<A>()`.
template <class A>
using await_result_t = decltype(std::declval<awaiter_t<A>&>().await_resume());

template <class A>
concept awaitable = direct_awaiter<std::remove_reference_t<awaiter_t<A>>>;

}  // namespace async_io::detail
