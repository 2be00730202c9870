// A small persistent thread pool (see loggrad/parallel.hpp).
#include "loggrad/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace loggrad {

namespace {

// One parallel_for call: workers hold it by shared_ptr, so a worker that wakes
// late only ever sees the job it woke for (whose tasks are then all taken).
struct Job {
    const std::function<void(std::size_t)>* fn;
    std::size_t ntasks;
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> done{0};
    std::exception_ptr error;  // the lowest-numbered failing task's (so the same for any timing); under m_
    std::size_t error_task = 0;
};

// A pass makes many parallel calls a few microseconds apart: a thread that
// is about to wait spins this long first, so that back-to-back jobs start
// (and end) without a sleep and a wake-up (some 10 us each).
constexpr std::chrono::microseconds kSpin{50};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
}

// Spins until done() or kSpin has passed; returns done().
template <class Done>
bool spin_until(Done&& done) {
    const auto start = std::chrono::steady_clock::now();
    for (unsigned i = 1;; ++i) {
        if (done()) return true;
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() - start > kSpin) return done();
    }
}

class Pool {
public:
    static Pool& instance() {
        static Pool pool;
        return pool;
    }

    int size() const { return threads_; }

    void resize(int n) {
        std::lock_guard<std::mutex> busy(busy_);
        stop_workers();
        threads_ = std::max(1, n);
        start_workers();
    }

    void run(std::size_t ntasks, const std::function<void(std::size_t)>& fn) {
        // A task's own parallel_for (in_task) runs serially: the pool is the caller's.
        std::unique_lock<std::mutex> busy;
        if (!in_task && ntasks >= 2) busy = std::unique_lock<std::mutex>(busy_, std::try_to_lock);
        if (!busy.owns_lock() || threads_ == 1) {  // nested, busy with another caller's job, or nothing to share
            if (ntasks) mark_used();
            for (std::size_t i = 0; i < ntasks; ++i) fn(i);
            return;
        }
        auto job = std::make_shared<Job>();
        job->fn = &fn;
        job->ntasks = ntasks;
        bool wake = false;
        {
            std::lock_guard<std::mutex> lk(m_);
            job_ = job;
            generation_.fetch_add(1, std::memory_order_release);
            wake = sleepers_ > 0;  // the others are still spinning otherwise
        }
        if (wake) cv_.notify_all();
        in_task = true;
        work(*job);  // the calling thread takes tasks too (work catches what they throw)
        in_task = false;
        const auto all_done = [&] { return job->done.load(std::memory_order_acquire) == job->ntasks; };
        spin_until(all_done);
        std::unique_lock<std::mutex> lk(m_);
        finished_.wait(lk, all_done);
        job_.reset();
        if (job->error) std::rethrow_exception(job->error);
    }

    int used() const {
        int n = 0;
        for (const auto& u : used_) n += u.load(std::memory_order_relaxed) ? 1 : 0;
        return n;
    }

    void reset_used() {
        for (auto& u : used_) u.store(false, std::memory_order_relaxed);
    }

    ~Pool() { stop_workers(); }

private:
    Pool() {
        int n = static_cast<int>(std::thread::hardware_concurrency());
        if (const char* env = std::getenv("LOGGRAD_NUM_THREADS")) n = std::atoi(env);
        threads_ = std::max(1, n);
        start_workers();
    }

    void start_workers() {
        stop_ = false;
        const std::size_t gen = generation_.load();  // a worker that starts late must not skip a job
        for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, gen, i] {
            slot = static_cast<std::size_t>(i);
            loop(gen);
        });
    }

    // Flags the calling thread's slot: worker i has slot i, every other thread slot 0.
    void mark_used() {
        if (slot < kSlots) used_[slot].store(true, std::memory_order_relaxed);
    }

    void stop_workers() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    void loop(std::size_t seen) {
        in_task = true;  // a worker runs nothing but tasks
        const auto news = [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
        for (;;) {
            spin_until(news);
            std::shared_ptr<Job> job;
            {
                // A job posted after the spin is seen here (generation_ changes under m_),
                // or its poster sees this thread among the sleepers and wakes it.
                std::unique_lock<std::mutex> lk(m_);
                ++sleepers_;
                cv_.wait(lk, news);
                --sleepers_;
                if (stop_) return;
                seen = generation_.load();
                job = job_;
            }
            if (job) work(*job);
        }
    }

    void work(Job& job) {
        std::size_t mine = 0;
        for (;;) {
            const std::size_t i = job.next.fetch_add(1);
            if (i >= job.ntasks) break;
            try {
                (*job.fn)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lk(m_);
                if (!job.error || i < job.error_task) {
                    job.error = std::current_exception();
                    job.error_task = i;
                }
            }
            ++mine;
        }
        if (mine) mark_used();
        if (mine && job.done.fetch_add(mine, std::memory_order_acq_rel) + mine == job.ntasks) {
            std::lock_guard<std::mutex> lk(m_);  // the caller tests `done` under m_ before it sleeps
            finished_.notify_all();
        }
    }

    static thread_local bool in_task;  // this thread is running a task of a job
    static thread_local std::size_t slot;  // index into used_ (0: not a pool worker)
    // Which threads ran tasks since reset_used(); sized for set_num_threads' maximum,
    // so resizing the pool never reallocates it under a running count.
    static constexpr std::size_t kSlots = 1024;
    std::atomic<bool> used_[kSlots] = {};
    std::mutex busy_;  // one job at a time
    std::mutex m_;
    std::condition_variable cv_, finished_;
    std::vector<std::thread> workers_;
    std::shared_ptr<Job> job_;
    std::atomic<std::size_t> generation_{0};  // changed under m_
    std::atomic<bool> stop_{false};           // changed under m_
    int sleepers_ = 0;                        // workers waiting on cv_; under m_
    int threads_ = 1;
};

thread_local bool Pool::in_task = false;
thread_local std::size_t Pool::slot = 0;

}  // namespace

int num_threads() { return Pool::instance().size(); }
void set_num_threads(int n) { Pool::instance().resize(n); }
int threads_used() { return Pool::instance().used(); }
void reset_threads_used() { Pool::instance().reset_used(); }

void parallel_for(std::size_t ntasks, const std::function<void(std::size_t)>& fn) {
    Pool::instance().run(ntasks, fn);
}

void parallel_chunks(std::size_t n, std::size_t grain,
                     const std::function<void(std::size_t, std::size_t)>& fn) {
    if (n < 2 * grain) {
        if (n) fn(0, n);
        return;
    }
    const std::size_t tasks = (n + grain - 1) / grain;
    parallel_for(tasks, [&](std::size_t t) { fn(t * grain, std::min(n, (t + 1) * grain)); });
}

}  // namespace loggrad
