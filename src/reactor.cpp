// The reactor: registered sources and their waiters, the timer heap, and one round of
// wait-and-dispatch (`react`). Who drives it, and when, is src/driver.cpp's business.
#include "reactor.hpp"

#include "parker.hpp"
#include "prefetch.hpp"

#include <async_io/detail/sys.hpp>

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define ASYNC_IO_HAVE_PTHREAD_ATFORK 1
#endif

namespace async_io::detail {

namespace {

constexpr std::uint8_t bit(Direction d) noexcept { return static_cast<std::uint8_t>(1u << static_cast<unsigned>(d)); }

Interest interest_of(std::uint8_t armed) noexcept {
    return Interest{(armed & bit(Direction::read)) != 0, (armed & bit(Direction::write)) != 0};
}

// Marks a direction ready (and closed, for good, if `closed`) and moves its tick: the
// compare-exchange of an operation that saw the old word (and is about to clear the ready bit)
// then fails, so this event is never lost.
void bump(std::atomic<std::uint32_t>& st, bool closed) noexcept {
    const std::uint32_t set = state_ready | (closed ? state_closed : 0u);
    std::uint32_t old = st.load(std::memory_order_relaxed);
    while (!st.compare_exchange_weak(old, (old + state_tick) | set, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
    }
}

// An event reported direction `d` of `s` ready (and `closed`): bump its readiness word and wake
// every waiter. s.lock held.
inline void wake_all(Source& s, Direction d, bool closed) noexcept {
    const auto i = static_cast<unsigned>(d);
    bump(s.state[i], closed);
    while (WaitNode* n = s.waiters[i].pop_front()) n->task->wake(*n);
}

}  // namespace

// ---- the process's reactor, and fork() ---------------------------------------------------------

// Never destroyed: detached threads and static destructors of user code may still use it.
std::atomic<Reactor*> Reactor::current_{nullptr};
Reactor* Reactor::abandoned_ = nullptr;
std::atomic<bool> Reactor::abandoned_open_{false};

Reactor& Reactor::create() {
    register_fork_handler();
    close_abandoned();
    // Threads racing to create it each build one; the loser's is destroyed (closing its fds).
    auto fresh = std::unique_ptr<Reactor>(new Reactor());
    Reactor* expected = nullptr;
    if (current_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel,
                                         std::memory_order_acquire))
        return *fresh.release();
    return *expected;
}

void Reactor::after_fork_in_child() noexcept {
    // The child has one thread, this one, so the plain writes cannot race.
    if (Reactor* old = current_.exchange(nullptr, std::memory_order_acq_rel)) {
        old->abandoned_next_ = abandoned_;
        abandoned_ = old;  // leaked, but reachable (leak checkers stay quiet)
        abandoned_open_.store(true, std::memory_order_release);
    }
    driver_after_fork_in_child();
}

void Reactor::close_abandoned() noexcept {
    if (!abandoned_open_.exchange(false, std::memory_order_acq_rel)) return;
    // Closes the child's copies of the parent's poller fds (the parent's stay open). Nothing
    // else of an abandoned reactor is touched: its locks may be held by threads that are gone.
    for (Reactor* r = abandoned_; r; r = r->abandoned_next_) r->poller_.reset();
}

void register_fork_handler() noexcept {
#if defined(ASYNC_IO_HAVE_PTHREAD_ATFORK)
    static const bool registered = ::pthread_atfork(nullptr, nullptr, &Reactor::after_fork_in_child) == 0;
    (void)registered;
#endif
}

Reactor::Reactor()
    : poller_(make_default_poller()),
      edge_(poller_->supports(PollMode::edge)) {
    slots_.reserve(64);
    heap_.reserve(64);
}

// ---- sources -----------------------------------------------------------------------------------

Source* Reactor::add_source(int fd) {
    auto s = std::make_unique<Source>();
    s->fd = fd;
    std::uint32_t idx;
    {
        std::lock_guard g(sources_mu_);
        if (free_head_ != UINT32_MAX) {
            idx = free_head_;
            free_head_ = slots_[idx].next_free;
        } else {
            idx = static_cast<std::uint32_t>(slots_.size());
            slots_.emplace_back();
        }
        slots_[idx].source = s.get();
        s->key = (static_cast<std::uint64_t>(slots_[idx].generation) << 32) | idx;
    }
    try {
        if (edge_) {
            poller_->add(fd, s->key, Interest::both(), PollMode::edge);
        } else {
            poller_->add(fd, s->key, Interest::none(), PollMode::oneshot);
        }
    } catch (const std::system_error& e) {
        {
            std::lock_guard g(sources_mu_);
            slots_[idx].source = nullptr;
            ++slots_[idx].generation;
            slots_[idx].next_free = free_head_;
            free_head_ = idx;
        }
        const int err = e.code().value();
        std::string what = "Async: cannot register fd " + std::to_string(fd) + " with the reactor";
        if (err == EPERM) what += " (regular files cannot be polled)";
        else if (err == EEXIST) what += " (it is already registered: one Async per fd)";
        else if (err == EBADF) what += " (not an open file descriptor)";
        throw std::system_error(e.code(), what);
    }
    return s.release();
}

void Reactor::remove_source(Source* s) noexcept {
    {
        std::lock_guard g(sources_mu_);  // dispatch holds it while it touches sources
        const auto idx = static_cast<std::uint32_t>(s->key & 0xffffffffu);
        if (idx >= slots_.size() || slots_[idx].source != s) {
            // A source of a reactor that fork() abandoned (an Async created before the fork,
            // destroyed in the child): neither this poller nor the parent's knows it here.
            delete s;
            return;
        }
        // An event still queued for this key is dropped by dispatch (the generation moved).
        slots_[idx].source = nullptr;
        ++slots_[idx].generation;
        slots_[idx].next_free = free_head_;
        free_head_ = idx;
    }
    try {
        poller_->remove(s->fd);
    } catch (const std::system_error&) {
        // The fd was closed behind our back (the kernel dropped the registration with it).
    }
    delete s;
}

int Reactor::source_link(Source& s, Direction d, WaitNode& n, std::uint32_t seen) noexcept {
    const auto i = static_cast<unsigned>(d);
    s.lock.lock();
    if (s.state[i].load(std::memory_order_acquire) != seen) {
        s.lock.unlock();
        return 0;
    }
    n.state = NodeState::waiting;
    s.waiters[i].push_back(n);
    if (!edge_ && !(s.armed & bit(d))) return arm_linked(s, d, n);
    s.lock.unlock();
    return 1;
}

// Apart from source_link (and not inlined into it by GCC 12), so that the common path (edge
// mode, or already armed) sets up no exception-handling frame: that was a fifth of
// source_link's instructions.
int Reactor::arm_linked(Source& s, Direction d, WaitNode& n) noexcept {
    s.armed |= bit(d);
    try {
        poller_->modify(s.fd, s.key, interest_of(s.armed), PollMode::oneshot);
    } catch (const std::system_error& e) {
        s.armed &= static_cast<std::uint8_t>(~bit(d));
        s.waiters[static_cast<unsigned>(d)].erase(n);
        n.state = NodeState::idle;
        s.lock.unlock();
        return e.code().value() > 0 ? -e.code().value() : -EIO;
    }
    s.lock.unlock();
    return 1;
}

void Reactor::source_unlink(Source& s, Direction d, WaitNode& n) noexcept {
    s.lock.lock();
    if (n.state == NodeState::waiting) {
        s.waiters[static_cast<unsigned>(d)].erase(n);
        n.state = NodeState::idle;
        s.lock.unlock();
        return;
    }
    s.lock.unlock();
    n.task->cancel_ready(n);
}

void Reactor::rearm(Source& s) noexcept {
    std::uint8_t want = 0;
    if (!s.waiters[0].empty()) want |= bit(Direction::read);
    if (!s.waiters[1].empty()) want |= bit(Direction::write);
    if (want == 0) return;
    try {
        poller_->modify(s.fd, s.key, interest_of(want), PollMode::oneshot);
        s.armed = want;
    } catch (const std::system_error&) {
        // The fd is gone: wake the waiters so that their operation runs and reports the error.
        wake_all(s, Direction::read, true);
        wake_all(s, Direction::write, true);
    }
}

void Reactor::dispatch(std::size_t count) noexcept {
    std::lock_guard g(sources_mu_);
    for (std::size_t k = 0; k < count; ++k) {
        const PollEvent& ev = events_[k];
        const auto idx = static_cast<std::uint32_t>(ev.key & 0xffffffffu);
        const auto gen = static_cast<std::uint32_t>(ev.key >> 32);
        if (idx >= slots_.size() || slots_[idx].generation != gen || !slots_[idx].source) continue;
        Source& s = *slots_[idx].source;
        s.lock.lock();
        if (!edge_) s.armed = 0;  // a oneshot registration disarms itself when it reports
        // Written out per direction: as a loop over two-element arrays of flags this took a
        // quarter of the function's instructions (callgrind, echo).
        if (ev.readable | ev.read_closed) wake_all(s, Direction::read, ev.read_closed);
        if (ev.writable | ev.write_closed) wake_all(s, Direction::write, ev.write_closed);
        if (!edge_) rearm(s);
        s.lock.unlock();
    }
}

// ---- timers ------------------------------------------------------------------------------------

// A 4-ary heap: half the depth of a binary one, and the four children of a node are adjacent.
void Reactor::sift_up(std::size_t i) noexcept {
    const HeapItem item = heap_[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 4;
        if (!(item.deadline < heap_[parent].deadline)) break;
        heap_[i] = heap_[parent];
        i = parent;
    }
    heap_[i] = item;
}

void Reactor::sift_down(std::size_t i) noexcept {
    const std::size_t n = heap_.size();
    const HeapItem item = heap_[i];
    for (;;) {
        const std::size_t first = 4 * i + 1;
        if (first >= n) break;
        const std::size_t end = first + 4 < n ? first + 4 : n;
        std::size_t least = first;
        for (std::size_t c = first + 1; c < end; ++c)
            if (heap_[c].deadline < heap_[least].deadline) least = c;
        if (!(heap_[least].deadline < item.deadline)) break;
        heap_[i] = heap_[least];
        i = least;
    }
    heap_[i] = item;
}

std::uint32_t Reactor::timer_slot(TimerEntry& e) {
    std::uint32_t slot;
    if (!free_timer_slots_.empty()) {
        slot = free_timer_slots_.back();
        free_timer_slots_.pop_back();
        timer_slots_[slot] = &e;
    } else {
        if (timer_slots_.size() >= TimerEntry::no_slot) throw std::length_error("async_io: too many armed timers");
        slot = static_cast<std::uint32_t>(timer_slots_.size());
        timer_slots_.push_back(&e);
        // Room for every slot to be free at once, so that freeing one (noexcept) never allocates.
        free_timer_slots_.reserve(timer_slots_.capacity());
    }
    e.slot = slot;
    return slot;
}

void Reactor::heap_push(std::chrono::steady_clock::time_point deadline, std::uint32_t slot) {
    heap_.push_back(HeapItem{deadline, slot});
    sift_up(heap_.size() - 1);
}

// Bottom-up (Floyd's) pop: the hole left at the top moves down along the least children to a
// leaf, then the last item rises from there. The last item nearly always belongs near the
// bottom, so this spends three comparisons per level where a plain sift-down spends four.
void Reactor::heap_pop() noexcept {
    free_timer_slots_.push_back(heap_[0].slot);  // never allocates: see timer_slot
    const HeapItem last = heap_.back();
    heap_.pop_back();
    const std::size_t n = heap_.size();
    if (n == 0) return;
    std::size_t hole = 0;
    for (;;) {
        const std::size_t first = 4 * hole + 1;
        std::size_t least;
        if (first + 4 <= n) {
            // The grandchildren of the hole, one of whose groups the next level reads, are 16
            // consecutive items, four whole cache lines (see HeapArray): load them while
            // comparing this level. Addresses as integers: the last lines may lie past the end,
            // which a prefetch tolerates (a bounds check per line cost 20 instructions a level).
            if (const std::size_t g = 4 * first + 1; g < n) {
                const auto line = reinterpret_cast<std::uintptr_t>(&heap_[g]);
                prefetch_for_write(reinterpret_cast<const void*>(line));
                prefetch_for_write(reinterpret_cast<const void*>(line + 64));
                prefetch_for_write(reinterpret_cast<const void*>(line + 128));
                prefetch_for_write(reinterpret_cast<const void*>(line + 192));
            }
            // Branch-free: which child is least is a coin toss the predictor cannot learn.
            const auto d0 = heap_[first].deadline.time_since_epoch().count();
            const auto d1 = heap_[first + 1].deadline.time_since_epoch().count();
            const auto d2 = heap_[first + 2].deadline.time_since_epoch().count();
            const auto d3 = heap_[first + 3].deadline.time_since_epoch().count();
            const std::size_t c01 = d1 < d0, c23 = d3 < d2;
            const auto m01 = c01 ? d1 : d0;
            const auto m23 = c23 ? d3 : d2;
            const std::size_t a = first + c01;
            const std::size_t b = first + 2 + c23;
            const std::size_t pick = m23 < m01;
            least = a + ((b - a) & (std::size_t{0} - pick));
        } else if (first < n) {
            least = first;
            for (std::size_t c = first + 1; c < n; ++c)
                if (heap_[c].deadline < heap_[least].deadline) least = c;
        } else {
            break;
        }
        heap_[hole] = heap_[least];
        hole = least;
    }
    heap_[hole] = last;
    sift_up(hole);
}

void Reactor::prune_cancelled() noexcept {
    while (!heap_.empty() && !timer_slots_[heap_[0].slot]) {
        heap_pop();
        --cancelled_in_heap_;
    }
}

void Reactor::cancel_slot(TimerEntry& e) noexcept {
    timer_slots_[e.slot] = nullptr;
    e.slot = TimerEntry::no_slot;
    ++cancelled_in_heap_;
    if (cancelled_in_heap_ < 1024 || cancelled_in_heap_ * 2 < heap_.size()) {
        prune_cancelled();
        return;
    }
    // Rebuild without the cancelled items (Floyd's heap construction, O(n)).
    std::size_t kept = 0;
    for (const HeapItem& item : heap_) {
        if (timer_slots_[item.slot]) {
            heap_[kept++] = item;
        } else {
            free_timer_slots_.push_back(item.slot);
        }
    }
    heap_.resize(kept);
    cancelled_in_heap_ = 0;
    for (std::size_t i = kept / 4 + 1; i-- > 0;)
        if (i < kept) sift_down(i);
}

void Reactor::timer_insert(TimerEntry& e, std::chrono::steady_clock::time_point deadline) {
    bool wake_driver;
    {
        std::lock_guard g(timers_mu_);
        if (heap_.size() == heap_.capacity()) heap_.reserve(2 * heap_.size() + 64);  // before taking a slot
        const std::uint32_t slot = timer_slot(e);
        heap_push(deadline, slot);  // no allocation now: cannot throw
        e.state = NodeState::waiting;
        wake_driver = heap_[0].slot == slot && sleeping_with_deadline_ && deadline < sleep_deadline_;
    }
    if (wake_driver) poller_->notify();
}

bool Reactor::owns(const TimerEntry& e) const noexcept {
    return e.slot < timer_slots_.size() && timer_slots_[e.slot] == &e;
}

void Reactor::timer_remove(TimerEntry& e) noexcept {
    {
        std::lock_guard g(timers_mu_);
        if (e.slot != TimerEntry::no_slot) {
            if (!owns(e)) {
                // Armed in the reactor that fork() abandoned (a timer of the parent's, destroyed
                // in the child): forget it; its task is the parent's, touch nothing of it.
                e.slot = TimerEntry::no_slot;
                e.state = NodeState::idle;
                return;
            }
            cancel_slot(e);
            e.state = NodeState::idle;
            return;
        }
    }
    e.task->cancel_ready(e);  // it fired: it waits in its task's ready list, if anywhere
}

void Reactor::timer_reset(TimerEntry& e, std::chrono::steady_clock::time_point deadline) {
    {
        std::lock_guard g(timers_mu_);
        if (e.slot != TimerEntry::no_slot && owns(e)) cancel_slot(e);
        e.slot = TimerEntry::no_slot;
    }
    // If it already fired, its node waits in the task's ready list: disarm that wake.
    e.task->cancel_ready(e);
    timer_insert(e, deadline);
}

// Wakes the due timers, in deadline order; cancelled items are dropped on the way.
//
// In batches, in stages: a due item leads to its slot in the table, the slot to the entry (in
// the sleeping frame), the entry to its task's core (in the frame's block), each an address known
// only once the one before is loaded, and with many timers armed each is a cache miss. Popping a
// batch first (prefetching the slots), then reading its entries (prefetching their tasks), lets
// the misses of one stage overlap instead of costing one round trip to memory each, one after
// the other. Reading the table after popping is safe: slots are reused only by timer_insert,
// which waits for timers_mu_, held here.
void Reactor::fire_timers(std::chrono::steady_clock::time_point now) noexcept {
    constexpr std::size_t batch = 32;
    std::uint32_t slots[batch];
    TimerEntry* due[batch];
    for (;;) {
        std::size_t n = 0;
        while (n < batch && !heap_.empty() && heap_[0].deadline <= now) {
            const std::uint32_t slot = heap_[0].slot;
            prefetch_for_write(&timer_slots_[slot]);
            slots[n++] = slot;
            heap_pop();
        }
        std::size_t m = 0;
        for (std::size_t i = 0; i < n; ++i) {
            TimerEntry* e = timer_slots_[slots[i]];
            if (!e) {
                --cancelled_in_heap_;
                continue;
            }
            prefetch_for_write(e);
            due[m++] = e;
        }
        for (std::size_t i = 0; i < m; ++i) prefetch_for_write(due[i]->task);
        for (std::size_t i = 0; i < m; ++i) {
            due[i]->slot = TimerEntry::no_slot;
            due[i]->task->wake(*due[i]);
        }
        if (n < batch) return;
    }
}

std::size_t Reactor::timer_count() {
    std::lock_guard g(timers_mu_);
    return heap_.size() - cancelled_in_heap_;
}

// ---- one round ---------------------------------------------------------------------------------

// Adds one to a counter that only the reactor lock's holder writes: a load and a store, no
// locked instruction (see rounds_).
static void count_round(std::atomic<std::uint64_t>& counter) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void Reactor::react(Parker* self, bool block) {
    using clock = std::chrono::steady_clock;
    count_round(rounds_);
    if (block) count_round(blocking_rounds_);
    std::optional<std::chrono::nanoseconds> timeout{std::chrono::nanoseconds::zero()};
    {
        std::lock_guard g(timers_mu_);
        clock::time_point now{};  // read only if a timer is armed: the clock costs ~40 ns here
        if (!heap_.empty()) {
            now = clock::now();
            fire_timers(now);
        }
        if (block) {
            prune_cancelled();  // the next deadline is a live timer's
            if (heap_.empty()) {
                timeout.reset();
                sleep_deadline_ = clock::time_point::max();
            } else {
                sleep_deadline_ = heap_[0].deadline;
                timeout = sleep_deadline_ - now;
            }
            sleeping_with_deadline_ = true;
        }
    }
    if (block) {
        // Pairs with Parker::unpark: either it sees sleeping_ and notifies the poller, or we see
        // that our own task was woken and do not block.
        sleeping_.store(true, std::memory_order_seq_cst);
        if (self && !self->is_driving()) timeout = std::chrono::nanoseconds::zero();
    }
    std::size_t n = 0;
    try {
        n = poller_->wait(events_, timeout);
    } catch (...) {
        sleeping_.store(false, std::memory_order_relaxed);
        std::lock_guard g(timers_mu_);
        sleeping_with_deadline_ = false;
        throw;
    }
    if (block) sleeping_.store(false, std::memory_order_relaxed);
    {
        // One lock for both: the timers due after the wait fire before the events are
        // dispatched (the order of wakes within one round is not observable).
        std::lock_guard g(timers_mu_);
        sleeping_with_deadline_ = false;
        if (!heap_.empty()) fire_timers(clock::now());
    }
    if (n) dispatch(n);
}

void Reactor::notify_if_sleeping() noexcept {
    if (sleeping_.load(std::memory_order_seq_cst)) poller_->notify();
}

// ---- the exported entry points of include/async_io/detail/reactor.hpp --------------------------

Source* add_source(int fd) { return Reactor::get().add_source(fd); }
void remove_source(Source* s) noexcept { Reactor::get().remove_source(s); }
int source_link(Source& s, Direction d, WaitNode& n, std::uint32_t seen) noexcept {
    return Reactor::get().source_link(s, d, n, seen);
}
void source_unlink(Source& s, Direction d, WaitNode& n) noexcept { Reactor::get().source_unlink(s, d, n); }
void timer_insert(TimerEntry& e, std::chrono::steady_clock::time_point deadline) {
    Reactor::get().timer_insert(e, deadline);
}
void timer_remove(TimerEntry& e) noexcept { Reactor::get().timer_remove(e); }
void timer_reset(TimerEntry& e, std::chrono::steady_clock::time_point deadline) {
    Reactor::get().timer_reset(e, deadline);
}

}  // namespace async_io::detail
