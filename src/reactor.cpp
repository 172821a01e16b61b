// The reactor: registered sources and their waiters, the timer heap, and one round of
// wait-and-dispatch (`react`). Who drives it, and when, is src/driver.cpp's business.
#include "reactor.hpp"

#include "parker.hpp"

#include <async_io/detail/sys.hpp>

#include <cerrno>
#include <optional>
#include <string>
#include <system_error>

namespace async_io::detail {

namespace {

constexpr std::uint8_t bit(Direction d) noexcept { return static_cast<std::uint8_t>(1u << static_cast<unsigned>(d)); }
constexpr std::size_t npos = static_cast<std::size_t>(-1);

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

}  // namespace

Reactor& Reactor::get() {
    // Never destroyed: detached threads and static destructors of user code may still use it.
    static Reactor* const r = new Reactor();
    return *r;
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
    try {
        poller_->remove(s->fd);
    } catch (const std::system_error&) {
        // The fd was closed behind our back (the kernel dropped the registration with it).
    }
    {
        std::lock_guard g(sources_mu_);  // dispatch holds it while it touches sources
        const auto idx = static_cast<std::uint32_t>(s->key & 0xffffffffu);
        slots_[idx].source = nullptr;
        ++slots_[idx].generation;
        slots_[idx].next_free = free_head_;
        free_head_ = idx;
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
    if (!edge_ && !(s.armed & bit(d))) {
        s.armed |= bit(d);
        try {
            poller_->modify(s.fd, s.key, interest_of(s.armed), PollMode::oneshot);
        } catch (const std::system_error& e) {
            s.armed &= static_cast<std::uint8_t>(~bit(d));
            s.waiters[i].erase(n);
            n.state = NodeState::idle;
            s.lock.unlock();
            return e.code().value() > 0 ? -e.code().value() : -EIO;
        }
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
        for (unsigned i = 0; i < 2; ++i) {
            bump(s.state[i], true);
            while (WaitNode* n = s.waiters[i].pop_front()) n->task->wake(*n);
        }
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
        const bool ready[2] = {ev.readable || ev.read_closed, ev.writable || ev.write_closed};
        const bool closed[2] = {ev.read_closed, ev.write_closed};
        for (unsigned i = 0; i < 2; ++i) {
            if (!ready[i]) continue;
            bump(s.state[i], closed[i]);
            while (WaitNode* n = s.waiters[i].pop_front()) n->task->wake(*n);
        }
        if (!edge_) rearm(s);
        s.lock.unlock();
    }
}

// ---- timers ------------------------------------------------------------------------------------

void Reactor::sift_up(std::size_t i) noexcept {
    const HeapItem item = heap_[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (!(item.deadline < heap_[parent].deadline)) break;
        heap_[i] = heap_[parent];
        heap_[i].entry->heap_index = i;
        i = parent;
    }
    heap_[i] = item;
    item.entry->heap_index = i;
}

void Reactor::sift_down(std::size_t i) noexcept {
    const std::size_t n = heap_.size();
    const HeapItem item = heap_[i];
    for (;;) {
        const std::size_t l = 2 * i + 1;
        if (l >= n) break;
        std::size_t least = l;
        if (l + 1 < n && heap_[l + 1].deadline < heap_[l].deadline) least = l + 1;
        if (!(heap_[least].deadline < item.deadline)) break;
        heap_[i] = heap_[least];
        heap_[i].entry->heap_index = i;
        i = least;
    }
    heap_[i] = item;
    item.entry->heap_index = i;
}

void Reactor::heap_erase(TimerEntry& e) noexcept {
    const std::size_t i = e.heap_index;
    const std::size_t last = heap_.size() - 1;
    if (i != last) {
        heap_[i] = heap_[last];
        heap_.pop_back();
        heap_[i].entry->heap_index = i;
        sift_down(i);
        sift_up(heap_[i].entry->heap_index);
    } else {
        heap_.pop_back();
    }
    e.heap_index = npos;
}

void Reactor::timer_insert(TimerEntry& e) {
    bool wake_driver;
    {
        std::lock_guard g(timers_mu_);
        e.node.state = NodeState::waiting;
        heap_.push_back(HeapItem{e.deadline, &e});
        sift_up(heap_.size() - 1);
        wake_driver = e.heap_index == 0 && sleeping_with_deadline_ && e.deadline < sleep_deadline_;
    }
    if (wake_driver) poller_->notify();
}

void Reactor::timer_remove(TimerEntry& e) noexcept {
    {
        std::lock_guard g(timers_mu_);
        if (e.heap_index != npos) {
            heap_erase(e);
            e.node.state = NodeState::idle;
            return;
        }
    }
    e.node.task->cancel_ready(e.node);  // it fired: it waits in its task's ready list, if anywhere
}

void Reactor::timer_reset(TimerEntry& e, std::chrono::steady_clock::time_point deadline) {
    bool in_heap, wake_driver = false;
    {
        std::lock_guard g(timers_mu_);
        in_heap = e.heap_index != npos;
        if (in_heap) {
            e.deadline = deadline;
            heap_[e.heap_index].deadline = deadline;
            sift_down(e.heap_index);
            sift_up(e.heap_index);
            wake_driver = e.heap_index == 0 && sleeping_with_deadline_ && deadline < sleep_deadline_;
        }
    }
    if (in_heap) {
        if (wake_driver) poller_->notify();
        return;
    }
    // It already fired (its node waits in the task's ready list) or never was armed: disarm
    // that wake and arm it anew.
    e.node.task->cancel_ready(e.node);
    e.deadline = deadline;
    timer_insert(e);
}

void Reactor::fire_timers(std::chrono::steady_clock::time_point now) noexcept {
    while (!heap_.empty() && heap_[0].deadline <= now) {
        TimerEntry& e = *heap_[0].entry;
        heap_erase(e);
        e.node.task->wake(e.node);
    }
}

std::size_t Reactor::timer_count() {
    std::lock_guard g(timers_mu_);
    return heap_.size();
}

// ---- one round ---------------------------------------------------------------------------------

void Reactor::react(Parker* self, bool block) {
    using clock = std::chrono::steady_clock;
    std::optional<std::chrono::nanoseconds> timeout{std::chrono::nanoseconds::zero()};
    {
        std::lock_guard g(timers_mu_);
        const auto now = clock::now();
        fire_timers(now);
        if (block) {
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
    if (block) {
        sleeping_.store(false, std::memory_order_relaxed);
        std::lock_guard g(timers_mu_);
        sleeping_with_deadline_ = false;
    }
    if (n) dispatch(n);
    std::lock_guard g(timers_mu_);
    if (!heap_.empty()) fire_timers(clock::now());
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
void timer_insert(TimerEntry& e) { Reactor::get().timer_insert(e); }
void timer_remove(TimerEntry& e) noexcept { Reactor::get().timer_remove(e); }
void timer_reset(TimerEntry& e, std::chrono::steady_clock::time_point deadline) {
    Reactor::get().timer_reset(e, deadline);
}

}  // namespace async_io::detail
