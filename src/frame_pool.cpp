// The Task frame pool (include/async_io/detail/frame_pool.hpp has the contract).
//
// Layout. A segment is 2 MiB of address space aligned to 2 MiB (so the segment of a block is
// the block's address with the low 21 bits cleared, and a segment can be one transparent huge
// page). Its first 128 bytes are the Segment header; the rest is carved into blocks of one size
// (a multiple of 16 up to max_block), handed out first from the free list, then in address
// order from the untouched tail (`bump`), so a fresh segment is touched page by page as it
// fills.
//
// Ownership. Each thread has a Heap (thread_local), which owns segments: only the owner reads
// or writes a segment's `free`, `bump`, `used` and list links. Any other thread that frees a
// block pushes it onto the segment's `remote` stack (a CAS loop; the owner takes the whole
// stack with one exchange, so there is no ABA). `used` counts the blocks not on the free list,
// remote ones included, so a segment with used == 0 has no block anywhere outside it: nobody
// can touch it again, and the owner may unmap it.
//
// A segment names its owner by the Heap's id, a number no other Heap of the process ever had,
// not by its address: after fork() the child's new threads may be given the static TLS, and so
// the Heap address, of a parent thread the child does not have (glibc reuses those threads'
// stacks), and would take that thread's segments for their own, with list links that belong to
// another heap. With ids, the segments of the vanished threads simply have no owner that runs:
// frees into them go onto their remote stacks and stay there (the child leaks them, no more).
//
// A thread that exits hands its segments that still have blocks out to the process-wide
// abandoned list (under a mutex, which orders its last writes before the adopter's reads); a
// thread that needs a new segment of that size adopts one first, takes over its free list, and
// collects its remote stack. A thread that needs a new segment and finds none of its size
// takes back, before it maps one, the abandoned segments of any size that have been emptied
// since (their remote stacks hold all their blocks out).
#include <async_io/detail/frame_pool.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sys/mman.h>
#define ASYNC_IO_HAVE_PTHREAD_ATFORK 1
#define ASYNC_IO_FRAME_POOL_MMAP 1
#else
#define ASYNC_IO_FRAME_POOL_MMAP 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define ASYNC_IO_FRAME_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYNC_IO_FRAME_POOL_ASAN 1
#endif
#endif
#ifndef ASYNC_IO_FRAME_POOL_ASAN
#define ASYNC_IO_FRAME_POOL_ASAN 0
#endif

namespace async_io::detail::frame_pool {
namespace {

constexpr std::size_t segment_size = std::size_t{2} << 20;
constexpr std::size_t granule = 16;
constexpr std::size_t class_count = max_block / granule + 1;  // class c holds blocks of c * 16 bytes
constexpr std::size_t header_size = 128;
/// A thread hints a new segment of one size as a huge page once it owns this many of that size:
/// the size is then in heavy use, and a small program keeps its few frames on small pages.
constexpr std::size_t huge_after = 2;

struct FreeBlock {
    FreeBlock* next;
};

struct Heap;

struct Segment {
    std::atomic<FreeBlock*> remote{nullptr};  // blocks freed by other threads (any thread pushes)
    std::atomic<std::uint64_t> owner{0};      // the owner Heap's id; 0 while abandoned
    // The owner's only:
    FreeBlock* free = nullptr;
    unsigned char* bump = nullptr;  // the never-used tail starts here
    unsigned char* end = nullptr;
    std::size_t used = 0;           // blocks not on `free` (handed out, or on `remote`)
    Segment* prev = nullptr;        // the owner's list of its segments of this size; `next`
    Segment* next = nullptr;        // alone links the abandoned list (a stack, under Global::mu)
    Segment* partial_prev = nullptr;  // the owner's list of its segments (not the current one)
    Segment* partial_next = nullptr;  // that have blocks on `free`
    std::uint32_t block_size = 0;
    std::uint8_t cls = 0;
    bool in_partial = false;
    bool huge = false;
};
static_assert(sizeof(Segment) <= header_size);

Segment* segment_of(void* block) noexcept {
    return reinterpret_cast<Segment*>(reinterpret_cast<std::uintptr_t>(block) & ~(segment_size - 1));
}

struct SizeClass {
    Segment* current = nullptr;  // where allocation takes blocks from
    Segment* all = nullptr;      // every segment of this size the thread owns
    Segment* partial = nullptr;  // of those, the ones other than `current` with free blocks
    std::size_t owned = 0;
    std::size_t taken = 0;       // blocks allocated, ever
    std::size_t taken_at_walk = 0;
};

struct Heap {
    std::uint64_t id = 0;  // unique in the process, never 0 (see "A segment names its owner")
    SizeClass classes[class_count];
    Segment* spare = nullptr;  // one empty segment kept, of no size yet
};

struct Global {
    std::mutex mu;
    Segment* abandoned[class_count] = {};
    std::atomic<std::size_t> segments{0};
    std::atomic<std::size_t> abandoned_count{0};
    std::atomic<std::size_t> huge{0};
};
// Never destroyed: threads may exit, and frames be freed, after static destructors ran.
// fork(): the mutex is held across it (pthread_atfork), so that the child never inherits it
// locked by a thread it does not have.
Global& global() {
    static Global* const g = [] {
        auto* p = new Global;
#if defined(ASYNC_IO_HAVE_PTHREAD_ATFORK)
        ::pthread_atfork([] { global().mu.lock(); }, [] { global().mu.unlock(); }, [] { global().mu.unlock(); });
#endif
        return p;
    }();
    return *g;
}

bool compute_enabled() noexcept {
    if (!ASYNC_IO_FRAME_POOL_MMAP || ASYNC_IO_FRAME_POOL_ASAN) return false;
    const char* e = std::getenv("ASYNC_IO_FRAME_POOL");
    return !(e && e[0] == '0' && e[1] == '\0');
}
// Dynamic initialisation: a frame made by another library's static initialiser before this
// one ran sees false (static storage starts zeroed) and comes from ::operator new; its header
// says so, so it is freed the same way.
bool pool_on = compute_enabled();

// ---- segments ----------------------------------------------------------------------------------

#if ASYNC_IO_FRAME_POOL_MMAP
void* map_segment() {
    // Twice the size, then trim to a 2 MiB-aligned 2 MiB.
    const std::size_t len = 2 * segment_size;
    void* r = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) throw std::bad_alloc();
    const auto raw = reinterpret_cast<std::uintptr_t>(r);
    const std::uintptr_t base = (raw + segment_size - 1) & ~(segment_size - 1);
    if (base > raw) ::munmap(r, base - raw);
    if (const std::uintptr_t tail = raw + len - (base + segment_size); tail > 0)
        ::munmap(reinterpret_cast<void*>(base + segment_size), tail);
    return reinterpret_cast<void*>(base);
}
void unmap_segment(Segment* s) noexcept {
    Global& g = global();
    if (s->huge) g.huge.fetch_sub(1, std::memory_order_relaxed);
    g.segments.fetch_sub(1, std::memory_order_relaxed);
    s->~Segment();
    ::munmap(static_cast<void*>(s), segment_size);
}
bool hint_huge(void* base) noexcept {
#if defined(MADV_HUGEPAGE)
    return ::madvise(base, segment_size, MADV_HUGEPAGE) == 0;
#else
    (void)base;
    return false;
#endif
}
#else
void* map_segment() { throw std::bad_alloc(); }
void unmap_segment(Segment*) noexcept {}
bool hint_huge(void*) noexcept { return false; }
#endif

/// Sets up `s`'s header for blocks of class `c` (its memory is a fresh or an emptied segment).
void format(Segment* s, std::size_t c, Heap& h) noexcept {
    auto* base = reinterpret_cast<unsigned char*>(s);
    s->owner.store(h.id, std::memory_order_relaxed);
    s->free = nullptr;
    s->bump = base + header_size;
    s->end = base + segment_size;
    s->used = 0;
    s->prev = s->next = nullptr;
    s->partial_prev = s->partial_next = nullptr;
    s->in_partial = false;
    s->block_size = static_cast<std::uint32_t>(c * granule);
    s->cls = static_cast<std::uint8_t>(c);
}

void link_owned(SizeClass& sc, Segment* s) noexcept {
    s->prev = nullptr;
    s->next = sc.all;
    if (sc.all) sc.all->prev = s;
    sc.all = s;
    ++sc.owned;
}
void unlink_owned(SizeClass& sc, Segment* s) noexcept {
    if (s->prev) s->prev->next = s->next; else sc.all = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = nullptr;
    --sc.owned;
}
void link_partial(SizeClass& sc, Segment* s) noexcept {
    s->partial_prev = nullptr;
    s->partial_next = sc.partial;
    if (sc.partial) sc.partial->partial_prev = s;
    sc.partial = s;
    s->in_partial = true;
}
void unlink_partial(SizeClass& sc, Segment* s) noexcept {
    if (s->partial_prev) s->partial_prev->partial_next = s->partial_next; else sc.partial = s->partial_next;
    if (s->partial_next) s->partial_next->partial_prev = s->partial_prev;
    s->partial_prev = s->partial_next = nullptr;
    s->in_partial = false;
}

/// Moves `s`'s remote stack onto its free list. True if `s` has a free block afterwards.
bool collect(Segment* s) noexcept {
    FreeBlock* r = s->remote.exchange(nullptr, std::memory_order_acquire);
    if (r) {
        std::size_t n = 1;
        FreeBlock* tail = r;
        while (tail->next) {
            tail = tail->next;
            ++n;
        }
        tail->next = s->free;
        s->free = r;
        s->used -= n;
    }
    return s->free != nullptr;
}

void* take(Segment* s) noexcept {
    ++s->used;
    if (FreeBlock* b = s->free) {
        s->free = b->next;
        return b;
    }
    void* p = s->bump;
    s->bump += s->block_size;
    return p;
}
bool can_take(const Segment* s) noexcept {
    return s->free || static_cast<std::size_t>(s->end - s->bump) >= s->block_size;
}

/// `s` (owned by `h`, not current) has no block out: give it up (keep it as the spare, or unmap).
void retire(Heap& h, Segment* s) noexcept {
    SizeClass& sc = h.classes[s->cls];
    if (s->in_partial) unlink_partial(sc, s);
    unlink_owned(sc, s);
    if (!h.spare) {
        s->owner.store(0, std::memory_order_relaxed);
        h.spare = s;
    } else {
        unmap_segment(s);
    }
}

/// Unmaps the segments of a list linked through `next`.
void unmap_all(Segment* list) noexcept {
    while (list) unmap_segment(std::exchange(list, list->next));
}

/// Takes off the abandoned lists every segment whose blocks have all been freed since its
/// thread exited, linked through `next`. Under the mutex the listed segments are nobody's, so
/// their owner-only fields are ours to read and write (other threads only push onto their
/// remote stacks).
Segment* take_emptied_abandoned(Global& g) noexcept {
    if (g.abandoned_count.load(std::memory_order_relaxed) == 0) return nullptr;
    Segment* emptied = nullptr;
    std::lock_guard lock(g.mu);
    for (std::size_t k = 1; k < class_count; ++k) {
        for (Segment** link = &g.abandoned[k]; Segment* s = *link;) {
            collect(s);
            if (s->used != 0) {
                link = &s->next;
                continue;
            }
            *link = s->next;
            g.abandoned_count.fetch_sub(1, std::memory_order_relaxed);
            s->next = emptied;
            emptied = s;
        }
    }
    return emptied;
}

/// A segment of class `c` for `h` with a block to take: adopted, the spare, an abandoned one
/// that is empty now (of any size), or a new one. Abandoned segments are otherwise only looked
/// at by threads that need their size: this is where the emptied ones of other sizes go back
/// (one becomes the spare, the rest are unmapped), before a fresh segment is mapped.
Segment* new_segment(Heap& h, std::size_t c) {
    SizeClass& sc = h.classes[c];
    Global& g = global();
    for (;;) {
        Segment* s;
        {
            std::lock_guard lock(g.mu);
            s = g.abandoned[c];
            if (!s) break;
            g.abandoned[c] = s->next;
        }
        g.abandoned_count.fetch_sub(1, std::memory_order_relaxed);
        s->owner.store(h.id, std::memory_order_relaxed);
        link_owned(sc, s);
        if (collect(s) || can_take(s)) return s;
        // every block of it is still out: keep it (its frees will come to us), look further
    }
    Segment* emptied = take_emptied_abandoned(g);
    Segment* s = std::exchange(h.spare, nullptr);
    if (!s && emptied) s = std::exchange(emptied, emptied->next);
    if (emptied) h.spare = std::exchange(emptied, emptied->next);  // abandoned: owner is 0 already
    unmap_all(emptied);
    if (!s) {
        void* base = map_segment();
        g.segments.fetch_add(1, std::memory_order_relaxed);
        // Before the header is written: the first touch then faults in the whole huge page.
        const bool huge = sc.owned >= huge_after && hint_huge(base);
        s = ::new (base) Segment;
        if (huge) {
            s->huge = true;
            g.huge.fetch_add(1, std::memory_order_relaxed);
        }
    }
    format(s, c, h);
    link_owned(sc, s);
    return s;
}

void* allocate_slow(Heap& h, std::size_t c) {
    SizeClass& sc = h.classes[c];
    if (Segment* s = sc.current; s && collect(s)) return take(s);
    if (Segment* s = sc.partial) {
        unlink_partial(sc, s);
        sc.current = s;
        return take(s);
    }
    // Blocks other threads freed: harvest every segment of this size at once, so that the walk
    // is paid for by all the blocks it finds. The walk reads every segment's header, a cache
    // miss each; if other threads free a trickle of blocks only, walking each time the current
    // segment runs dry would cost that many misses per block. So a walk comes only after 64
    // allocations per segment owned since the last one; before that a fresh segment serves
    // (bounded waste: whatever was freed remotely is harvested by the next walk).
    //
    // A segment that the walk finds with all its blocks free (other threads freed the last of
    // them) goes back as a locally emptied one does, unless it is the only one with free blocks:
    // after a burst of frames freed elsewhere, the owner keeps one such segment (and a spare),
    // not all of them.
    if (sc.owned <= 4 || sc.taken - sc.taken_at_walk >= 64 * sc.owned) {
        sc.taken_at_walk = sc.taken;
        for (Segment *s = sc.all, *next; s; s = next) {
            next = s->next;  // before retire() unlinks s
            if (s == sc.current || !s->remote.load(std::memory_order_relaxed) || !collect(s)) continue;
            if (s->used == 0 && sc.partial && (sc.partial != s || s->partial_next)) {
                retire(h, s);
            } else if (!s->in_partial) {
                link_partial(sc, s);
            }
        }
        if (Segment* s = sc.partial) {
            unlink_partial(sc, s);
            sc.current = s;
            return take(s);
        }
    }
    Segment* s = new_segment(h, c);
    sc.current = s;
    return take(s);
}

// ---- threads -----------------------------------------------------------------------------------

void abandon(Heap& h) noexcept {
    Global& g = global();
    for (std::size_t c = 1; c < class_count; ++c) {
        SizeClass& sc = h.classes[c];
        while (Segment* s = sc.all) {
            unlink_owned(sc, s);
            if (s->in_partial) unlink_partial(sc, s);
            collect(s);
            if (s->used == 0) {
                unmap_segment(s);
                continue;
            }
            s->owner.store(0, std::memory_order_relaxed);
            std::lock_guard lock(g.mu);
            s->next = g.abandoned[c];
            g.abandoned[c] = s;
            g.abandoned_count.fetch_add(1, std::memory_order_relaxed);
        }
        sc.current = nullptr;
    }
    if (h.spare) unmap_segment(h.spare);
    h.spare = nullptr;
}

thread_local Heap* tl_heap = nullptr;  // trivially destructible: readable in any destructor
thread_local bool tl_heap_gone = false;

// The last id given to a Heap. The child of fork() goes on from the parent's count, so its
// threads' ids are new there too.
std::atomic<std::uint64_t> heap_ids{0};

struct HeapHolder {
    Heap heap;
    HeapHolder() noexcept { heap.id = heap_ids.fetch_add(1, std::memory_order_relaxed) + 1; }
    HeapHolder(const HeapHolder&) = delete;
    HeapHolder& operator=(const HeapHolder&) = delete;
    ~HeapHolder() {
        tl_heap = nullptr;  // later frees on this thread take the remote path
        tl_heap_gone = true;
        abandon(heap);
    }
};

Heap* thread_heap_slow() {
    if (tl_heap_gone) return nullptr;  // this thread's destructors are running
    thread_local HeapHolder holder;
    tl_heap = &holder.heap;
    return tl_heap;
}

}  // namespace

void* allocate(std::size_t n) {
    if (n > max_block || !pool_on) return nullptr;
    Heap* h = tl_heap;
    if (!h) [[unlikely]] {
        h = thread_heap_slow();
        if (!h) return nullptr;
    }
    const std::size_t c = n == 0 ? 1 : (n + granule - 1) / granule;
    SizeClass& sc = h->classes[c];
    ++sc.taken;
    if (Segment* s = sc.current; s && can_take(s)) return take(s);
    return allocate_slow(*h, c);
}

void deallocate(void* block) noexcept {
    Segment* s = segment_of(block);
    auto* b = static_cast<FreeBlock*>(block);
    Heap* h = tl_heap;
    if (h && s->owner.load(std::memory_order_relaxed) == h->id) {
        b->next = s->free;
        s->free = b;
        SizeClass& sc = h->classes[s->cls];
        if (--s->used == 0) {
            if (s != sc.current) retire(*h, s);
        } else if (!b->next && s != sc.current && !s->in_partial) {
            link_partial(sc, s);  // its first free block since it filled up
        }
        return;
    }
    FreeBlock* head = s->remote.load(std::memory_order_relaxed);
    do {
        b->next = head;
    } while (!s->remote.compare_exchange_weak(head, b, std::memory_order_release, std::memory_order_relaxed));
}

Stats stats() noexcept {
    if (!pool_on) return {};
    Global& g = global();
    return Stats{g.segments.load(std::memory_order_relaxed), g.abandoned_count.load(std::memory_order_relaxed),
                 g.huge.load(std::memory_order_relaxed)};
}

void trim() noexcept {
    if (!pool_on) return;
    unmap_all(take_emptied_abandoned(global()));
}

bool enabled() noexcept { return pool_on; }

}  // namespace async_io::detail::frame_pool
