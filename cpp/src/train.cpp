// One SGD step on the parameter block (see loggrad/train.hpp).
//
// Sweeps over memory:
//   A  exponents and parameters: each block's largest and smallest gradient
//      exponent, and whether every parameter is far from float64's limit;
//   B  (only with clip_norm) the global sum of squares, whose norm decides
//      the clipping factor before any update is formed;
//   C  the update itself, block by block: the block's data is read once from
//      memory and the rest of the work (norms, counts, the largest update)
//      runs on it while it is in cache. Without clip_norm, C also forms the
//      global sum of squares.
// Sweep A bounds every update from the exponents alone. When the bound shows
// that no new parameter can overflow and no exponent leave the range (always,
// in practice), C writes the parameters in place; otherwise it writes a copy,
// which replaces the parameters only if every value is finite.
#include "loggrad/train.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "loggrad/memory.hpp"
#include "loggrad/parallel.hpp"

namespace loggrad {

namespace {

// Elements per task: blocks are grouped into runs of at least this many
// (a run depends on the block sizes only, so results do not depend on the
// thread count), enough to amortise a task's dispatch.
constexpr std::size_t kGroupElems = std::size_t(1) << 16;

struct Group {
    std::size_t b0, b1;  // blocks [b0, b1)
    std::size_t i0, i1;  // elements [i0, i1)
};

std::vector<Group> make_groups(const std::int64_t* bounds, std::size_t nblocks) {
    std::vector<Group> groups;
    std::size_t b0 = 0;
    for (std::size_t b = 0; b < nblocks; ++b) {
        const auto i0 = static_cast<std::size_t>(bounds[b0]);
        const auto i1 = static_cast<std::size_t>(bounds[b + 1]);
        if (i1 - i0 >= kGroupElems || b + 1 == nblocks) {
            groups.push_back(Group{b0, b + 1, i0, i1});
            b0 = b + 1;
        }
    }
    return groups;
}

// Start of every leaf (at most 128 elements) of numpy's pairwise tree over
// [i0, i0 + n), in order.
void collect_leaves(std::size_t i0, std::size_t n, std::vector<std::size_t>& starts) {
    if (n <= 128) {
        starts.push_back(i0);
        return;
    }
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    collect_leaves(i0, n2, starts);
    collect_leaves(i0 + n2, n - n2, starts);
}

// The pairwise sum over [i0, i0 + n) from its leaves' sums, consumed in order.
double combine_leaves(std::size_t n, const double* leaf, std::size_t& k) {
    if (n <= 128) return leaf[k++];
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    const double left = combine_leaves(n2, leaf, k);
    return left + combine_leaves(n - n2, leaf, k);
}

// (m * 2^min(e - emax, 0))^2 for |m| in [0.5, 1) or 0, bitwise as numpy's
// np.ldexp and product give it. Below d = -537 the square is below half the
// smallest subnormal, so exactly 0: selected without forming it, since
// products that underflow cost a hundred cycles each on x86 (and vanishing
// gradients make them the common case).
inline double scaled_square(double m, exp_t e, exp_t emax) {
    const exp_t d = e - emax;
    const bool zero = d < -537;
    const exp_t dd = zero || d > 0 ? 0 : d;
    const double s = m * pow2(static_cast<int>(dd));
    return zero ? 0.0 : s * s;
}

// np.add.reduceat over one block: the first term plus the pairwise sum of the rest.
template <class F>
double block_sum(std::size_t n, const F& f) {
    if (n == 1) return f(0);
    return f(0) + pairwise_sum(1, n - 1, f);
}

// m * 2^e rounded to float64 (0 or inf beyond its range) for |m| in
// [0.5, 1) or 0, bitwise as np.ldexp gives it. In float64's normal range one
// exact product; far below it the signed zero, without an underflowing
// product (see scaled_square); in between two power-of-two factors, the
// first exact, the second rounding once.
inline double to_double(double m, exp_t e) {
    if (e >= -1021 && e <= 1023) return m * pow2(static_cast<int>(e));
    if (e < -1074) return 0.0 * m;  // below half the smallest subnormal
    const exp_t c = e > 1100 ? 1100 : e;
    const exp_t a = c / 2;  // |a|, |c - a| <= 550: both normal powers of two
    return (m * pow2(static_cast<int>(a))) * pow2(static_cast<int>(c - a));
}

// Brings a product of two normal-form mantissas (|p| in [0.25, 1) or 0) back
// to normal form: one doubling at most, exact (an exponent-field increment).
// Integer operations, so that loops over it have no branch to mispredict.
inline void renormalize(double& p, exp_t& e) {
    std::uint64_t b = detail::bits(p);
    const std::uint64_t low = ((b >> 52) & 0x7ff) == 1021;  // |p| in [0.25, 0.5)
    p = detail::from_bits(b + (low << 52));
    e -= static_cast<exp_t>(low);
}

inline bool over(const Log2Threshold& t, double m, exp_t e) {
    return m != 0.0 && (e > t.e_star || (e == t.e_star && std::fabs(m) >= t.m_star));
}

// Room for one block's update. Taken by a task for its duration; all are
// allocated before the sweep that writes parameters, so that no allocation
// can fail once the first parameter has changed.
struct Scratch {
    Buffer<double> m;
    Buffer<exp_t> e;
};

class ScratchPool {
public:
    // parallel_for runs at most num_threads() tasks at once.
    ScratchPool(std::size_t count, std::size_t len) : len_(len) {
        for (std::size_t k = 0; k < count; ++k) add();
    }
    Scratch& take() {
        std::lock_guard<std::mutex> lock(mu_);
        if (free_.empty()) add();  // only if the thread count grew meanwhile
        Scratch* s = free_.back();
        free_.pop_back();
        return *s;
    }
    void give(Scratch& s) {
        std::lock_guard<std::mutex> lock(mu_);
        free_.push_back(&s);
    }

private:
    void add() {
        all_.emplace_back();
        all_.back().m.resize(len_);
        all_.back().e.resize(len_);
        free_.push_back(&all_.back());
    }
    std::size_t len_;
    std::deque<Scratch> all_;  // stable addresses
    std::vector<Scratch*> free_;
    std::mutex mu_;
};

// What a group's tasks report besides the per-block arrays.
struct GroupFlags {
    exp_t emin = std::numeric_limits<exp_t>::max();  // smallest nonzero gradient exponent
    bool params_small = true;                         // every |w| < 2^1022
    bool clipped = false;
    bool range_scaled = false;  // g * clip factor left the exponent range
    bool range_update = false;  // lr * g left the exponent range
    std::int64_t bad = -1;      // first index whose new parameter is not finite
};

std::string exp_str(exp_t e) { return std::to_string(static_cast<long long>(e)); }

// What one block's update reports.
struct BlockUpdate {
    exp_t umax = kZeroExp;  // largest exponent of a nonzero update
    std::int64_t nonzero = 0, unchanged = 0;
    bool finite = true, clipped = false, range_scaled = false, range_update = false;
};

// One block of the step: um/ue get the update lr * clip(g) in normal form,
// out the new parameters w - round(update). Specialised on the clipping in
// use, so the common loop carries no test for it.
template <bool kScale, bool kClipValue>
BlockUpdate update_block(double* um, exp_t* ue, double* out, const double* w, const double* gm, const exp_t* ge,
                         std::size_t len, const Ext& factor, const Ext& cv, const Log2Threshold& cv_over,
                         const Ext& lr) {
    BlockUpdate r;
    exp_t umax = kZeroExp;
    std::int64_t nonzero = 0, unchanged = 0;
    bool finite = true, clipped = false, range_scaled = false, range_update = false;
    const double fm = factor.m, lm = lr.m, cm = cv.m;
    const exp_t fe = factor.e, le = lr.e, ce = cv.e;
    for (std::size_t i = 0; i < len; ++i) {
        double p = gm[i];
        exp_t e = ge[i];
        if (kScale) {
            p *= fm;
            e += fe;
            renormalize(p, e);
            range_scaled |= (p != 0.0) & ((e > kMaxExp) | (e < -kMaxExp));
        }
        if (kClipValue) {
            const bool o = over(cv_over, p, e);
            const double c = std::copysign(cm, p);
            clipped |= o & (c != p);
            p = o ? c : p;
            e = o ? ce : e;
        }
        p *= lm;
        e += le;
        renormalize(p, e);
        const bool nz = p != 0.0;
        e = nz ? e : kZeroExp;
        range_update |= nz & ((e > kMaxExp) | (e < -kMaxExp));
        um[i] = p;
        ue[i] = e;
        umax = e > umax ? e : umax;
        const double old = w[i];
        const double nw = old - to_double(p, e);
        nonzero += nz;
        unchanged += nz & (nw == old);
        finite &= std::fabs(nw) <= std::numeric_limits<double>::max();
        out[i] = nw;
    }
    r.umax = umax;
    r.nonzero = nonzero;
    r.unchanged = unchanged;
    r.finite = finite;
    r.clipped = clipped;
    r.range_scaled = range_scaled;
    r.range_update = range_update;
    return r;
}

}  // namespace

void sgd_step(SgdBlockStats& st, SgdTotals& tot, double* params, const double* gm, const exp_t* ge,
              const std::int64_t* bounds, std::size_t nblocks, const SgdConfig& cfg) {
    if (!(std::isfinite(cfg.lr) && cfg.lr > 0)) throw std::invalid_argument("lr must be a positive finite number");
    if (cfg.clip_norm && !(std::isfinite(cfg.max_norm) && cfg.max_norm > 0))
        throw std::invalid_argument("max_norm must be a positive finite number");
    if (cfg.clip_value && !(std::isfinite(cfg.clip_value_limit) && cfg.clip_value_limit > 0))
        throw std::invalid_argument("clip_value must be a positive finite number");
    tot = SgdTotals{};
    if (nblocks == 0) return;
    const auto n = static_cast<std::size_t>(bounds[nblocks]);
    const std::vector<Group> groups = make_groups(bounds, nblocks);
    std::vector<GroupFlags> flags(groups.size());

    // A: exponent range per block, parameter sizes.
    parallel_for(groups.size(), [&](std::size_t gi) {
        const Group& g = groups[gi];
        GroupFlags& f = flags[gi];
        std::uint64_t big = 0;
        for (std::size_t b = g.b0; b < g.b1; ++b) {
            const auto s = static_cast<std::size_t>(bounds[b]), e = static_cast<std::size_t>(bounds[b + 1]);
            exp_t hi = kZeroExp, lo = std::numeric_limits<exp_t>::max();
            for (std::size_t i = s; i < e; ++i) {
                const exp_t x = ge[i];
                hi = x > hi ? x : hi;
                lo = (x < lo && x != kZeroExp) ? x : lo;
                // |w| >= 2^1022, inf and nan alike: exponent field 2045 or more
                big |= (detail::bits(params[i]) & ~(std::uint64_t(1) << 63)) >= (std::uint64_t(2045) << 52);
            }
            st.grad_emax[b] = hi;
            f.emin = std::min(f.emin, lo);
        }
        f.params_small = big == 0;
    });
    exp_t gmax = kZeroExp, gmin = std::numeric_limits<exp_t>::max();
    bool params_small = true;
    for (std::size_t b = 0; b < nblocks; ++b) gmax = std::max(gmax, st.grad_emax[b]);
    for (const GroupFlags& f : flags) {
        gmin = std::min(gmin, f.emin);
        params_small = params_small && f.params_small;
    }
    const bool any_nonzero = gmax != kZeroExp;
    const exp_t total_emax = any_nonzero ? gmax : 0;
    tot.grad_emax = total_emax;

    // Leaves of the global pairwise sum, each computed by the group its start lies in.
    std::vector<std::size_t> leaf_start;
    leaf_start.reserve(n / 64 + 2);
    collect_leaves(0, n, leaf_start);
    const std::size_t nleaves = leaf_start.size();
    std::vector<double> leaf_sum(nleaves);
    auto leaf_end = [&](std::size_t k) { return k + 1 < nleaves ? leaf_start[k + 1] : n; };
    auto group_leaves = [&](const Group& g) {
        std::size_t k = static_cast<std::size_t>(std::lower_bound(leaf_start.begin(), leaf_start.end(), g.i0) -
                                                 leaf_start.begin());
        for (; k < nleaves && leaf_start[k] < g.i1; ++k) {
            const std::size_t s = leaf_start[k];
            leaf_sum[k] = pairwise_sum(s, leaf_end(k) - s,
                                       [&](std::size_t i) { return scaled_square(gm[i], ge[i], total_emax); });
        }
    };
    auto total_norm = [&]() {
        std::size_t k = 0;
        tot.grad_norm = std::sqrt(combine_leaves(n, leaf_sum.data(), k));
    };

    // B: with clip_norm, the global norm decides the factor before the update.
    Ext factor = kExtOne;
    bool scale = false;
    if (cfg.clip_norm) {
        parallel_for(groups.size(), [&](std::size_t gi) { group_leaves(groups[gi]); });
        total_norm();
        const Ext norm = normalize(tot.grad_norm, total_emax);
        if (over(cfg.norm_over, norm.m, norm.e)) {
            const Ext lim = from_double(cfg.max_norm);
            factor = normalize(lim.m / norm.m, lim.e - norm.e);
            if (factor.e > kMaxExp || factor.e < -kMaxExp)
                throw range_error("clip_norm: the scale factor 2^" + exp_str(factor.e) +
                                  " is beyond loggrad's exponent range (|log2| < 2^60)");
            scale = true;
        }
    }
    const Ext lr = from_double(cfg.lr);
    const Ext cv = cfg.clip_value ? from_double(cfg.clip_value_limit) : kExtZero;

    // Bounds on the exponents of the clipped gradient and of the update: a
    // product of mantissas is below 1 and at least 1/4.
    bool in_place = params_small;
    if (any_nonzero) {
        exp_t hi = gmax + (scale ? factor.e : 0), lo = gmin + (scale ? factor.e - 1 : 0);
        in_place = in_place && hi <= kMaxExp && lo >= -kMaxExp;
        if (cfg.clip_value) hi = std::max(hi, cv.e), lo = std::min(lo, cv.e);
        in_place = in_place && hi + lr.e <= 1021 && lo + lr.e - 1 >= -kMaxExp;
    }
    Buffer<double> copy;
    if (!in_place) copy.resize(n);
    std::size_t max_len = 0;
    for (std::size_t b = 0; b < nblocks; ++b)
        max_len = std::max(max_len, static_cast<std::size_t>(bounds[b + 1] - bounds[b]));
    ScratchPool pool(std::min(groups.size(), static_cast<std::size_t>(num_threads())), max_len);
    double* dst = in_place ? params : copy.data();

    // C: the update, block by block.
    parallel_for(groups.size(), [&](std::size_t gi) {
        const Group& g = groups[gi];
        GroupFlags& f = flags[gi];
        Scratch& sc = pool.take();
        for (std::size_t b = g.b0; b < g.b1; ++b) {
            const auto s = static_cast<std::size_t>(bounds[b]);
            const std::size_t len = static_cast<std::size_t>(bounds[b + 1]) - s;
            double* um = sc.m.data();
            exp_t* ue = sc.e.data();
            const double* bm = gm + s;
            const exp_t* be = ge + s;
            double* out = dst + s;
            using Fn = BlockUpdate (*)(double*, exp_t*, double*, const double*, const double*, const exp_t*,
                                       std::size_t, const Ext&, const Ext&, const Log2Threshold&, const Ext&);
            const Fn fn = scale ? (cfg.clip_value ? update_block<true, true> : update_block<true, false>)
                                : (cfg.clip_value ? update_block<false, true> : update_block<false, false>);
            const BlockUpdate r = fn(um, ue, out, params + s, bm, be, len, factor, cv, cfg.value_over, lr);
            const exp_t umax = r.umax;
            const bool finite = r.finite;
            f.clipped |= r.clipped;
            f.range_scaled |= r.range_scaled;
            f.range_update |= r.range_update;
            st.nonzero[b] = r.nonzero;
            st.unchanged[b] = r.unchanged;
            if (!finite && f.bad < 0) {
                for (std::size_t i = 0; i < len; ++i)
                    if (!(std::fabs(out[i]) <= std::numeric_limits<double>::max())) {
                        f.bad = static_cast<std::int64_t>(s + i);
                        break;
                    }
            }

            // Norms of the gradient and of the update, and the largest update.
            const exp_t gref = st.grad_emax[b] == kZeroExp ? 0 : st.grad_emax[b];
            st.grad_norm[b] = std::sqrt(
                block_sum(len, [&](std::size_t i) { return scaled_square(bm[i], be[i], gref); }));
            const exp_t uref = umax == kZeroExp ? 0 : umax;
            st.update_norm[b] = std::sqrt(
                block_sum(len, [&](std::size_t i) { return scaled_square(um[i], ue[i], uref); }));
            double top0 = 0.0, top1 = 0.0;
            for (std::size_t i = 0; i < len; ++i) {
                const double a = std::fabs(um[i]);
                top0 = (ue[i] == umax && a > top0) ? a : top0;
                top1 = (ue[i] == umax - 1 && a > top1) ? a : top1;
            }
            st.update_emax[b] = umax;
            st.update_top0[b] = umax == kZeroExp ? 0.0 : top0;
            st.update_top1[b] = umax == kZeroExp ? 0.0 : top1;
        }
        pool.give(sc);
        if (!cfg.clip_norm) group_leaves(g);
    });
    if (!cfg.clip_norm) total_norm();

    bool clipped = scale, range_scaled = false, range_update = false;
    std::int64_t bad = -1;
    for (const GroupFlags& f : flags) {
        clipped = clipped || f.clipped;
        range_scaled = range_scaled || f.range_scaled;
        range_update = range_update || f.range_update;
        if (bad < 0) bad = f.bad;
    }
    tot.clipped = clipped;
    if (range_scaled)
        throw range_error("clip_norm: a clipped gradient entry is beyond loggrad's exponent range (|log2| < 2^60); "
                          "nothing was changed");
    if (range_update)
        throw range_error("an update lr * dL/dw is beyond loggrad's exponent range (|log2| < 2^60); "
                          "nothing was changed");
    if (bad >= 0) {
        // Recomputed for the report alone (nothing was written in place: see
        // the bound above).
        const auto i = static_cast<std::size_t>(bad);
        double p = gm[i];
        exp_t e = ge[i];
        if (scale) {
            p *= factor.m;
            e += factor.e;
            renormalize(p, e);
        }
        if (cfg.clip_value && over(cfg.value_over, p, e)) p = std::copysign(cv.m, p), e = cv.e;
        p *= lr.m;
        e += lr.e;
        renormalize(p, e);
        tot.bad_index = bad;
        tot.bad_update_m = p;
        tot.bad_update_e = e;
        return;
    }
    if (!in_place) {
        parallel_chunks(n, kGroupElems, [&](std::size_t a, std::size_t z) {
            std::memcpy(params + a, copy.data() + a, (z - a) * sizeof(double));
        });
    }
}

}  // namespace loggrad
