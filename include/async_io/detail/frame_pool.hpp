// The memory of Task frames: a per-thread pool of fixed-size blocks (src/frame_pool.cpp).
#pragma once

#include <async_io/detail/export.hpp>

#include <cstddef>

namespace async_io::detail::frame_pool {

/// The largest block the pool serves; a larger frame comes from `::operator new`.
inline constexpr std::size_t max_block = 1024;

/// A block of at least `n` bytes, aligned to 16, from the calling thread's pool; nullptr if
/// `n > max_block` or the pool is off (then the caller uses `::operator new`). Throws
/// std::bad_alloc if the system has no memory left.
///
/// Why a pool: a spawned task is one block (its frame with the task's state in front), made
/// and freed once per task, and a program may hold a million of them. Carving blocks in
/// sequence out of 2 MiB segments, each holding one block size, and keeping freed blocks on
/// the segment's free list costs a few instructions each way where malloc and free cost about
/// a hundred (free also reads the neighbouring chunks, a cache miss each when the blocks were
/// scattered), and the third and later segments of one size are hinted to the kernel as
/// transparent huge pages (madvise), which takes page faults and TLB misses out of walking a
/// million sleeping frames. Measured with benches/async_io_bench `timers`: README.
///
/// Threads: every thread allocates from its own segments; a block may be freed on any thread.
/// A block freed by its segment's owning thread goes on the segment's free list; one freed by
/// another thread is pushed (lock-free) onto the segment's remote list, which the owner takes
/// over when it runs short. A segment whose blocks are all free is returned to the system,
/// except a thread's current segment of each size and one spare per thread, so that a burst
/// does not map and unmap repeatedly: what a thread keeps after its frames are gone is at most
/// 2 MiB (the pages it touched) per block size it used, plus 2 MiB. Segments that other
/// threads emptied are seen as empty only when the owner next runs short of blocks of that
/// size (then it keeps one of them): a thread that made many frames which other threads freed,
/// and then stops making frames of that size, keeps their memory until it makes more or
/// exits. When a thread exits, its empty segments are unmapped and those that still hold
/// blocks are abandoned to a process-wide list; the next thread that needs a segment of that
/// size adopts one. An abandoned segment whose blocks have all been freed since stays mapped
/// until some thread needs a new segment of any size (that thread reuses one such segment,
/// keeps one as its spare and unmaps the others) or trim() is called.
///
/// fork(): the child's thread (the one that forked) keeps its pool, and adopts abandoned
/// segments as any thread does. The segments of the parent's other running threads, which
/// the child does not have, are nobody's there: their blocks may still be freed (they stay
/// allocated: the child leaks those segments), and no thread of the child ever takes them
/// over, not even one that happens to get such a thread's TLS.
///
/// Off when the library is built with AddressSanitizer (so that it sees every frame's
/// lifetime), where the OS offers no mmap, and when the environment variable
/// ASYNC_IO_FRAME_POOL is `0` at start-up (for valgrind users, say).
ASYNC_IO_API void* allocate(std::size_t n);

/// Returns a block that `allocate` gave (not nullptr), from any thread.
ASYNC_IO_API void deallocate(void* block) noexcept;

/// The pool's state, for tests and diagnostics. Counts are process-wide and exact once the
/// threads that allocate or free blocks are quiescent.
struct Stats {
    std::size_t segments = 0;   ///< segments mapped (2 MiB of address space each)
    std::size_t abandoned = 0;  ///< of which left by exited threads and not adopted yet
    std::size_t huge = 0;       ///< of which hinted as huge pages
};
ASYNC_IO_API Stats stats() noexcept;

/// Unmaps the abandoned segments whose blocks have all been freed since their threads exited
/// (what a thread that needs a new segment does first). For tests, and for a program that
/// wants that memory back at once after its threads are gone.
ASYNC_IO_API void trim() noexcept;

/// Whether the pool serves blocks in this process (see allocate).
ASYNC_IO_API bool enabled() noexcept;

}  // namespace async_io::detail::frame_pool
