// Huge-page-friendly allocation (see loggrad/memory.hpp).
#include "loggrad/memory.hpp"

#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__linux__) && defined(MADV_HUGEPAGE)
#define LOGGRAD_HUGE_PAGES 1
#include <unistd.h>

#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>
#endif

// Under AddressSanitizer freed blocks go straight back to the allocator, so
// that a use after free is still caught.
#if defined(__SANITIZE_ADDRESS__)
#define LOGGRAD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOGGRAD_ASAN 1
#endif
#endif

namespace loggrad {

namespace {

void* allocate_small(std::size_t bytes) {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
}

}  // namespace

#if defined(LOGGRAD_HUGE_PAGES)

namespace {

#if defined(LOGGRAD_ASAN)
constexpr bool kCache = false;
#else
constexpr bool kCache = true;
#endif
constexpr std::size_t kHugePage = std::size_t(1) << 21;
constexpr std::size_t kHugeMin = std::size_t(1) << 20;
// Blocks from here up to kHugeMin are kept too (page-aligned, 4 KiB pages):
// malloc maps blocks of this size afresh, or trims the heap under them, on
// every pass, and a narrow pass would spend most of its time faulting the
// pages in again. 128 KiB is glibc's initial mmap threshold: smaller blocks
// stay in the heap.
constexpr std::size_t kKeepMin = std::size_t(1) << 17;
constexpr std::size_t kPage = std::size_t(1) << 12;
// What is kept: up to 32 blocks and kCacheBytes in all, or, for passes too
// large for that, up to a quarter of physical memory (cache_limit); a
// wide deep pass (100 x 1,024 x 256 extended) allocates gigabytes, and
// faulting them in afresh costs a third of its time.
constexpr std::size_t kCacheBytes = std::size_t(512) << 20;
constexpr std::size_t kCacheBlocks = 32;

std::size_t cache_limit() {
    static const std::size_t limit = [] {
        const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        const std::size_t quarter =
            pages > 0 && page > 0 ? static_cast<std::size_t>(pages) / 4 * static_cast<std::size_t>(page) : 0;
        return quarter > kCacheBytes ? quarter : kCacheBytes;
    }();
    return limit;
}

// Blocks of kKeepMin and more: their sizes while in use, and a few freed ones
// kept for the next pass of the same shape, whose pages are then already mapped (the
// kernel zeroes a fresh page on first touch, a cost a repeated pass need not pay).
struct Pool {
    std::mutex mu;
    std::unordered_map<void*, std::size_t> live;
    std::vector<std::pair<void*, std::size_t>> free;  // oldest first
    std::size_t free_bytes = 0;
};

Pool& pool() {
    static Pool* p = new Pool;  // never destroyed: blocks may be freed during interpreter shutdown
    return *p;
}

}  // namespace

void* allocate(std::size_t bytes) {
    if (bytes < kKeepMin || bytes > static_cast<std::size_t>(-1) - kHugePage) return allocate_small(bytes);
    const bool huge = bytes >= kHugeMin;
    const std::size_t unit = huge ? kHugePage : kPage;
    const std::size_t rounded = (bytes + unit - 1) / unit * unit;
    Pool& P = pool();
    std::lock_guard<std::mutex> lock(P.mu);
    for (std::size_t i = P.free.size(); i-- > 0;) {
        if (P.free[i].second != rounded) continue;
        void* p = P.free[i].first;
        P.live.emplace(p, rounded);  // may throw: then the block stays in the free list
        P.free.erase(P.free.begin() + static_cast<std::ptrdiff_t>(i));
        P.free_bytes -= rounded;
        return p;
    }
    // A miss beyond kCacheBytes: the pass's shape changed, and the kept blocks
    // (sized for another) would only add to the process's footprint. Give
    // them back first, so that what is kept never exceeds what one shape of
    // pass used.
    if (P.free_bytes + rounded > kCacheBytes) {
        for (auto& b : P.free) std::free(b.first);
        P.free.clear();
        P.free_bytes = 0;
    }
    void* p = nullptr;
    if (posix_memalign(&p, unit, rounded) != 0) throw std::bad_alloc();
    if (huge) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: where it fails, 4 KiB pages serve
    try {
        P.live.emplace(p, rounded);
    } catch (...) {
        std::free(p);
        throw;
    }
    return p;
}

void deallocate(void* p) noexcept {
    if (!p) return;
    Pool& P = pool();
    std::lock_guard<std::mutex> lock(P.mu);
    const auto it = P.live.find(p);
    if (it == P.live.end()) {  // a small block
        std::free(p);
        return;
    }
    const std::size_t size = it->second;
    P.live.erase(it);
    bool kept = false;
    if (kCache && size <= cache_limit()) {
        try {
            P.free.emplace_back(p, size);
            P.free_bytes += size;
            kept = true;
        } catch (...) {
        }
    }
    if (!kept) std::free(p);
    while (!P.free.empty() && (P.free_bytes > cache_limit() || P.free.size() > kCacheBlocks)) {
        std::free(P.free.front().first);
        P.free_bytes -= P.free.front().second;
        P.free.erase(P.free.begin());
    }
}

void release_cached_memory() noexcept {
    Pool& P = pool();
    std::lock_guard<std::mutex> lock(P.mu);
    for (auto& b : P.free) std::free(b.first);
    P.free.clear();
    P.free_bytes = 0;
}

std::size_t cached_memory_bytes() noexcept {
    Pool& P = pool();
    std::lock_guard<std::mutex> lock(P.mu);
    return P.free_bytes;
}

#else  // no transparent huge pages: plain malloc, nothing kept

void* allocate(std::size_t bytes) { return allocate_small(bytes); }
void deallocate(void* p) noexcept { std::free(p); }
void release_cached_memory() noexcept {}
std::size_t cached_memory_bytes() noexcept { return 0; }

#endif

}  // namespace loggrad
