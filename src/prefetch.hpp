// A hint to start loading memory that is about to be written: used where the library walks
// objects scattered over memory (due timers, queued tasks, the timer heap's lower levels).
// Internal to the library's sources.
#pragma once

namespace async_io::detail {

/// Starts loading the cache line at `p` for writing. Never faults, whatever `p` points at (it
/// may even have been freed meanwhile): only a hint, not an access.
inline void prefetch_for_write(const void* p) noexcept {
#if defined(__GNUC__)
    __builtin_prefetch(p, 1);
#else
    (void)p;
#endif
}

}  // namespace async_io::detail
