// loggrad/memory.hpp — memory for the large, short-lived arrays of a pass.
//
// A pass writes megabytes of fresh memory on every call (stored activations,
// gradient results); with 4 KiB pages the kernel's page faults on that first
// touch cost a fifth of a narrow deep pass. allocate() aligns blocks of 1 MiB
// and more to 2 MiB and offers them to transparent huge pages (Linux, in the
// "madvise" or "always" mode), so one fault maps 2 MiB; elsewhere, and for
// small blocks, it is malloc. The memory is uninitialised. Up to 32 freed
// blocks of 128 KiB and more are kept and handed out again for a request of
// the same size, so repeated passes of one shape reuse already-mapped pages
// instead of having the kernel zero fresh ones: 512 MiB in all, or up to a
// quarter of physical memory for passes larger than that, whose kept blocks
// are given back as soon as a request misses (the shape changed), so what
// is kept never exceeds what one shape of pass used.
// release_cached_memory() gives them back. (Not under AddressSanitizer,
// which must see every free.)
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>

namespace loggrad {

// Throws std::bad_alloc when the memory cannot be had; never returns null.
void* allocate(std::size_t bytes);
void deallocate(void* p) noexcept;
// Frees the kept blocks; the bytes they hold.
void release_cached_memory() noexcept;
std::size_t cached_memory_bytes() noexcept;

struct Deallocate {
    void operator()(void* p) const noexcept { deallocate(p); }
};

// An uninitialised array that only grows: every element is written before it
// is read, so the zero-fill (and page-touching) of std::vector is wasted work.
template <class T>
class Buffer {
    static_assert(std::is_trivially_copyable<T>::value, "Buffer holds plain numbers");

public:
    void resize(std::size_t n) {
        if (n > size_) {
            if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_alloc();
            data_.reset(static_cast<T*>(allocate(n * sizeof(T))));
            size_ = n;
        }
    }
    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }
    T& operator[](std::size_t i) { return data_[i]; }
    const T& operator[](std::size_t i) const { return data_[i]; }

private:
    std::unique_ptr<T[], Deallocate> data_;
    std::size_t size_ = 0;
};

}  // namespace loggrad
