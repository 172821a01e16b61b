// Timer: an awaitable that fires at a point in time, or at intervals.
#pragma once

#include <async_io/detail/reactor.hpp>
#include <async_io/detail/wait.hpp>

#include <cassert>
#include <chrono>
#include <coroutine>
#include <optional>
#include <utility>

namespace async_io {

/// A timer on std::chrono::steady_clock, with async-io 2.x semantics.
///
/// - `co_await timer` completes at the first moment the clock reaches the timer's deadline
///   (never earlier) and yields that deadline (not the moment the coroutine resumed). A one-shot
///   timer then has no deadline (`will_fire() == false`) and awaiting it again never completes;
///   an interval timer moves its deadline on by its period, so each `co_await` yields the next
///   tick (ticks that are already due complete at once, one per `co_await`: none is skipped).
/// - A deadline that cannot be represented (`after(hours::max())`) makes a timer that never
///   fires, like `never()`.
/// - Cost: nothing reaches the reactor until a `co_await` actually suspends (a timer destroyed
///   unawaited, or awaited after its deadline, costs no lock and no syscall). One exception, for
///   speed: the `co_await` of a timer whose deadline `after`/`set_after` set to a future moment
///   does not read the clock again (`co_await Timer::after(d)` reads it once); if that deadline
///   passed in between, the timer goes to the reactor and fires at its next round. Arming and
///   cancelling are O(log n) in the number of armed timers, with no allocation.
/// - One coroutine awaits a Timer at a time. The `set_*` functions may be called while a
///   coroutine waits on it, from the thread that runs that coroutine's task (another branch of a
///   `when_all`/`race`, or another task of the same LocalExecutor): the wait then uses the new
///   deadline (re-arms it even if the old one already fired but the waiter has not resumed yet).
/// - Destroying the awaiting coroutine (cancellation) removes the timer from the reactor at once.
///   The Timer must not be moved or destroyed while a coroutine waits on it.
/// - The awaiting coroutine is resumed on the thread that runs its task (its `block_on` or its
///   executor), never on the reactor's thread. Throws only std::bad_alloc-free errors: none.
class Timer {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;
    using duration = clock::duration;

    /// A timer that never fires.
    static Timer never() noexcept { return Timer{}; }
    /// Fires once, `d` from now (at once if `d <= 0`; never if now + d overflows).
    /// (The factories take their durations by reference: GCC keeps a by-value argument of a
    /// call inside a `co_await` expression in the coroutine's frame for as long as it waits.)
    template <class Rep, class Period>
    static Timer after(const std::chrono::duration<Rep, Period>& d) noexcept {
        Timer t;
        t.set_after(d);
        return t;
    }
    /// Fires once at `tp` (never if `tp` is time_point::max()).
    static Timer at(time_point tp) noexcept {
        Timer t;
        t.set_at(tp);
        return t;
    }
    /// Fires every `period`, the first time `period` from now. A period of zero or less fires at
    /// every `co_await` without waiting.
    template <class Rep, class Period>
    static Timer interval(const std::chrono::duration<Rep, Period>& period) noexcept {
        Timer t;
        t.set_interval(period);
        return t;
    }
    /// Fires at `start`, then every `period`.
    template <class Rep, class Period>
    static Timer interval_at(time_point start, const std::chrono::duration<Rep, Period>& period) noexcept {
        Timer t;
        t.set_interval_at(start, period);
        return t;
    }

    Timer() noexcept = default;  // never fires
    Timer(Timer&& o) noexcept : deadline_(o.deadline_), period_(o.period_) {
        assert(!o.waiting_ && "a Timer must not be moved while a coroutine awaits it");
    }
    Timer& operator=(Timer&& o) noexcept {
        assert(!waiting_ && !o.waiting_ && "a Timer must not be moved while a coroutine awaits it");
        deadline_ = o.deadline_;
        period_ = o.period_;
        return *this;
    }
    ~Timer() { assert(!waiting_ && "a Timer must not be destroyed while a coroutine awaits it"); }

    /// Makes it a one-shot timer firing `d` from now (never if that overflows).
    template <class Rep, class Period>
    void set_after(std::chrono::duration<Rep, Period> d) noexcept {
        const time_point now = clock::now();
        const std::optional<time_point> at = add(now, d);
        set(at, std::nullopt);
        if (at && *at > now) period_ = fresh_one_shot;  // see Awaiter::await_ready
    }
    /// Makes it a one-shot timer firing at `tp`.
    void set_at(time_point tp) noexcept { set(tp, std::nullopt); }
    /// Makes it an interval timer firing every `period`, the first time `period` from now.
    template <class Rep, class Period>
    void set_interval(std::chrono::duration<Rep, Period> period) noexcept {
        const auto p = to_period(period);
        set(p ? add(clock::now(), *p) : std::nullopt, p);
    }
    /// Makes it an interval timer firing at `start`, then every `period`.
    template <class Rep, class Period>
    void set_interval_at(time_point start, std::chrono::duration<Rep, Period> period) noexcept {
        const auto p = to_period(period);
        set(p ? std::optional<time_point>(start) : std::nullopt, p);
    }
    /// Makes it never fire (a waiting coroutine then waits until it is set again or destroyed).
    void clear() noexcept { set(std::nullopt, std::nullopt); }

    /// True if the timer has a deadline, i.e. a `co_await` would complete some day.
    bool will_fire() const noexcept { return deadline_ != no_deadline; }
    /// The next deadline, if any.
    std::optional<time_point> deadline() const noexcept {
        return will_fire() ? std::optional<time_point>(deadline_) : std::nullopt;
    }
    /// The period of an interval timer.
    std::optional<duration> period() const noexcept {
        return periodic() ? std::optional<duration>(period_) : std::nullopt;
    }

    class Awaiter;
    Awaiter operator co_await() & noexcept;
    /// Awaiting a temporary (`co_await Timer::after(1s)`): it lives until the co_await ends.
    Awaiter operator co_await() && noexcept;

private:
    template <class Rep, class Period>
    static std::optional<time_point> add(time_point base, std::chrono::duration<Rep, Period> d) noexcept {
        using D = std::chrono::duration<Rep, Period>;
        if (d <= D::zero()) return base;
        // In clock ticks; converting down never overflows. A base before the clock's epoch has
        // more room than duration::max(), and max() - base would overflow.
        const duration room =
            base.time_since_epoch() < duration::zero() ? duration::max() : time_point::max() - base;
        if (d >= std::chrono::duration_cast<D>(room)) return std::nullopt;
        const auto ticks = std::chrono::ceil<duration>(d);  // never early, even for finer units
        if (ticks >= room) return std::nullopt;
        return base + ticks;
    }
    template <class Rep, class Period>
    static std::optional<duration> to_period(std::chrono::duration<Rep, Period> p) noexcept {
        using D = std::chrono::duration<Rep, Period>;
        if (p <= D::zero()) return duration::zero();
        if (p >= std::chrono::duration_cast<D>(duration::max())) return std::nullopt;
        return std::chrono::ceil<duration>(p);
    }
    void set(std::optional<time_point> deadline, std::optional<duration> period) noexcept;
    // An interval timer (one-shot timers keep a negative sentinel in period_).
    bool periodic() const noexcept { return period_ >= duration::zero(); }
    /// After a fire: the next deadline of an interval timer, none for a one-shot.
    void advance() noexcept {
        if (periodic() && deadline_ != no_deadline) {
            deadline_ = add(deadline_, period_).value_or(no_deadline);
        } else {
            deadline_ = no_deadline;
        }
    }

    // Sentinels rather than std::optional: a Timer sits in every frame that sleeps, and 24 bytes
    // instead of 40 count when a million tasks do. time_point::max() is a deadline no clock
    // reaches (set_at(time_point::max()) is a timer that never fires, as documented).
    static constexpr time_point no_deadline = time_point::max();
    static constexpr duration no_period = duration::min();  // periods are >= 0
    // A one-shot timer whose deadline was later than the clock reading it was computed from.
    static constexpr duration fresh_one_shot = duration::min() + duration(1);
    time_point deadline_ = no_deadline;
    duration period_ = no_period;  // set for interval timers
    Awaiter* waiting_ = nullptr;      // the awaiter of the coroutine waiting on this timer
};

/// What `co_await timer` uses (see Timer). Lives in the awaiting coroutine frame and holds the
/// timer's heap entry, so arming allocates nothing.
class Timer::Awaiter {
public:
    explicit Awaiter(Timer& t) noexcept : timer_(t) {}
    Awaiter(const Awaiter&) = delete;
    Awaiter& operator=(const Awaiter&) = delete;
    ~Awaiter() {
        if (entry_.armed) detail::timer_remove(entry_);
        if (timer_.waiting_ == this) timer_.waiting_ = nullptr;
    }

    bool await_ready() const noexcept {
        if (timer_.deadline_ == no_deadline) return false;
        // Set by after()/set_after() to a moment that was still ahead: so it nearly always is
        // when awaited, and a second clock reading (about 40 ns on a VM) is not worth it. If
        // the deadline passed meanwhile, the reactor fires the timer at its next round.
        if (timer_.period_ == fresh_one_shot) return false;
        return clock::now() >= timer_.deadline_;
    }
    void await_suspend(std::coroutine_handle<> h) {
        entry_.handle = h;
        entry_.task = &detail::task_for_suspend();
        timer_.waiting_ = this;
        if (timer_.deadline_ != no_deadline) arm(timer_.deadline_);
    }
    time_point await_resume() noexcept {
        entry_.armed = false;  // it fired: the reactor took it out of the heap
        timer_.waiting_ = nullptr;
        const time_point fired = timer_.deadline_;
        timer_.advance();
        return fired;
    }

private:
    friend class Timer;
    // Everything this awaiter writes is written before the entry is linked: once it is, the
    // coroutine may be resumed on another thread (a coroutine that no runner of ours drives is
    // resumed on the async-io thread) before await_suspend has even returned.
    void arm(time_point deadline) {
        entry_.armed = true;
        detail::timer_insert(entry_, deadline);
    }
    // Timer::set_* while this awaiter waits.
    void reset(std::optional<time_point> deadline) {
        if (deadline) {
            if (entry_.armed) {
                detail::timer_reset(entry_, *deadline);
            } else {
                arm(*deadline);
            }
        } else if (entry_.armed) {
            detail::timer_remove(entry_);
            entry_.armed = false;
        }
    }

    Timer& timer_;
    detail::TimerEntry entry_;  // with the `armed` flag: the reactor may hold the entry
};

inline Timer::Awaiter Timer::operator co_await() & noexcept { return Awaiter{*this}; }
inline Timer::Awaiter Timer::operator co_await() && noexcept { return Awaiter{*this}; }

inline void Timer::set(std::optional<time_point> deadline, std::optional<duration> period) noexcept {
    deadline_ = deadline.value_or(no_deadline);
    period_ = period.value_or(no_period);
    if (waiting_) waiting_->reset(deadline);
}

}  // namespace async_io
