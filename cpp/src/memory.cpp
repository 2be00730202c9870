// Huge-page-friendly allocation (see loggrad/memory.hpp).
#include "loggrad/memory.hpp"

#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace loggrad {

namespace {
constexpr std::size_t kHugePage = std::size_t(1) << 21;
constexpr std::size_t kHugeMin = std::size_t(1) << 20;
}  // namespace

void* allocate(std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= kHugeMin && bytes <= static_cast<std::size_t>(-1) - kHugePage) {
        const std::size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
        void* p = nullptr;
        if (posix_memalign(&p, kHugePage, rounded) != 0) throw std::bad_alloc();
        madvise(p, rounded, MADV_HUGEPAGE);  // advice only: where it fails, 4 KiB pages serve
        return p;
    }
#endif
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
}

void deallocate(void* p) noexcept { std::free(p); }

}  // namespace loggrad
