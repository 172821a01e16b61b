// race, timeout, when_all, yield_now: composing awaitables within one task.
#pragma once

#include <async_io/detail/awaitable.hpp>
#include <async_io/detail/wait.hpp>
#include <async_io/task.hpp>
#include <async_io/timer.hpp>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace async_io {

namespace detail {

/// What a result of type R becomes inside a tuple or variant: void -> std::monostate,
/// T& -> std::reference_wrapper<T>, T -> T.
template <class R>
struct stored {
    using type = R;
};
template <>
struct stored<void> {
    using type = std::monostate;
};
template <class T>
struct stored<T&> {
    using type = std::reference_wrapper<T>;
};
template <class R>
using stored_t = typename stored<R>::type;

/// The inverse of stored_t: the R that `s` holds (nothing for void).
template <class R>
R unstore(stored_t<R>&& s) {
    if constexpr (std::is_void_v<R>) {
        return;
    } else if constexpr (std::is_reference_v<R>) {
        return s.get();
    } else {
        return std::move(s);
    }
}

/// A group of child coroutines started by one combinator (race or when_all). A child tells the
/// group when it finished; the group answers with the coroutine to transfer to.
class ChildGroup {
public:
    virtual std::coroutine_handle<> child_done(std::size_t index) noexcept = 0;

protected:
    ~ChildGroup() = default;
};

template <class R>
struct ChildPromise {
    ChildGroup* group = nullptr;
    std::size_t index = 0;
    std::optional<stored_t<R>> value;
    std::exception_ptr error;

    struct Final {
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            return h.promise().group->child_done(h.promise().index);
        }
        void await_resume() const noexcept {}
    };

    std::suspend_always initial_suspend() const noexcept { return {}; }
    Final final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class R>
struct ChildPromiseV : ChildPromise<R> {
    template <class U>
    void return_value(U&& u) {
        if constexpr (std::is_reference_v<R>) {
            this->value.emplace(u);
        } else {
            this->value.emplace(std::forward<U>(u));
        }
    }
};
struct ChildPromiseVoid : ChildPromise<void> {
    void return_void() noexcept { value.emplace(); }
};

/// An owning handle to a child coroutine frame.
template <class R>
class Child {
public:
    struct promise_type : std::conditional_t<std::is_void_v<R>, ChildPromiseVoid, ChildPromiseV<R>> {
        Child get_return_object() noexcept {
            return Child{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
    };
    using handle_type = std::coroutine_handle<promise_type>;

    Child() noexcept = default;
    explicit Child(handle_type h) noexcept : h_(h) {}
    Child(Child&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Child& operator=(Child&& o) noexcept {
        reset();
        h_ = std::exchange(o.h_, {});
        return *this;
    }
    ~Child() { reset(); }

    /// Destroys the frame wherever it is suspended (cancellation).
    void reset() noexcept {
        if (h_) std::exchange(h_, {}).destroy();
    }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }
    promise_type& promise() const noexcept { return h_.promise(); }
    handle_type handle() const noexcept { return h_; }

private:
    handle_type h_;
};

// The child owns its awaitable (A is a value type: moved in) or refers to the caller's
// (A is an lvalue reference), so destroying a loser's child destroys whatever it was awaiting.
template <class R, class A>
Child<R> make_child(A a) {
    if constexpr (std::is_void_v<R>) {
        co_await std::forward<A>(a);
    } else {
        co_return co_await std::forward<A>(a);
    }
}

template <class A>
using result_of_t = await_result_t<A&&>;

/// An argument race/when_all/timeout can cancel: anything passed by value, or an lvalue whose
/// `co_await` creates a fresh awaiter (Task, Timer). An awaiter object passed by lvalue (e.g.
/// `auto rd = s.read(buf); race(rd, ...)`) would stay linked after the race destroyed the child
/// that awaited it, with nothing able to cancel it: refused at compile time.
template <class A>
concept cancellable_argument =
    !std::is_lvalue_reference_v<A> || has_member_co_await<A> || has_free_co_await<A>;

/// Creates child `I` of a combinator's group over the awaitables `aws`, tells it its group and
/// index, and runs it to its first suspension, or to its end (then it has already called
/// `group.child_done(I)`).
template <std::size_t I, class... A>
void start_child(ChildGroup& group, std::tuple<Child<result_of_t<A>>...>& children, std::tuple<A...>& aws) {
    using E = std::tuple_element_t<I, std::tuple<A...>>;
    auto& child = std::get<I>(children);
    child = make_child<result_of_t<E>, E>(std::forward<E>(std::get<I>(aws)));
    child.promise().group = &group;
    child.promise().index = I;
    child.handle().resume();
}

// ---- race ---------------------------------------------------------------------------------------

template <class... A>
class RaceAwaiter final : ChildGroup {
public:
    using result_type = std::variant<stored_t<result_of_t<A>>...>;

    template <class... U>
    explicit RaceAwaiter(U&&... u) : aws_(std::forward<U>(u)...) {}
    RaceAwaiter(RaceAwaiter&&) = default;  // only before it is awaited (no child exists yet)

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> parent) {
        parent_ = parent;
        starting_ = true;
        start<0>();
        starting_ = false;
        if (winner_ == npos) return true;
        cancel_losers();
        return false;  // decided while starting: resume the caller at once
    }

    result_type await_resume() { return take<0>(); }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    static constexpr std::size_t N = sizeof...(A);

    template <std::size_t I>
    void start() {
        if constexpr (I < N) {
            start_child<I>(*this, children_, aws_);
            if (winner_ == npos) start<I + 1>();
        }
    }

    std::coroutine_handle<> child_done(std::size_t index) noexcept override {
        if (winner_ != npos) return std::noop_coroutine();  // cannot happen: losers are destroyed
        winner_ = index;
        if (starting_) return std::noop_coroutine();  // await_suspend sees winner_ and resumes us
        cancel_losers();
        return parent_;
    }

    template <std::size_t I = 0>
    void cancel_losers() noexcept {
        if constexpr (I < N) {
            if (I != winner_) std::get<I>(children_).reset();
            cancel_losers<I + 1>();
        }
    }

    template <std::size_t I>
    result_type take() {
        if constexpr (I < N) {
            if (I != winner_) return take<I + 1>();
            auto& p = std::get<I>(children_).promise();
            if (p.error) std::rethrow_exception(p.error);
            return result_type(std::in_place_index<I>, std::move(*p.value));
        } else {
            std::terminate();  // unreachable: a race resumes only with a winner
        }
    }

    std::tuple<A...> aws_;
    std::tuple<Child<result_of_t<A>>...> children_;
    std::coroutine_handle<> parent_;
    std::size_t winner_ = npos;
    bool starting_ = false;
};

// ---- when_all -----------------------------------------------------------------------------------

template <class... A>
class WhenAllAwaiter final : ChildGroup {
public:
    using result_type = std::tuple<stored_t<result_of_t<A>>...>;

    template <class... U>
    explicit WhenAllAwaiter(U&&... u) : aws_(std::forward<U>(u)...) {}
    WhenAllAwaiter(WhenAllAwaiter&&) = default;

    bool await_ready() const noexcept { return N == 0; }

    bool await_suspend(std::coroutine_handle<> parent) {
        parent_ = parent;
        starting_ = true;
        start<0>();
        starting_ = false;
        if (!failed_ && pending_ != 0) return true;
        if (failed_) cancel_rest();
        return false;
    }

    result_type await_resume() {
        if (failed_) {
            auto e = first_error<0>();
            std::rethrow_exception(e);
        }
        return collect(std::index_sequence_for<A...>{});
    }

private:
    static constexpr std::size_t N = sizeof...(A);

    template <std::size_t I>
    void start() {
        if constexpr (I < N) {
            ++pending_;
            start_child<I>(*this, children_, aws_);
            if (!failed_) start<I + 1>();
        }
    }

    std::coroutine_handle<> child_done(std::size_t index) noexcept override {
        --pending_;
        if (failing_child(index)) {
            failed_ = true;
            failed_index_ = index;
            if (starting_) return std::noop_coroutine();
            cancel_rest();
            return parent_;
        }
        if (pending_ == 0 && !starting_) return parent_;
        return std::noop_coroutine();
    }

    bool failing_child(std::size_t index) noexcept { return has_error<0>(index); }
    template <std::size_t I>
    bool has_error(std::size_t index) noexcept {
        if constexpr (I < N) {
            if (I == index) return static_cast<bool>(std::get<I>(children_).promise().error);
            return has_error<I + 1>(index);
        } else {
            return false;
        }
    }
    template <std::size_t I>
    std::exception_ptr first_error() noexcept {
        if constexpr (I < N) {
            if (I == failed_index_) return std::get<I>(children_).promise().error;
            return first_error<I + 1>();
        } else {
            return {};
        }
    }
    // Destroys every child that has not finished (cancellation of the siblings of a failure).
    template <std::size_t I = 0>
    void cancel_rest() noexcept {
        if constexpr (I < N) {
            auto& c = std::get<I>(children_);
            if (c && !c.handle().done()) c.reset();
            cancel_rest<I + 1>();
        }
    }
    template <std::size_t... I>
    result_type collect(std::index_sequence<I...>) {
        return result_type(std::move(*std::get<I>(children_).promise().value)...);
    }

    std::tuple<A...> aws_;
    std::tuple<Child<result_of_t<A>>...> children_;
    std::coroutine_handle<> parent_;
    std::size_t pending_ = 0;
    std::size_t failed_index_ = 0;
    bool failed_ = false;
    bool starting_ = false;
};

}  // namespace detail

/// Awaits all of `aws` concurrently, within the calling task, and yields the result of the first
/// to finish as `std::variant<...>` (alternative i for aws i; void becomes std::monostate, T&
/// becomes std::reference_wrapper<T>).
///
/// - The awaitables are started in order on the calling thread; if one finishes while being
///   started, the later ones are never started (so `race(read, Timer::after(1s))` with data
///   already available never touches the timer heap).
/// - The others are destroyed (cancelled: their awaiters deregister at once) synchronously,
///   before the caller resumes; nothing of them runs afterwards.
/// - If the first to finish threw, `co_await race(...)` rethrows that exception.
/// - Destroying the awaiting coroutine destroys every child wherever it is suspended.
/// - The caller resumes on the thread that runs its task. Any awaitable works (Task, Timer,
///   readiness, a user's own). Lvalue Tasks and Timers are awaited in place and must outlive
///   the race; everything else is moved into it (an awaiter object passed by lvalue is refused
///   at compile time: it could not be cancelled).
template <class... A>
    requires(sizeof...(A) > 0 && (detail::awaitable<A&&> && ...))
[[nodiscard]] detail::RaceAwaiter<A...> race(A&&... aws) {
    static_assert((detail::cancellable_argument<A> && ...),
                  "race: pass awaiter objects by value (std::move or a temporary): one passed by "
                  "reference cannot be cancelled when it loses");
    return detail::RaceAwaiter<A...>(std::forward<A>(aws)...);
}

/// Awaits all of `aws` concurrently, within the calling task, and yields all their results as a
/// `std::tuple<...>` in argument order (void becomes std::monostate).
///
/// - Completion: when the last one finishes. If one throws, the others that are still running
///   are destroyed (cancelled) synchronously and `co_await` rethrows that first exception.
/// - Destroying the awaiting coroutine destroys every child wherever it is suspended.
/// - The caller resumes on the thread that runs its task.
template <class... A>
    requires(detail::awaitable<A&&> && ...)
[[nodiscard]] detail::WhenAllAwaiter<A...> when_all(A&&... aws) {
    static_assert((detail::cancellable_argument<A> && ...),
                  "when_all: pass awaiter objects by value (std::move or a temporary): one passed "
                  "by reference cannot be cancelled when a sibling fails");
    return detail::WhenAllAwaiter<A...>(std::forward<A>(aws)...);
}

namespace detail {

/// Holds the awaiter of an awaitable, built in place (awaiters need not be movable).
template <class A>
struct AwaiterHolder {
    awaiter_t<A> awaiter;
    explicit AwaiterHolder(A&& a) : awaiter(get_awaiter(std::forward<A>(a))) {}
};

/// An awaiter whose await_ready was already asked (and said no): awaiting it goes straight to
/// the wrapped awaiter's await_suspend.
template <class W>
struct AlreadyNotReady {
    W* w;
    bool await_ready() const noexcept { return false; }
    decltype(auto) await_suspend(std::coroutine_handle<> h) { return w->await_suspend(h); }
    decltype(auto) await_resume() { return w->await_resume(); }
};

template <class A>
class TimeoutAwaiter {
public:
    using result_type = await_result_t<A&&>;

    TimeoutAwaiter(Timer::duration d, A&& a) : d_(d), aw_(std::forward<A>(a)) {}
    TimeoutAwaiter(TimeoutAwaiter&& o) : d_(o.d_), aw_(std::forward<A>(o.aw_)) {}  // before awaited

    // Fast path: an `aw` that completes at once needs no timer, no child coroutine, nothing.
    bool await_ready() {
        inner_.emplace(std::forward<A>(aw_));
        return inner_->awaiter.await_ready();
    }
    bool await_suspend(std::coroutine_handle<> h) {
        race_.emplace(Inner{&inner_->awaiter}, Timer::after(d_));
        return race_->await_suspend(h);
    }
    result_type await_resume() {
        if (!race_) return inner_->awaiter.await_resume();
        auto r = race_->await_resume();
        race_.reset();
        if (r.index() == 1) {
            // Timed out: the inner wait lives here, not in the destroyed child. Deregister it
            // now, before any code of the caller runs.
            inner_.reset();
            throw std::system_error(std::make_error_code(std::errc::timed_out), "timeout");
        }
        return unstore<result_type>(std::move(std::get<0>(r)));
    }

private:
    using Inner = AlreadyNotReady<std::remove_reference_t<awaiter_t<A>>>;
    Timer::duration d_;
    A aw_;  // a reference for an lvalue argument
    std::optional<AwaiterHolder<A>> inner_;
    std::optional<RaceAwaiter<Inner, Timer>> race_;  // destroyed first: cancels the children
};

}  // namespace detail

/// Awaits `aw` for at most `d`: yields its result, or throws std::system_error equal to
/// std::errc::timed_out once `d` has passed, after destroying (cancelling) `aw`'s wait.
///
/// - If `aw` completes at once (its await_ready says so, e.g. a read whose data is already
///   there), no timer is created or armed and nothing is allocated.
/// - Otherwise it is `race(aw, Timer::after(d))`, the timer counted from that moment: never
///   early. The loser is destroyed synchronously before the caller resumes.
/// - The caller resumes on the thread that runs its task; destroying it cancels both.
template <class Rep, class Period, class A>
    requires detail::awaitable<A&&>
[[nodiscard]] detail::TimeoutAwaiter<A> timeout(std::chrono::duration<Rep, Period> d, A&& aw) {
    static_assert(detail::cancellable_argument<A>,
                  "timeout: pass awaiter objects by value (std::move or a temporary): one passed by "
                  "reference cannot be cancelled when the time is up");
    using D = std::chrono::duration<Rep, Period>;
    // Saturate: a timeout too long to represent never expires (Timer::after overflows to never).
    const Timer::duration dd = d >= std::chrono::duration_cast<D>(Timer::duration::max())
                                   ? Timer::duration::max()
                                   : std::chrono::ceil<Timer::duration>(d);
    return detail::TimeoutAwaiter<A>(dd, std::forward<A>(aw));
}

/// Suspends the calling coroutine and lets its runner run other tasks and poll the reactor
/// before it resumes (on the same runner). Destroying the coroutine meanwhile cancels it.
class yield_now {
public:
    yield_now() noexcept = default;
    /// Movable until awaited (so that it can be handed to race/when_all).
    yield_now(yield_now&&) noexcept {}
    yield_now& operator=(yield_now&&) = delete;
    ~yield_now() {
        if (node_.task) node_.task->cancel_ready(node_);
    }
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {  // may throw: task_for_suspend
        node_.handle = h;
        node_.task = &detail::task_for_suspend();
        detail::request_yield();
        node_.task->wake(node_);
    }
    void await_resume() noexcept { node_.task = nullptr; }

private:
    detail::WaitNode node_;
};

}  // namespace async_io
