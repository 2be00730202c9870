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
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "loggrad/memory.hpp"
#include "loggrad/parallel.hpp"
#include "simd.hpp"

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

// 2^k for k in [-1022, 1023], from bits (integer operations only: vectorises).
inline double pow2e(exp_t k) {
    return detail::from_bits(static_cast<std::uint64_t>(k + 1023) << 52);
}

// Selections by all-ones / all-zero masks: GCC vectorises loops over these
// where it leaves the equivalent conditional expressions as branches.
inline std::uint64_t mask(bool b) { return std::uint64_t(0) - static_cast<std::uint64_t>(b); }
inline exp_t select(std::uint64_t k, exp_t a, exp_t b) {
    return static_cast<exp_t>((static_cast<std::uint64_t>(a) & k) | (static_cast<std::uint64_t>(b) & ~k));
}
inline double select(std::uint64_t k, double a, double b) {
    return detail::from_bits((detail::bits(a) & k) | (detail::bits(b) & ~k));
}

// (m * 2^min(e - emax, 0))^2 for |m| in [0.5, 1) or 0, bitwise as numpy's
// np.ldexp and product give it. Below d = -537 the square is below half the
// smallest subnormal, so exactly 0: selected without forming it, since
// products that underflow cost a hundred cycles each on x86 (and vanishing
// gradients make them the common case).
inline double scaled_square(double m, exp_t e, exp_t emax) {
    const exp_t d = e - emax;
    const std::uint64_t keep = mask((d >= -537) & (d <= 0));
    const double s = m * pow2e(select(keep, d, exp_t(0)));
    const double sq = s * s;
    return select(keep, sq, 0.0);
}

// m * 2^e rounded to float64 (0 or inf beyond its range) for |m| in [0.5, 1)
// or 0, bitwise as np.ldexp gives it: in float64's normal range one exact
// product; far below it the signed zero, without an underflowing product (see
// scaled_square); in between two power-of-two factors, the first exact, the
// second rounding once. Branch-free, so that loops over it vectorise.
inline double to_double(double m, exp_t e) {
    const std::uint64_t normal = mask((e >= -1021) & (e <= 1023));
    const std::uint64_t tiny = mask(e < -1074);  // below half the smallest subnormal
    const exp_t c = e > 1100 ? 1100 : e;
    const exp_t h = c >> 1;  // |h|, |c - h| <= 550 where used
    const std::uint64_t mid = ~normal & ~tiny;
    const exp_t a = select(normal, e, select(mid, h, exp_t(0)));
    const exp_t b = select(mid, c - h, exp_t(0));
    const double r = (m * pow2e(a)) * pow2e(b);
    return select(tiny, 0.0 * m, r);
}

// Brings a product of two normal-form mantissas (|p| in [0.25, 1) or 0) back
// to normal form: one doubling at most, exact (an exponent-field increment).
inline void renormalize(double& p, exp_t& e) {
    const std::uint64_t b = detail::bits(p);
    const std::uint64_t low = ((b >> 52) & 0x7ff) == 1021;  // |p| in [0.25, 0.5)
    p = detail::from_bits(b + (low << 52));
    e -= static_cast<exp_t>(low);
}

inline bool over(const Log2Threshold& t, double m, exp_t e) {
    return (m != 0.0) & ((e > t.e_star) | ((e == t.e_star) & (std::fabs(m) >= t.m_star)));
}

// numpy's pairwise sum of a[0 .. n) for n <= 128 (one leaf of its tree).
inline double leaf_sum(const double* a, std::size_t n) {
    if (n < 8) {
        double res = 0.0;
        for (std::size_t i = 0; i < n; ++i) res += a[i];
        return res;
    }
    double r[8];
    for (std::size_t j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - n % 8; i += 8)
        for (std::size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
}

// The elementwise loops, each built for AVX-512, AVX2 and the baseline (see
// simd.hpp): the same IEEE operations on every element in every build.

// sq[i] = scaled_square(m[i], e[i], emax), i < n.
LOGGRAD_SIMD_KERNEL(void, squares, (std::size_t n, const double* m, const exp_t* e, exp_t emax, double* sq),
                    (n, m, e, emax, sq), {
    for (std::size_t i = 0; i < n; ++i) sq[i] = scaled_square(m[i], e[i], emax);
})

// Largest exponent (kZeroExp if none) and smallest exponent of the nonzero
// entries of e[0 .. n); returns nonzero iff some |w[i]| >= 2^1022 (inf and
// nan included: exponent field 2045 or more).
LOGGRAD_SIMD_KERNEL(std::uint64_t, exp_range,
                    (std::size_t n, const exp_t* e, const double* w, exp_t* hi, exp_t* lo), (n, e, w, hi, lo), {
    exp_t h = kZeroExp, l = std::numeric_limits<exp_t>::max();
    std::uint64_t big = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const exp_t x = e[i];
        const exp_t xl = select(mask(x == kZeroExp), std::numeric_limits<exp_t>::max(), x);
        h = x > h ? x : h;
        l = xl < l ? xl : l;
        big |= static_cast<std::uint64_t>((detail::bits(w[i]) << 1) >= (std::uint64_t(2045) << 53));
    }
    *hi = h;
    *lo = l;
    return big;
})

// numpy's pairwise sum of a[0 .. n), any n.
double pairwise_array(const double* a, std::size_t n) {
    if (n <= 128) return leaf_sum(a, n);
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    const double left = pairwise_array(a, n2);
    return left + pairwise_array(a + n2, n - n2);
}

// Entries whose squares one kernel call forms before they are summed: the
// call's fixed cost is spread over several leaves, the squares stay in L1.
constexpr std::size_t kSquaresRun = 1024;

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

// The step's constants: clip_norm's factor, clip_value and its threshold, lr.
struct StepConsts {
    double fm;
    exp_t fe;
    double cm;
    exp_t ce;
    exp_t t_e;
    double t_m;
    double lm;
    exp_t le;
};

// The update lr * clip(g) of one entry in normal form (kZeroExp for zero),
// as the numpy formulation forms it: g * factor (rounded, renormalised),
// clipped by value, times lr (rounded, renormalised). Or-s into the flags.
template <bool kScale, bool kClipValue>
inline void form_update(double& p, exp_t& e, const StepConsts& k, std::uint64_t& clipped,
                        std::uint64_t& range_scaled) {
    if (kScale) {
        p *= k.fm;
        e += k.fe;
        renormalize(p, e);
        range_scaled |= static_cast<std::uint64_t>((p != 0.0) & ((e > kMaxExp) | (e < -kMaxExp)));
    }
    if (kClipValue) {
        const bool o = (p != 0.0) & ((e > k.t_e) | ((e == k.t_e) & (std::fabs(p) >= k.t_m)));
        const double c = std::copysign(k.cm, p);
        clipped |= static_cast<std::uint64_t>(o & (c != p));
        const std::uint64_t sel = mask(o);
        p = select(sel, c, p);
        e = select(sel, k.ce, e);
    }
    p *= k.lm;
    e += k.le;
    renormalize(p, e);
    e = select(mask(p != 0.0), e, kZeroExp);
}

// One block of the step: out = w - round(update), its counts and flags.
struct UpdateArgs {
    double* out;  // the new parameters (may be w)
    const double* w;
    const double* gm;
    const exp_t* ge;
    std::size_t len;
    StepConsts k;
};

// Specialised on the clipping in use, so the common loop carries no test for
// it, and on whether out is w (then the compiler sees each weight read and
// written in place).
template <bool kScale, bool kClipValue, bool kInPlace>
inline BlockUpdate update_block(const UpdateArgs& a) {
    const double* __restrict gm = a.gm;
    const exp_t* __restrict ge = a.ge;
    double* out = a.out;
    const double* w = kInPlace ? a.out : a.w;
    const std::size_t len = a.len;
    const StepConsts k = a.k;
    exp_t umax = kZeroExp;
    std::int64_t nonzero = 0, unchanged = 0;
    // flags as integers, or-reduced: loops with bool reductions do not vectorise
    std::uint64_t nonfinite = 0, clipped = 0, range_scaled = 0, range_update = 0;
    for (std::size_t i = 0; i < len; ++i) {
        double p = gm[i];
        exp_t e = ge[i];
        form_update<kScale, kClipValue>(p, e, k, clipped, range_scaled);
        const bool nz = p != 0.0;
        range_update |= static_cast<std::uint64_t>((e > kMaxExp) | ((e < -kMaxExp) & (e != kZeroExp)));
        umax = e > umax ? e : umax;
        const double old = w[i];
        const double nw = old - to_double(p, e);
        nonzero += static_cast<std::int64_t>(nz);
        unchanged += static_cast<std::int64_t>(nz & (nw == old));
        nonfinite |= static_cast<std::uint64_t>(!(std::fabs(nw) <= std::numeric_limits<double>::max()));
        out[i] = nw;
    }
    BlockUpdate r;
    r.umax = umax;
    r.nonzero = nonzero;
    r.unchanged = unchanged;
    r.finite = nonfinite == 0;
    r.clipped = clipped != 0;
    r.range_scaled = range_scaled != 0;
    r.range_update = range_update != 0;
    return r;
}

LOGGRAD_SIMD_KERNEL(BlockUpdate, update_plain, (const UpdateArgs& a), (a),
                    { return update_block<false, false, true>(a); })
LOGGRAD_SIMD_KERNEL(BlockUpdate, update_scaled, (const UpdateArgs& a), (a),
                    { return update_block<true, false, true>(a); })
LOGGRAD_SIMD_KERNEL(BlockUpdate, update_clipped, (const UpdateArgs& a), (a),
                    { return update_block<false, true, true>(a); })
LOGGRAD_SIMD_KERNEL(BlockUpdate, update_scaled_clipped, (const UpdateArgs& a), (a),
                    { return update_block<true, true, true>(a); })

// Into a copy (the rare step near float64's limits): no need for speed.
BlockUpdate update_copy(const UpdateArgs& a, bool scale, bool clip_value) {
    return scale ? (clip_value ? update_block<true, true, false>(a) : update_block<true, false, false>(a))
                 : (clip_value ? update_block<false, true, false>(a) : update_block<false, false, false>(a));
}

// Up to kSquaresRun entries of a block: the scaled squares
// of the gradient (gsq) and of the update (usq, re-formed from the gradient:
// cheaper than storing it), and the largest |update mantissa| at the block's
// top update exponent and the one below (bit patterns, which order
// non-negative doubles as their values), max-ed into top[0], top[1].
struct LeafArgs {
    std::size_t n;
    const double* gm;
    const exp_t* ge;
    exp_t gref, uref, umax;
    StepConsts k;
    double* gsq;
    double* usq;
    std::uint64_t* top;
};

template <bool kScale, bool kClipValue>
inline void leaf_squares(const LeafArgs& a) {
    const double* __restrict gm = a.gm;
    const exp_t* __restrict ge = a.ge;
    double* __restrict gsq = a.gsq;
    double* __restrict usq = a.usq;
    const std::size_t n = a.n;
    const StepConsts k = a.k;
    const exp_t gref = a.gref, uref = a.uref, umax = a.umax;
    std::uint64_t t0 = a.top[0], t1 = a.top[1], unused = 0;
    for (std::size_t i = 0; i < n; ++i) {
        double p = gm[i];
        exp_t e = ge[i];
        gsq[i] = scaled_square(p, e, gref);
        form_update<kScale, kClipValue>(p, e, k, unused, unused);
        usq[i] = scaled_square(p, e, uref);
        const std::uint64_t b = detail::bits(p) & ~(std::uint64_t(1) << 63);
        const std::uint64_t c0 = b & mask(e == umax), c1 = b & mask(e == umax - 1);
        t0 = c0 > t0 ? c0 : t0;
        t1 = c1 > t1 ? c1 : t1;
    }
    a.top[0] = t0;
    a.top[1] = t1;
}

LOGGRAD_SIMD_KERNEL(void, leaf_plain, (const LeafArgs& a), (a), { leaf_squares<false, false>(a); })
LOGGRAD_SIMD_KERNEL(void, leaf_scaled, (const LeafArgs& a), (a), { leaf_squares<true, false>(a); })
LOGGRAD_SIMD_KERNEL(void, leaf_clipped, (const LeafArgs& a), (a), { leaf_squares<false, true>(a); })
LOGGRAD_SIMD_KERNEL(void, leaf_scaled_clipped, (const LeafArgs& a), (a), { leaf_squares<true, true>(a); })

using LeafFn = void (*)(const LeafArgs&);

struct TwoSums {
    double g, u;
};

// numpy's pairwise sums over [0, n) of the gradient's and the update's squares.
TwoSums pairwise_two(LeafFn leaf, LeafArgs a, std::size_t n) {
    if (n <= kSquaresRun) {  // the tree below is pairwise_array's on the squares
        double gsq[kSquaresRun], usq[kSquaresRun];
        a.n = n;
        a.gsq = gsq;
        a.usq = usq;
        leaf(a);
        return TwoSums{pairwise_array(gsq, n), pairwise_array(usq, n)};
    }
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    const TwoSums left = pairwise_two(leaf, a, n2);
    a.gm += n2;
    a.ge += n2;
    const TwoSums right = pairwise_two(leaf, a, n - n2);
    return TwoSums{left.g + right.g, left.u + right.u};
}

// np.add.reduceat's sums over one block (the first term plus the pairwise sum
// of the rest) of the gradient's and the update's squares.
TwoSums block_sums(LeafFn leaf, LeafArgs a, std::size_t len) {
    const TwoSums first = pairwise_two(leaf, a, 1);
    if (len == 1) return first;
    a.gm += 1;
    a.ge += 1;
    const TwoSums rest = pairwise_two(leaf, a, len - 1);
    return TwoSums{first.g + rest.g, first.u + rest.u};
}

// numpy's pairwise sum of the scaled squares (see scaled_square) of
// m[0 .. n), e[0 .. n) against emax: the tree of pairwise_array, whose runs of
// at most kSquaresRun entries are squared by one kernel call.
double pairwise_squares(const double* m, const exp_t* e, exp_t emax, std::size_t n) {
    if (n <= kSquaresRun) {
        double sq[kSquaresRun];
        squares(n, m, e, emax, sq);
        return pairwise_array(sq, n);
    }
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    const double left = pairwise_squares(m, e, emax, n2);
    return left + pairwise_squares(m + n2, e + n2, emax, n - n2);
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
            exp_t lo = 0;
            big |= exp_range(e - s, ge + s, params + s, &st.grad_emax[b], &lo);
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
    std::vector<double> leaf_sums(nleaves);
    auto leaf_end = [&](std::size_t k) { return k + 1 < nleaves ? leaf_start[k + 1] : n; };
    auto group_leaves = [&](const Group& g) {
        std::size_t k = static_cast<std::size_t>(std::lower_bound(leaf_start.begin(), leaf_start.end(), g.i0) -
                                                 leaf_start.begin());
        double sq[kSquaresRun];
        while (k < nleaves && leaf_start[k] < g.i1) {
            // a run of whole leaves, at most kSquaresRun entries, squared by one call
            const std::size_t s0 = leaf_start[k];
            std::size_t k1 = k + 1;
            while (k1 < nleaves && leaf_start[k1] < g.i1 && leaf_end(k1) - s0 <= kSquaresRun) ++k1;
            squares(leaf_end(k1 - 1) - s0, gm + s0, ge + s0, total_emax, sq);
            for (; k < k1; ++k) leaf_sums[k] = leaf_sum(sq + (leaf_start[k] - s0), leaf_end(k) - leaf_start[k]);
        }
    };
    auto total_norm = [&]() {
        std::size_t k = 0;
        tot.grad_norm = std::sqrt(combine_leaves(n, leaf_sums.data(), k));
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
    double* dst = in_place ? params : copy.data();

    // C: the update, block by block.
    const StepConsts consts{factor.m, factor.e, cv.m, cv.e, cfg.value_over.e_star, cfg.value_over.m_star,
                            lr.m, lr.e};
    const LeafFn leaf = scale ? (cfg.clip_value ? leaf_scaled_clipped : leaf_scaled)
                              : (cfg.clip_value ? leaf_clipped : leaf_plain);
    parallel_for(groups.size(), [&](std::size_t gi) {
        const Group& g = groups[gi];
        GroupFlags& f = flags[gi];
        for (std::size_t b = g.b0; b < g.b1; ++b) {
            const auto s = static_cast<std::size_t>(bounds[b]);
            const std::size_t len = static_cast<std::size_t>(bounds[b + 1]) - s;
            const double* bm = gm + s;
            const exp_t* be = ge + s;
            double* out = dst + s;
            const UpdateArgs args{out, params + s, bm, be, len, consts};
            const BlockUpdate r = !in_place ? update_copy(args, scale, cfg.clip_value)
                                  : scale   ? (cfg.clip_value ? update_scaled_clipped(args) : update_scaled(args))
                                            : (cfg.clip_value ? update_clipped(args) : update_plain(args));
            f.clipped |= r.clipped;
            f.range_scaled |= r.range_scaled;
            f.range_update |= r.range_update;
            st.nonzero[b] = r.nonzero;
            st.unchanged[b] = r.unchanged;
            if (!r.finite && f.bad < 0) {
                for (std::size_t i = 0; i < len; ++i)
                    if (!(std::fabs(out[i]) <= std::numeric_limits<double>::max())) {
                        f.bad = static_cast<std::int64_t>(s + i);
                        break;
                    }
            }

            // Norms of the gradient and of the update, and the largest update,
            // from the block while it is in cache.
            const exp_t umax = r.umax;
            std::uint64_t top[2] = {0, 0};
            const LeafArgs la{0, bm, be, st.grad_emax[b] == kZeroExp ? 0 : st.grad_emax[b],
                              umax == kZeroExp ? 0 : umax, umax, consts, nullptr, nullptr, top};
            const TwoSums sums = block_sums(leaf, la, len);
            st.grad_norm[b] = std::sqrt(sums.g);
            st.update_norm[b] = std::sqrt(sums.u);
            st.update_emax[b] = umax;
            st.update_top0[b] = umax == kZeroExp ? 0.0 : detail::from_bits(top[0]);
            st.update_top1[b] = umax == kZeroExp ? 0.0 : detail::from_bits(top[1]);
        }
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
        std::uint64_t unused = 0;
        if (scale)
            cfg.clip_value ? form_update<true, true>(p, e, consts, unused, unused)
                           : form_update<true, false>(p, e, consts, unused, unused);
        else
            cfg.clip_value ? form_update<false, true>(p, e, consts, unused, unused)
                           : form_update<false, false>(p, e, consts, unused, unused);
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

void segment_norms(exp_t* emax, double* norm, const double* gm, const exp_t* ge, std::size_t n,
                   const std::int64_t* starts, const std::int64_t* lengths, std::size_t nseg) {
    for (std::size_t k = 0; k < nseg; ++k)
        if (starts[k] < 0 || lengths[k] < 1 || static_cast<std::size_t>(starts[k]) > n ||
            static_cast<std::size_t>(lengths[k]) > n - static_cast<std::size_t>(starts[k]))
            throw std::invalid_argument("segment " + std::to_string(k) + " [" + std::to_string(starts[k]) + ", +" +
                                        std::to_string(lengths[k]) + ") is empty or outside the " +
                                        std::to_string(n) + " values");
    // One task per segment: its figures come from one thread in a fixed order.
    parallel_for(nseg, [&](std::size_t k) {
        const double* m = gm + starts[k];
        const exp_t* e = ge + starts[k];
        const auto len = static_cast<std::size_t>(lengths[k]);
        exp_t top = kZeroExp;
        for (std::size_t i = 0; i < len; ++i)
            if (m[i] != 0.0 && e[i] > top) top = e[i];
        if (top == kZeroExp) top = 0;  // an all-zero segment: any scale, its norm is 0
        // np.add.reduceat's order: the first term plus the pairwise sum of the rest
        const double first = pairwise_squares(m, e, top, 1);
        const double sum = len == 1 ? first : first + pairwise_squares(m + 1, e + 1, top, len - 1);
        emax[k] = top;
        norm[k] = std::sqrt(sum);
    });
}

}  // namespace loggrad
