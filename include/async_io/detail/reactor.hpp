// The part of the reactor (src/reactor.cpp) that the inline awaitables in the public headers
// need: I/O sources with their per-direction readiness cache and waiter lists, and timer entries.
// Users never touch these types directly.
#pragma once

#include <async_io/detail/export.hpp>
#include <async_io/detail/wait.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace async_io::detail {

/// Bits of Source::state.
inline constexpr std::uint32_t state_ready = 1u;
inline constexpr std::uint32_t state_closed = 2u;
inline constexpr std::uint32_t state_tick = 4u;  ///< one tick

/// One registered fd. Created by `Reactor::add_source` (registered once, edge-triggered for both
/// directions where the backend can; see DESIGN.md "Readiness at the limit"), owned by the
/// `Async<T>` that wraps the fd, destroyed by `Reactor::remove_source`.
///
/// Readiness cache, one word per direction: bit 0 = "may be ready", bit 1 = "closed" (the peer
/// hung up or an error is pending: sticky, since no further edge would ever report it), the rest
/// = an event tick that the reactor bumps on every event for that direction. An operation tries
/// its syscall if bit 0 or bit 1 is set; on would-block (or after draining the kernel buffer) it
/// clears bit 0 only if the word is unchanged since it read it (a compare-exchange, no lock), so
/// an event that arrives during the syscall is never lost. A waiter links itself only if the word
/// is still what it last saw, under `lock`; the reactor bumps the word and takes the waiters
/// under the same lock.
struct Source {
    // Ordered largest first: 56 bytes, one 64-byte malloc chunk (a connection has two).
    std::uint64_t key = 0;
    WaitList waiters[2];           ///< per Direction; any number of waiters each; guarded by lock
    std::atomic<std::uint32_t> state[2] = {1u, 1u};  ///< per Direction: tick << 2 | closed << 1 | maybe-ready
    int fd = -1;
    SpinLock lock;                 ///< guards waiters and armed
    std::uint8_t armed = 0;        ///< oneshot backends: interest currently armed (bit per Direction)
    /// A hint for stream reads, see read_hint_*: whether a read that finds the ready bit clear
    /// (the last read drained the socket) should try its syscall anyway. Only a hint: racing
    /// updates from several coroutines cost at most one syscall, never a wakeup.
    std::atomic<std::uint8_t> read_hint{0};
    /// For TCP streams with TCP_INQ: set when the last read() returned fewer bytes than asked, so
    /// the next one uses plain recv(2), which tells "drained" by its short count alone, instead
    /// of recvmsg(2) with a TCP_INQ control message (about 130 ns more in the kernel and 55
    /// instructions of msghdr/cmsg handling here, measured). A read that fills its buffer clears
    /// it: only TCP_INQ can then tell whether the socket was drained. Only a hint: a stale value
    /// costs at most one syscall (a full plain recv leaves the ready bit set), never a wakeup.
    std::atomic<std::uint8_t> short_reads{0};
};
static_assert(sizeof(Source) <= 56 || sizeof(void*) != 8);

/// Source::read_hint bits. After a read drains the socket, the next read waits for the next
/// event (no syscall) unless `read_hint_speculate` is set: it is set by the drain and cleared by
/// any write on the same source (a request just sent cannot have been answered yet: the
/// ping-pong pattern, 1 read per event), so a read that follows a drain without an own write in
/// between (data produced elsewhere: the read-with-timeout pattern) tries at once. One failed
/// speculation (EAGAIN) sets `read_hint_off` and ends speculation on that source for good.
inline constexpr std::uint8_t read_hint_speculate = 1;
inline constexpr std::uint8_t read_hint_off = 2;

/// Registers `fd` with the reactor (creating the reactor on first use). Throws
/// std::system_error naming the problem: "regular files cannot be polled" (EPERM), EEXIST for an
/// fd that another Source already holds (which keeps working), EBADF for a closed fd.
ASYNC_IO_API Source* add_source(int fd);
/// Deregisters and frees `s`. No waiter may be linked (their awaiters hold a reference to the
/// owning Async). Never throws (a fd closed behind the library's back is tolerated).
ASYNC_IO_API void remove_source(Source* s) noexcept;

/// Links `n` (whose task and handle are set) as a waiter of `s` in direction `d` and returns 1,
/// unless the readiness word changed from `seen` (an event arrived): then returns 0 and links
/// nothing. Arms the direction on backends without edge mode; if that fails, returns -errno.
ASYNC_IO_API int source_link(Source& s, Direction d, WaitNode& n, std::uint32_t seen) noexcept;
/// The cancel half: unlinks `n` if it is linked in `s`, else removes it from its task's ready
/// list. Only the thread that runs `n`'s task.
ASYNC_IO_API void source_unlink(Source& s, Direction d, WaitNode& n) noexcept;

/// A pending timer: lives in the awaiting frame. While armed, `slot` names the reactor's slot
/// that points at it (guarded by the reactor's timer lock); `no_slot` otherwise. A WaitNode by
/// inheritance rather than by member, so that `slot` and the awaiter's `armed` flag fill the
/// node's tail padding (40 bytes in all, where a member node made it 48).
struct TimerEntry : WaitNode {
    static constexpr std::uint32_t no_slot = UINT32_MAX;
    bool armed = false;  ///< owned by the awaiter (Timer::Awaiter): the reactor may hold it
    std::uint32_t slot = no_slot;
};
#if !defined(_MSC_VER)  // the Itanium C++ ABI reuses a non-POD base's tail padding; MSVC does not
static_assert(sizeof(TimerEntry) == sizeof(WaitNode), "TimerEntry's fields should fit in WaitNode's tail padding");
#endif

/// Arms `e` (task and handle set): it is woken once `deadline` has passed. Interrupts
/// a driver sleeping past the new deadline. Throws std::bad_alloc (nothing armed then).
ASYNC_IO_API void timer_insert(TimerEntry& e, std::chrono::steady_clock::time_point deadline);
/// The cancel half: disarms `e`, or, if it already fired, removes it from its task's ready list.
/// Only the thread that runs `e`'s task. O(1) amortised; memory stays proportional to the
/// number of armed timers.
ASYNC_IO_API void timer_remove(TimerEntry& e) noexcept;
/// Changes the deadline of a waiting `e` (re-arms it if it already fired but was not resumed).
/// Only the thread that runs `e`'s task.
ASYNC_IO_API void timer_reset(TimerEntry& e, std::chrono::steady_clock::time_point deadline);

}  // namespace async_io::detail
