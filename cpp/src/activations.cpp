// Activation functions: extended path (exact, log space where it matters) and
// float64 path (framework formulas). Each function's derivative sits next to it.
#include "loggrad/activations.hpp"

#include "loggrad/parallel.hpp"
#include "simd.hpp"
#include "tanh.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <stdexcept>
#include <type_traits>

namespace loggrad {

const std::vector<std::string>& activation_names() {
    static const std::vector<std::string> names{"identity", "sigmoid", "tanh",     "relu",
                                                "leaky_relu", "elu",   "selu",     "softplus",
                                                "gelu",       "silu"};
    return names;
}

std::string activation_name(Activation a) {
    return activation_names().at(static_cast<std::size_t>(a));
}

Activation activation_from_name(const std::string& name) {
    const auto& names = activation_names();
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == name) return static_cast<Activation>(i);
    if (name == "linear") return Activation::identity;
    std::string valid;
    for (const auto& n : names) valid += (valid.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown activation '" + name + "'; valid: " + valid +
                                " (and 'linear' for identity)");
}

namespace {

constexpr double kInvSqrt2 = 0.707106781186547524400844362104849039;
constexpr double kInvSqrt2Pi = 0.398942280401432677939946059934381868;

// Below this |z| (2^-900) every activation is its first-order Taylor form to
// the last bit; above 2^1000 its asymptotic form. In between z is a double.
constexpr exp_t kTinyExp = -900;
constexpr exp_t kHugeExp = 1000;

// A short decimal form of x for messages ("600", "-2e+09", "3.5e+17").
std::string short_number(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", x);
    return buf;
}

// e^x for x <= 0 as exp_ext gives it, or an exact zero (and under set) where
// exp_ext would find it below the extended range: the same test as exp_ext's.
Ext exp_under(double x, bool& under) {
    if (exp_underflows(x)) {
        under = true;
        return kExtZero;
    }
    return exp_ext(x);
}

// After an activation in which some e^x fell below the range (under): the
// outputs that became zero are flushed values (a true zero never needs an
// e^x), counted in the thread's sink; without one, underflow_error.
void settle_underflow(Activation act, Ext z, Ext* a, Ext* d) {
    const bool fa = a && a->m == 0.0, fd = d && d->m == 0.0;
    if (!fa && !fd) return;  // only intermediates fell below the range: the results are exact
    UnderflowSink* sink = underflow_sink();
    if (!sink)
        throw underflow_error(!fa, activation_name(act) + " at a pre-activation of " + (sign(z) < 0 ? "-" : "+") +
                                       "10^" + short_number(log10abs(z)));
    if (fa) {
        *a = kExtZero;
        sink->values.fetch_add(1, std::memory_order_relaxed);
    }
    if (fd) {
        *d = kExtZero;
        sink->derivatives.fetch_add(1, std::memory_order_relaxed);
    }
}

void set(Ext* p, Ext v) {
    if (p) *p = v;
}

// a * b = p + e exactly: Dekker's product (std::fma would be a libm call in
// the baseline build); exact for the operands here (no overflow, and parts
// below 2^-1022 only where they are far below an ulp of the results).
inline void two_prod(double a, double b, double& p, double& e) { tanh_kernel::product_parts(a, b, p, e); }

// (n + n_lo) / (d + d_lo), rounded once, from inv ~ 1/d (to a few ulps): the
// remainder n - q d of q = n inv is exact (two_prod; n - p by Sterbenz, as
// p = q d is within a few ulps of n), so q + r inv is the quotient to about
// 2^-100 and its rounding the only one that counts. One division for a value
// and a derivative: inv is shared by the callers.
inline double div_pair(double n, double n_lo, double d, double d_lo, double inv) {
    const double q = n * inv;
    double p, p_lo;
    two_prod(q, d, p, p_lo);
    const double r = (((n - p) - p_lo) + n_lo) - q * d_lo;
    return q + r * inv;
}

// 1 + t = onep + onep_lo and (1 + t)^2 = sq + sq_lo (exact but for sq_lo's own
// rounding, a relative 2^-106) for 0 <= t <= 1, with 1/onep and 1/sq to a few
// ulps: what div_pair needs to divide by either.
struct OnePlusT {
    double onep, onep_lo, inv, sq, sq_lo, inv2;
};

inline OnePlusT one_plus(double t, double t_lo = 0.0) {
    OnePlusT o;
    o.onep = 1.0 + t;
    o.onep_lo = ((1.0 - o.onep) + t) + t_lo;  // (1 - onep) + t is exact: t <= 1 <= 1 + t (Fast2Sum)
    o.inv = 1.0 / o.onep;
    double s_lo;
    tanh_kernel::square_parts(o.onep, o.sq, s_lo);
    o.sq_lo = s_lo + 2.0 * o.onep * o.onep_lo;
    o.inv2 = o.inv * o.inv;
    return o;
}

// sigmoid'(z) = t / (1 + t)^2 for t = e^{-|z|} <= 1 (libm's exp, within 0.51
// ulp). 1 + t and its square are carried exactly, the quotient rounds once
// (0.5 ulp) and t's error reaches it undamped (d ln sigmoid' / d ln t =
// (1 - t)/(1 + t) <= 1): 0.51 ulp of t is up to 1.02 ulp of a result with a
// larger mantissa, so within 1.53 ulp in all. Rounding 1 + t and the square
// instead cost up to 3.4 ulp (3.36 measured at z = 4.16).
inline double sigmoid_der_from_t(double t, const OnePlusT& o) { return div_pair(t, 0.0, o.sq, o.sq_lo, o.inv2); }

// sigmoid(z) from t = e^{-|z|} <= 1: 1/(1 + t) for z >= 0, t/(1 + t) below,
// with 1 + t as an exact pair and the quotient rounded once (0.5 ulp). t's
// error reaches the value damped by t/(1 + t) <= 1/2, resp. 1/(1 + t) <= 1: at
// most 1.02 ulp, 1.53 in all. (A rounded 1 + t costs up to one more ulp: 2.02
// was measured at z = -3.45.)
inline double sigmoid_from_double(bool positive, double t, const OnePlusT& o) {
    return div_pair(positive ? 1.0 : t, 0.0, o.onep, o.onep_lo, o.inv);
}

// sigmoid from t = e^{-|z|}: value and derivative t/(1+t)^2, both extended.
void sigmoid_from_t(bool positive, Ext t, Ext* a, Ext* d) {
    if (t.e < -60) {  // 1 + t rounds to 1
        set(a, positive ? kExtOne : t);
        set(d, t);
        return;
    }
    const double td = to_double(t);
    const OnePlusT o = one_plus(td);
    set(a, from_double(sigmoid_from_double(positive, td, o)));
    if (d) *d = from_double(sigmoid_der_from_t(td, o));
}

// gelu for z in [kGeluTableLo, kGeluTableHi] = [-10, 0.5], to about an ulp.
//
// Phi(z) = erfc(-z/sqrt2)/2 from libm loses up to ~30 ulps there: the rounded
// argument -z/sqrt2 is amplified by d ln erfc(u)/du ~ -2u, and erfc itself
// is good to ~2 ulps only. Instead Phi and phi are taken from nodes
// z0 = kGeluTableLo + k/16, stored as double-doubles:
//   Phi(z0 + h) = Phi(z0) + phi(z0) sum_{n>=1} (-1)^{n-1} He_{n-1}(z0) h^n / n!
//   phi(z0 + h) = phi(z0) e^{-h (z + z0)/2}
// (He: probabilists' Hermite polynomials, Phi^{(n)} = (-1)^{n-1} He_{n-1} phi),
// with |h| <= 1/32 and h = z - z0 exact. The corrections are below 0.4 of
// the node values, so their float64 rounding costs a fraction of an ulp.
// Table rows: Phi(z0) hi, lo, phi(z0) hi, lo; from mpmath at 240 bits:
//   for k in range(169): z0 = mpf(-10) + mpf(k)/16; v = ncdf(z0) (then npdf(z0));
//   hi = float(v); lo = float(v - hi)
constexpr double kGeluTableLo = -10.0;
constexpr double kGeluTableHi = 0.5;
constexpr int kGeluTableLast = 168;  // (kGeluTableHi - kGeluTableLo) * 16
constexpr double kGeluTable[169][4] = {
    {0x1.26c75e84fb10dp-77, 0x1.ace508f1cc541p-131, 0x1.7416846b4d5d9p-74, 0x1.fcf209f297f8dp-128},
    {0x1.14847d3a52160p-76, 0x1.59c906c78c583p-130, 0x1.5ae5d0a719564p-73, -0x1.9fd2e8a835a8ap-130},
    {0x1.0262cd22e07dap-75, 0x1.a524c87be88ffp-135, 0x1.4226e7f24446cp-72, 0x1.9b5569fafdb17p-128},
    {0x1.e105a84801ca1p-75, 0x1.9abbb698e81ffp-129, 0x1.2a014e57b0ba1p-71, -0x1.7a66d2f4edbf7p-125},
    {0x1.be04543a446c6p-74, -0x1.0fe7df0bd7709p-128, 0x1.1297eab996abbp-70, -0x1.60d81b879793cp-124},
    {0x1.9bf677e73efa3p-73, -0x1.b831465e921a9p-127, 0x1.f811b2a3ad25cp-70, 0x1.bfcbb4ab73e85p-124},
    {0x1.7b0a441470d5dp-72, 0x1.5f76adf9eda66p-126, 0x1.ccdab14220a45p-69, -0x1.654e7cd69b733p-124},
    {0x1.5b67134d2dd6ep-71, 0x1.ba9eda1c8485ep-127, 0x1.a3b39e4e898e3p-68, 0x1.3b487b40a8af9p-124},
    {0x1.3d2d60a5c14aap-70, -0x1.69c724f395e0fp-124, 0x1.7cbbcf79d2a72p-67, 0x1.d5f8e395e6b41p-126},
    {0x1.2076dfc9f4d10p-69, 0x1.4719b7dd36b2fp-128, 0x1.580983f57acbbp-66, -0x1.3487d99dee54cp-120},
    {0x1.0556b305e7759p-68, -0x1.4a4459a1f1dc1p-122, 0x1.35aa67a533e01p-65, 0x1.8412a3cc7aca8p-119},
    {0x1.d7b376f51f8c2p-68, 0x1.1f7f9eab8af39p-123, 0x1.15a43297cf691p-64, 0x1.bfe0bcbf28887p-119},
    {0x1.a80dfeb2b1c64p-67, 0x1.b3da116d699c8p-121, 0x1.efeabd09a4928p-64, 0x1.67f187d4f82cdp-120},
    {0x1.7bc043a6ae6bap-66, 0x1.74ee41e4d8631p-121, 0x1.b92bd82e814c6p-63, 0x1.25b3d92c83fbep-117},
    {0x1.52c3d0bd10215p-65, -0x1.8cb50997aad8bp-119, 0x1.86f0640e7f659p-62, -0x1.de5d14fd4f331p-116},
    {0x1.2d09921673b2ep-64, 0x1.eb3c3a0ed3a25p-120, 0x1.591360c9071cep-61, 0x1.764716ac5c50fp-115},
    {0x1.0a7afbb1ee67cp-63, 0x1.c1c0610972008p-117, 0x1.2f67c5e7a9a39p-60, 0x1.a5830ea36d1b5p-116},
    {0x1.d5f6652152293p-63, 0x1.a1e43381f8056p-117, 0x1.09ba1c352fd85p-59, -0x1.9e4abd704b33cp-117},
    {0x1.9cd063226c868p-62, -0x1.1140aff61ccd6p-116, 0x1.cfa409f1a6a97p-59, -0x1.eee8a6054fb7dp-113},
    {0x1.6937c8409fa23p-61, 0x1.ac1cc508b8adbp-115, 0x1.92e750847f723p-58, -0x1.b0d5ff2678628p-113},
    {0x1.3ada639cabc7ap-60, -0x1.113e1513e7850p-115, 0x1.5cc20ab7773eap-57, -0x1.7735b370b5f31p-111},
    {0x1.1161eda52cd13p-59, 0x1.626e73a3e8705p-115, 0x1.2cb643b119678p-56, 0x1.55eb3ab712de7p-110},
    {0x1.d8eb99f7f7726p-59, 0x1.893b77c777067p-115, 0x1.02462a0797463p-55, 0x1.a32a836159a51p-110},
    {0x1.97795639a458dp-58, -0x1.f234e34b64fbep-116, 0x1.b9ebba9ba1abbp-55, 0x1.2f3f70d5485d0p-110},
    {0x1.5dbbaccf1a4e0p-57, 0x1.d3f69c97b7828p-111, 0x1.7899e4c2ad3a6p-54, -0x1.ff781a352804dp-110},
    {0x1.2b04e18d608d8p-56, -0x1.813dd7fdbf1e6p-110, 0x1.3faf60c4c56e2p-53, 0x1.ec87dde1317e0p-107},
    {0x1.fd59ae3f7142ep-56, -0x1.aace10f336c5cp-111, 0x1.0e50138b69fbap-52, -0x1.b4921638a0a72p-109},
    {0x1.b02549ac155a2p-55, 0x1.9ffc8ab863eecp-109, 0x1.c759589606853p-52, -0x1.c4ce2ab71a08cp-106},
    {0x1.6d3ba010ac799p-54, 0x1.557c23a3e9f1ep-108, 0x1.7e07497086507p-51, 0x1.0ed010f1016c3p-105},
    {0x1.337e60292dbcap-53, 0x1.785aed2c99a10p-111, 0x1.3f43b435b5a7cp-50, -0x1.72a1c1f8224c1p-104},
    {0x1.01e30a1d54c78p-52, -0x1.df0ae4e592f1bp-106, 0x1.09c5986479c5dp-49, -0x1.d01c1bfc58914p-103},
    {0x1.aee7279e13603p-52, -0x1.efc174813217bp-106, 0x1.b8c23c49a4f74p-49, 0x1.faf26c2fb1416p-104},
    {0x1.669d2c90d55cep-51, 0x1.02bdbdb0e6ba9p-105, 0x1.6c0df3a094834p-48, 0x1.bf07009b6d268p-102},
    {0x1.294e2d05d7018p-50, -0x1.1bbb3bddbd04dp-104, 0x1.2b86d020828d3p-47, -0x1.ce04cd302451dp-102},
    {0x1.eb0fed119b102p-50, -0x1.b0ab560c2c560p-104, 0x1.eaf366efc1181p-47, 0x1.c882eaa44d5a7p-101},
    {0x1.93fd039c0ebc5p-49, -0x1.a255a64fc9ab2p-109, 0x1.90c9928499ba1p-46, 0x1.f0924666c9fa9p-101},
    {0x1.4b13ea9a9f5c3p-48, 0x1.26e07982c56acp-104, 0x1.45e8308d25d84p-45, -0x1.4826727bd3b50p-100},
    {0x1.0e48be68a86a2p-47, -0x1.a806c3e7c2e9dp-102, 0x1.07fbc8e673842p-44, -0x1.1f79a4cdeea2dp-98},
    {0x1.b79cff2b8cab9p-47, 0x1.8ee1daf6bc670p-101, 0x1.a9fbf74f54cacp-44, -0x1.8a9354b7779cap-99},
    {0x1.6423e83b1d801p-46, -0x1.2acfb3a7fb004p-102, 0x1.565c4fe54ad1ap-43, 0x1.5629aae80fc2ap-97},
    {0x1.1f68f3dbb818ap-45, -0x1.892cac9677165p-100, 0x1.121483257eba0p-42, 0x1.c25e49e6bf7f3p-96},
    {0x1.ce1ba487393fcp-45, -0x1.5ce73c1a2f084p-101, 0x1.b51fcbb39a147p-42, 0x1.a4c2aeb95d150p-96},
    {0x1.721278ef40b1fp-44, -0x1.387b7c94fb57dp-98, 0x1.5b3884a6c1e7ap-41, 0x1.1e6419c08e3f7p-97},
    {0x1.273afc26d1ea2p-43, 0x1.eed3ae3007f95p-97, 0x1.12bb872181042p-40, -0x1.3739d725e3c89p-96},
    {0x1.d53e3e82da9c6p-43, -0x1.0c7f209b3a8d6p-98, 0x1.b10f57d25a805p-40, 0x1.6df9baa967153p-97},
    {0x1.737b4f60f5d39p-42, 0x1.3289f0edd8d8ap-97, 0x1.53fc1a03139fcp-39, 0x1.d8c1a9ef7aa96p-93},
    {0x1.24f60a258d235p-41, 0x1.f4ee40261cbd2p-95, 0x1.09df86034c0fdp-38, -0x1.e1bafc430c6ebp-92},
    {0x1.cc4e2c3dd4d49p-41, -0x1.d3df75cbe1906p-95, 0x1.9e3659616cbb6p-38, 0x1.949c5a6f75e44p-92},
    {0x1.683c36759a444p-40, 0x1.add0c63255d4ep-95, 0x1.41663f31db14bp-37, -0x1.7a840d11939f4p-92},
    {0x1.18d757bdeaf38p-39, -0x1.f728d9abfe96ep-93, 0x1.f0d263530b40bp-37, 0x1.13aec4652601bp-92},
    {0x1.b437009ea26ddp-39, 0x1.41ff3292db6acp-95, 0x1.7e7fa233a1a32p-36, 0x1.39f0449997cf1p-93},
    {0x1.517a675e78d81p-38, -0x1.0476ec5c53cdep-100, 0x1.25558525007ddp-35, -0x1.7795db65b7a26p-90},
    {0x1.041789eb749a0p-37, 0x1.f896fbb9a7758p-91, 0x1.c027cdafdb7eep-35, -0x1.5fe319e8ebfbbp-89},
    {0x1.8f5e8ff569e4fp-37, 0x1.7387ffbfe9cbep-96, 0x1.5502d5272ef15p-34, 0x1.06ef8b988bb0fp-88},
    {0x1.317156a77fb3bp-36, -0x1.c8ecdba34582fp-91, 0x1.0278913764ce1p-33, 0x1.a390d45f369b7p-87},
    {0x1.d16d9327cb32ep-36, 0x1.0bac647b97fbbp-92, 0x1.864a824d3603ep-33, -0x1.641a16ccaf496p-87},
    {0x1.61404b2da0191p-35, 0x1.a9b47f425349ap-93, 0x1.258556ae47e79p-32, -0x1.866cadf767be9p-93},
    {0x1.0b1665032fb87p-34, -0x1.2dfb8a3d7563ap-89, 0x1.b7c4692f5b9f3p-32, -0x1.5c58c045cbfabp-86},
    {0x1.9256fc30ef212p-34, 0x1.8b8d14802d444p-89, 0x1.4827ed8abcf99p-31, -0x1.40170991e65e5p-86},
    {0x1.2de2be7f9538bp-33, 0x1.d68b4ec44fe83p-87, 0x1.e7d54776a7576p-31, 0x1.448f538801fdap-85},
    {0x1.c34c28f35ea26p-33, 0x1.13e5f2cdb9773p-88, 0x1.6930a864fa47bp-30, 0x1.96d584341f3efp-84},
    {0x1.500afb591eac5p-32, -0x1.382d39982f60fp-86, 0x1.0a61a1ca8cceap-29, 0x1.95c1130b52755p-84},
    {0x1.f289d4870f466p-32, 0x1.9e18e8c08bfeep-87, 0x1.8762da2fe17bdp-29, 0x1.91dcf5cf38390p-83},
    {0x1.706576a4a4920p-31, -0x1.94ebe54e1768fp-87, 0x1.1e67ad1f07c4ep-28, -0x1.5e75f838263a4p-83},
    {0x1.0f30ef0092d48p-30, 0x1.f0faa93e340a9p-85, 0x1.a1880fbd087fcp-28, 0x1.18d15a785658cp-82},
    {0x1.8dbff0d10530ep-30, 0x1.3a16f0581ec86p-84, 0x1.2f28e0bfab93dp-27, 0x1.e079f9b8172cap-83},
    {0x1.2293637785101p-29, -0x1.13f066e474423p-84, 0x1.b6848b29cc3ddp-27, -0x1.42e438b7083b4p-81},
    {0x1.a6f2123add778p-29, -0x1.d9228462a9755p-85, 0x1.3beb6550c2febp-26, -0x1.2a52fe618e3b8p-80},
    {0x1.32a35e335e12bp-28, 0x1.01da174f2bf56p-82, 0x1.c56b24c535bf5p-26, 0x1.9afe7f18b58cep-80},
    {0x1.baf0b99522398p-28, 0x1.c54c9dd73691fp-86, 0x1.441cc4c836277p-25, 0x1.c82405c7a5288p-79},
    {0x1.3eb34524706c6p-27, -0x1.7075744a380bap-81, 0x1.cd8ea2b41efb9p-25, -0x1.14318c7b7c25ep-81},
    {0x1.c8e057e966197p-27, -0x1.37d246f45e6d5p-83, 0x1.475ccccd7f7a4p-24, 0x1.6727c63b5c3bcp-79},
    {0x1.463cfa9c7fce7p-26, 0x1.d319482f286c1p-80, 0x1.ce8ec39250975p-24, 0x1.b565716c2634ap-79},
    {0x1.d024981172f2dp-26, -0x1.4a09a9ea6184ep-80, 0x1.4584df7a0b9f9p-23, -0x1.f743193e52d28p-79},
    {0x1.48eb8caab7cc6p-25, 0x1.6302478c1cc1dp-79, 0x1.c85f9e060c0ddp-23, -0x1.77707dec493c8p-78},
    {0x1.d06bc2cfad773p-25, -0x1.0897a483a6273p-79, 0x1.3eaaec1f3eea0p-22, -0x1.e15257b01df39p-76},
    {0x1.46a16cd7b7555p-24, -0x1.919ad4f1831c8p-79, 0x1.bb4a8be266ce5p-22, -0x1.e7a79f791238bp-80},
    {0x1.c9b4b6d0b61dcp-24, 0x1.663860edccec4p-79, 0x1.331fbe87470b3p-21, -0x1.1275ec74cfc4fp-75},
    {0x1.3f7a8d8ed2701p-23, 0x1.50af2d2ecbf6ep-79, 0x1.a7e88797bf8dcp-21, 0x1.1e810f1e24e65p-76},
    {0x1.bc4ed8bb089fdp-23, 0x1.2a8164db0f1d9p-77, 0x1.2368d323c1f19p-20, -0x1.6db01dd9c829cp-74},
    {0x1.33ca2f2133831p-22, -0x1.bdc39cdfb8c0dp-83, 0x1.8f16964c8fd3fp-20, 0x1.22449b40a3301p-75},
    {0x1.a8d400adbd127p-22, -0x1.778e13f9c52c2p-77, 0x1.1036583a8f9c7p-19, -0x1.71a50a11fe7eap-75},
    {0x1.241499db1b218p-21, -0x1.fc63ac721e447p-76, 0x1.71e57773b0b54p-19, -0x1.ccbc282cca914p-73},
    {0x1.901d0a9b24853p-21, 0x1.f55ea60988f3fp-75, 0x1.f4accdbfbef3cp-19, 0x1.0e16b22f1f10ap-75},
    {0x1.11056da03cb85p-20, 0x1.88f2145e04f0fp-79, 0x1.518646fbb0c6cp-18, -0x1.902850dffdfcap-75},
    {0x1.7332387830fe3p-20, 0x1.2bc5958efc08bp-74, 0x1.c54d7b6ee038cp-18, -0x1.6c81bcb142b24p-72},
    {0x1.f6c707d24b099p-20, 0x1.48b6253fa94c2p-75, 0x1.2f35fb1d3d065p-17, 0x1.fbc2925152f25p-72},
    {0x1.5338f6af8ca46p-19, -0x1.aba667e5c6434p-73, 0x1.940cb83a6c93cp-17, 0x1.e0b995cc73eafp-71},
    {0x1.c80728dd3b03ap-19, 0x1.6b3512e2aa930p-73, 0x1.0c29a533d0bc5p-16, -0x1.ad137974e0b1bp-73},
    {0x1.3160c1826c206p-18, -0x1.53c847992190cp-73, 0x1.62908c5a5b68cp-16, -0x1.37c38e84a1f98p-70},
    {0x1.9775b45c268bcp-18, -0x1.04623997669e1p-72, 0x1.d2fa44486e8e6p-16, -0x1.911b1bb909608p-70},
    {0x1.0ed0e1d208db4p-17, -0x1.d7640f507d013p-71, 0x1.3250fe62bdfcdp-15, -0x1.95e7c27eaaac6p-73},
    {0x1.66a5bcbf244eap-17, 0x1.0391b24f8941ap-74, 0x1.904afdde8cca3p-15, 0x1.0e020aeb4520ep-71},
    {0x1.d930fc1054522p-17, -0x1.a268da89f4f2ep-73, 0x1.0487e65cfaa06p-14, -0x1.120bc1e860ba8p-68},
    {0x1.36feaecd8d1e3p-16, -0x1.d052faeba8769p-71, 0x1.51cfa5ec5ce7dp-14, -0x1.ae8c5f4aa5d9fp-68},
    {0x1.97443804f6995p-16, -0x1.e8686766c0573p-72, 0x1.b44e9cfce5be7p-14, -0x1.1647088e492bfp-69},
    {0x1.09ad7954afff8p-15, -0x1.d0684d8e1b28fp-69, 0x1.18a98e2c0b4b4p-13, 0x1.a89982a93fe63p-67},
    {0x1.595675c2cbdc0p-15, -0x1.b88fdf737123cp-70, 0x1.67aca46fc8a3ap-13, -0x1.bb755e11fa862p-67},
    {0x1.bf37663a4a43bp-15, 0x1.251623c6726cep-70, 0x1.cb22072d20a39p-13, -0x1.29dd6e1e1270ap-69},
    {0x1.20806177106fdp-14, -0x1.6044f0e7da116p-68, 0x1.23e792445b135p-12, -0x1.25d48bd5e8182p-68},
    {0x1.72d9564b2dce0p-14, -0x1.23a94875b903bp-71, 0x1.71b92ecaaa791p-12, -0x1.352f768acfff3p-66},
    {0x1.daf021c90dfc8p-14, 0x1.d7048db8dbed8p-69, 0x1.d27651aac5192p-12, -0x1.55bfe27f5ae28p-67},
    {0x1.2eff7fc311e78p-13, 0x1.0516b08ad7ce0p-67, 0x1.251bf7a2b0faep-11, -0x1.c36737c2d6311p-65},
    {0x1.812f0e4b6d184p-13, -0x1.bac248c067fcbp-69, 0x1.6eec8bfe11926p-11, -0x1.58e05850aa7f3p-67},
    {0x1.e7dbc92b77dd5p-13, -0x1.1f5b3032df8cap-67, 0x1.c9897d147e61fp-11, 0x1.7b5302f958e98p-66},
    {0x1.33d0aab71796cp-12, -0x1.78336d78ae6b1p-66, 0x1.1c26c98be9100p-10, 0x1.a4313e17fc3e0p-64},
    {0x1.8301be4097ac0p-12, -0x1.981583c7086e5p-66, 0x1.5f90f6ce87b37p-10, 0x1.62b09146953c4p-64},
    {0x1.e4c9eefc4f5d7p-12, -0x1.91e51bb0f6e94p-66, 0x1.b1478142a9f43p-10, 0x1.71f05fa087148p-66},
    {0x1.2e86fd7d03406p-11, 0x1.8013f4d6a4513p-65, 0x1.09f38e18a2820p-9, 0x1.0e60af954930cp-63},
    {0x1.7832e558d7053p-11, 0x1.b00c7ce7e87fcp-72, 0x1.4536f2fe0dbd2p-9, 0x1.b12c27eb9b145p-63},
    {0x1.d21af4ae0dd6dp-11, 0x1.39965159e609ap-65, 0x1.8c2226d7ae536p-9, -0x1.0be5d59514c79p-65},
    {0x1.1fb2cbad16b6ap-10, -0x1.7e81c10871333p-64, 0x1.e0a2d6b4bc0a2p-9, -0x1.4fd38332a5ec6p-64},
    {0x1.61de1f985b5d7p-10, -0x1.dd537b698460ep-65, 0x1.227213fd77689p-8, -0x1.9f32adc08250fp-62},
    {0x1.b1ad9b59f98dbp-10, -0x1.ed2dbd4168ab7p-65, 0x1.5da9231033525p-8, -0x1.05b68158e7c90p-62},
    {0x1.08c890e7cdbf7p-9, -0x1.295beef348398p-65, 0x1.a34ea57d8ce36p-8, -0x1.5d760e023eaa8p-62},
    {0x1.42297a541b29dp-9, -0x1.0a1794732d1eep-65, 0x1.f4dda60c385e1p-8, 0x1.c2a2ef73e2180p-63},
    {0x1.86904349ec803p-9, -0x1.8ad775566a443p-64, 0x1.29fa54c6341e4p-7, -0x1.2352a0cbfcd48p-63},
    {0x1.d7c9abffe731cp-9, -0x1.c1f3063e7a0b6p-64, 0x1.612ac0e9a7e92p-7, -0x1.93f42fb337bd8p-61},
    {0x1.1bee6c07df146p-8, 0x1.ff937be022b1ep-63, 0x1.a0f22be9d3248p-7, -0x1.b7b72da713783p-61},
    {0x1.5487bf0374d49p-8, 0x1.a654637af92f2p-63, 0x1.ea52e68465104p-7, 0x1.318b244a38ea6p-61},
    {0x1.96f4e57e49ce4p-8, 0x1.655043385cde6p-62, 0x1.1f2f0557f5256p-6, 0x1.24a8e793d0774p-61},
    {0x1.e49cebb53f987p-8, 0x1.2355cecddf8fep-62, 0x1.4f18bb3e12127p-6, 0x1.541e89dfe1aa2p-63},
    {0x1.1f85a1c9b297ep-7, -0x1.81affd453edf5p-62, 0x1.857a94283500cp-6, -0x1.78051336509fdp-66},
    {0x1.53f86ae1471edp-7, -0x1.fa87085e33849p-61, 0x1.c2ebf93dd894fp-6, 0x1.8e50f6a31000cp-60},
    {0x1.90924f21d3612p-7, 0x1.3840438696074p-61, 0x1.0402dfd3dc1a2p-5, -0x1.3a21096d96450p-59},
    {0x1.d651df344c7e8p-7, -0x1.9f72e2dcb840cp-61, 0x1.2aafe8c273f97p-5, 0x1.476b634ca10f3p-59},
    {0x1.13243b7f38028p-6, -0x1.4959fba644d22p-60, 0x1.55c73f6773b10p-5, 0x1.b06dd43387216p-61},
    {0x1.40cccd806626bp-6, -0x1.f47d3de156d95p-60, 0x1.858fbcf862336p-5, 0x1.96f51aade0ca2p-60},
    {0x1.74bcf82c9d860p-6, -0x1.98c5d9f298e61p-60, 0x1.ba4b436e83ad4p-5, 0x1.b989df7227527p-59},
    {0x1.af96e328c3cf8p-6, -0x1.13abfedf340a1p-62, 0x1.f434f3576babep-5, -0x1.6ad30d436558bp-59},
    {0x1.f20394ecbf67bp-6, -0x1.3837b919fb386p-62, 0x1.19bfa3516daddp-4, -0x1.8572ba2307df7p-58},
    {0x1.1e58df4c1099bp-5, -0x1.a43d875d76602p-59, 0x1.3c290c6d3675ep-4, -0x1.16c168adc9d12p-60},
    {0x1.482a2414556ddp-5, -0x1.5d630c975826bp-59, 0x1.6164536bf162cp-4, -0x1.d7269a8bd03eap-59},
    {0x1.76d04e5c4ac56p-5, 0x1.afb56caebd182p-59, 0x1.8977c8ccac971p-4, -0x1.70f92a908941dp-58},
    {0x1.aaa65bfa4f82ep-5, 0x1.8682cb6877c7cp-62, 0x1.b46178964b20ep-4, 0x1.11e3f6256ef9dp-60},
    {0x1.e4067bd5a15b0p-5, -0x1.75e819d7363b0p-62, 0x1.e21642e0b9f4dp-4, -0x1.d76e4165ac646p-61},
    {0x1.11a46d89647efp-4, -0x1.8754956d31307p-58, 0x1.0940856d21e84p-3, 0x1.abdc4ee88d240p-57},
    {0x1.34612cf6c4d10p-4, 0x1.3fc802c1c0eb1p-59, 0x1.22c101ef6f97cp-3, 0x1.1e6e7a0f8d164p-57},
    {0x1.5a61963dc9206p-4, -0x1.df8df90e5f3edp-62, 0x1.3d771214fa58dp-3, 0x1.aad4df3323d5bp-58},
    {0x1.83cab6400a0e6p-4, 0x1.3c31c66e1736ep-58, 0x1.5947622eab9e4p-3, 0x1.08cd21d360127p-58},
    {0x1.b0bdd12ba9c29p-4, 0x1.13d184c6481edp-58, 0x1.7610b9431f0c8p-3, -0x1.6247f9bc7ebb0p-57},
    {0x1.e157a5e4d23e0p-4, 0x1.60c7ed5681fadp-59, 0x1.93abff38d796dp-3, -0x1.aa591c75f0820p-57},
    {0x1.0ad7da0f9b0b9p-3, -0x1.fbb0f6ee9275fp-57, 0x1.b1ec620324775p-3, 0x1.a633f53807977p-57},
    {0x1.26ebc4925aa20p-3, 0x1.404e0ebb2f9ecp-58, 0x1.d09f9b7f00251p-3, 0x1.4a1d37eddb084p-57},
    {0x1.44ed0bb7cb20bp-3, 0x1.6d0374584348cp-58, 0x1.ef8e58e331737p-3, 0x1.c30e33c93dc5ep-57},
    {0x1.64dd8ea6a7372p-3, 0x1.ea039c6142673p-58, 0x1.073e61e2d62dfp-2, 0x1.bc631ed4d7030p-56},
    {0x1.86bb4f580a4bap-3, -0x1.f0ebd79e9beeep-60, 0x1.169595e2ff286p-2, -0x1.490abb312ab0cp-56},
    {0x1.aa803b13e3a6cp-3, -0x1.fa4e2f7f4e250p-60, 0x1.25ab6778819cap-2, -0x1.08e12624e8c3ap-57},
    {0x1.d0220056b3a4ep-3, -0x1.2b4e17c3f97cfp-57, 0x1.345d5efad3415p-2, -0x1.c93a973fad7dap-56},
    {0x1.f791f3bffb742p-3, 0x1.93f2309820007p-58, 0x1.42886c270d055p-2, 0x1.cf91a2f623185p-56},
    {0x1.105e82b1e4ca0p-2, -0x1.6290fa64ad157p-57, 0x1.50096dcefd7c8p-2, 0x1.ee2214ab4beaep-57},
    {0x1.25c5e3c3b41c1p-2, 0x1.6c25ee61f64c3p-57, 0x1.5cbdc05eb969fp-2, -0x1.73c5f2dd44d3ep-58},
    {0x1.3bf143b9aa712p-2, 0x1.0cbf1c37bd636p-56, 0x1.6883d022086acp-2, 0x1.4a5c4ad498997p-57},
    {0x1.52d0bc4ee0dc2p-2, -0x1.a137d192f94cfp-59, 0x1.733babf5ba2dep-2, 0x1.f157b8cb8566bp-56},
    {0x1.6a527901e8243p-2, 0x1.94e9483262fe9p-58, 0x1.7cc794ec16300p-2, 0x1.48aebb928a35fp-56},
    {0x1.8262de8bd8374p-2, -0x1.b5e4f606af72ep-56, 0x1.850c87617d80ap-2, 0x1.ded66310614ebp-56},
    {0x1.9aecba9d22528p-2, -0x1.a8594ac18afbfp-56, 0x1.8bf2ba104beccp-2, 0x1.c8c9f84d27939p-56},
    {0x1.b3d97b25b41bcp-2, -0x1.b55f39875fd3fp-56, 0x1.91660fe14c3f3p-2, 0x1.1542e2735e901p-56},
    {0x1.cd116c3bf96a6p-2, 0x1.f9b54729840bep-56, 0x1.9556797fced53p-2, 0x1.374d306d0fa54p-56},
    {0x1.e67bfb89b5133p-2, 0x1.da6ffe9ae42fdp-56, 0x1.97b8441bad798p-2, -0x1.d3a54adb84a4ep-61},
    {0x1.0000000000000p-1, 0x0.0p+0, 0x1.9884533d43651p-2, -0x1.cbc0d30ebfd15p-56},
    {0x1.0cc2023b25766p-1, 0x1.12c800b28de82p-55, 0x1.97b8441bad798p-2, -0x1.d3a54adb84a4ep-61},
    {0x1.197749e2034adp-1, -0x1.f9b54729840bep-56, 0x1.9556797fced53p-2, 0x1.374d306d0fa54p-56},
    {0x1.2613426d25f22p-1, 0x1.b55f39875fd3fp-56, 0x1.91660fe14c3f3p-2, 0x1.1542e2735e901p-56},
    {0x1.3289a2b16ed6cp-1, 0x1.a8594ac18afbfp-56, 0x1.8bf2ba104beccp-2, 0x1.c8c9f84d27939p-56},
    {0x1.3ece90ba13e46p-1, 0x1.b5e4f606af72ep-56, 0x1.850c87617d80ap-2, 0x1.ded66310614ebp-56},
    {0x1.4ad6c37f0bedep-1, 0x1.cd62d6f9b3a03p-55, 0x1.7cc794ec16300p-2, 0x1.48aebb928a35fp-56},
    {0x1.5697a1d88f91fp-1, 0x1.a137d192f94cfp-59, 0x1.733babf5ba2dep-2, 0x1.f157b8cb8566bp-56},
    {0x1.62075e232ac77p-1, -0x1.0cbf1c37bd636p-56, 0x1.6883d022086acp-2, 0x1.4a5c4ad498997p-57},
};

// a + b = s + err exactly (Knuth's two-sum).
inline double two_sum(double a, double b, double& err) {
    const double s = a + b;
    const double bb = s - a;
    err = (a - (s - bb)) + (b - bb);
    return s;
}

// Double-double arithmetic (value hi + lo, |lo| <= ulp(hi)/2) for gelu below
// the table, where the Mills ratio and the low part of z^2 must reach the
// final rounding with errors far below an ulp.
struct DD {
    double hi, lo;
};

inline DD dd_norm(double s, double e) {
    const double hi = s + e;
    return DD{hi, e - (hi - s)};
}

inline DD dd_add(DD a, DD b) {
    double err = 0.0;
    const double s = two_sum(a.hi, b.hi, err);
    return dd_norm(s, err + (a.lo + b.lo));
}

inline DD dd_mul(DD a, DD b) {
    const double p = a.hi * b.hi;
    return dd_norm(p, std::fma(a.hi, b.hi, -p) + (a.hi * b.lo + a.lo * b.hi));
}

inline DD dd_div(DD a, DD b) {
    const double q1 = a.hi / b.hi;
    const DD r = dd_add(a, dd_mul(DD{-q1, 0.0}, b));  // a - q1 b, nearly exact
    const double q2 = r.hi / b.hi;
    const DD r2 = dd_add(r, dd_mul(DD{-q2, 0.0}, b));
    return dd_add(dd_norm(q1, q2), DD{r2.hi / b.hi, 0.0});
}

// a / b for a small integer b: a.hi - q1 b is exact (fma)
inline DD dd_div_int(DD a, double b) {
    const double q1 = a.hi / b;
    const double rem = std::fma(-q1, b, a.hi) + a.lo;
    return dd_norm(q1, rem / b);
}

// e^y = 2^k m for a double-double y with |y| < 2^60 ln 2, m a double-double to
// about 2^-100. k has up to 61 bits, so k ln 2 needs ln 2 in three parts and
// the exact products k * part (fma); y.hi - k * part0 is exact (Sterbenz). A
// first k above 2^53 is itself rounded (a multiple of up to 2^8), so a second
// step removes what it leaves; then |r| <= ln 2 / 2.
DD exp_dd(DD y, exp_t& k_out) {
    constexpr double kLn2Parts[3] = {0x1.62e42fefa39efp-1, 0x1.abc9e3b39803fp-56, 0x1.7b57a079a1934p-111};
    k_out = 0;
    for (int step = 0; step < 2; ++step) {
        const double kd = std::nearbyint(y.hi * 1.44269504088896340736);
        if (kd == 0.0) break;
        const double p1 = kd * kLn2Parts[0];
        const double e1 = std::fma(kd, kLn2Parts[0], -p1);
        const double p2 = kd * kLn2Parts[1];
        const double e2 = std::fma(kd, kLn2Parts[1], -p2);
        DD r{y.hi - p1, 0.0};
        for (const double t : {y.lo, -e1, -p2, -e2, -kd * kLn2Parts[2]}) r = dd_add(r, DD{t, 0.0});
        y = r;
        k_out += static_cast<exp_t>(kd);
    }
    // sum_{n<=16} y^n / n! by Horner, F_n = 1 + y F_{n+1} / n, F_1 = e^y: the tail
    // is below 2^-68. F_5 enters e^y times y^4 / 24 < 2^-10, so it is taken in
    // double (its 2^-53 costs 2^-63); F_4 .. F_1 in double-double.
    double f = 1.0;
    for (int n = 16; n >= 5; --n) f = 1.0 + y.hi * f / n;
    DD sum{f, 0.0};
    for (int n = 4; n >= 1; --n) sum = dd_add(DD{1.0, 0.0}, dd_div_int(dd_mul(y, sum), double(n)));
    return sum;
}

// Mills ratio R(t) = Phi(-t) / phi(t) for t >= 10 from Laplace's continued
// fraction 1/(t + 1/(t + 2/(t + 3/(t + ...)))). Levels needed for a relative
// error below 1e-22 (mpmath): 18 at t = 10, 13 at 15, 9 at 30, 6 at 100, fewer
// above; the counts below keep a margin of three or more. Evaluated from the
// deepest level up, f_k = t + k / f_{k+1}: an error in f_k reaches R damped by
// (k-1)! / t^(2k-2) or more, so levels 5 and deeper (damping about 2^-22 at
// t = 10) are taken in double and only the last four in double-double.
DD mills_ratio_dd(double t) {
    const int levels = t >= 100.0 ? 9 : t >= 30.0 ? 12 : t >= 15.0 ? 16 : 22;
    double fd = t;
    for (int k = levels; k >= 5; --k) fd = t + k / fd;
    const DD td{t, 0.0};
    DD f{fd, 0.0};
    for (int k = 4; k >= 1; --k) f = dd_add(td, dd_div(DD{double(k), 0.0}, f));
    return dd_div(DD{1.0, 0.0}, f);
}

// gelu for z < kGeluTableLo, to about an ulp: gelu = z phi(z) R(-z) and
// gelu' = phi(z) (R(-z) + z), phi(z) = e^{-(h + l)/2} / sqrt(2 pi) with
// z^2 = h + l exactly. Every factor is a double-double and each result is
// rounded once (a rounded e^{-h/2} alone would cost up to 2^-52 relative,
// 2 ulp of a result with a larger mantissa). gelu' has no root here
// (R(-z) + z < 0), so its relative error is meaningful too; its root near
// z = -0.7518 lies in the table's range (see gelu_tabled).
void gelu_below_table(double z, Ext* a, Ext* d, bool& under) {
    constexpr DD kInvSqrt2PiDD{0x1.9884533d43651p-2, -0x1.cbc0d30ebfd15p-56};
    const double h = z * z;
    const double l = std::fma(z, z, -h);
    // the same test as every other e^x of the activations (exp_under): below the
    // exponent range, both results are flushed values (settle_underflow)
    if (exp_underflows(-0.5 * h)) {
        under = true;
        set(a, kExtZero);
        set(d, kExtZero);
        return;
    }
    exp_t k = 0;
    const DD phi = dd_mul(exp_dd(DD{-0.5 * h, -0.5 * l}, k), kInvSqrt2PiDD);  // phi(z) / 2^k
    const DD r = mills_ratio_dd(-z);
    if (a) *a = normalize(dd_mul(phi, dd_mul(r, DD{z, 0.0})).hi, k);
    if (d) *d = normalize(dd_mul(phi, dd_add(r, DD{z, 0.0})).hi, k);
}

void gelu_tabled(double z, Ext* a, Ext* d) {
    const int k = static_cast<int>(std::nearbyint((z - kGeluTableLo) * 16.0));
    const double* row = kGeluTable[std::clamp(k, 0, kGeluTableLast)];
    const double z0 = kGeluTableLo + std::clamp(k, 0, kGeluTableLast) / 16.0;
    const double h = z - z0;  // exact: z0 is a multiple of 1/16, |h| <= 1/32
    // sum_{n=1}^{16} c_n h^n, c_n = (-1)^{n-1} He_{n-1}(z0) / n!, by Horner
    constexpr int kTerms = 16;  // |z0 h| <= 10/32: the last term is below 2^-60 of the sum
    // 1/n! rounded (a relative 2^-53 in a term below a third of the sum costs nothing)
    constexpr double kInvFactorial[kTerms + 1] = {
        0x1.0000000000000p+0,  0x1.0000000000000p+0,  0x1.0000000000000p-1,  0x1.5555555555555p-3,
        0x1.5555555555555p-5,  0x1.1111111111111p-7,  0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-13,
        0x1.a01a01a01a01ap-16, 0x1.71de3a556c734p-19, 0x1.27e4fb7789f5cp-22, 0x1.ae64567f544e4p-26,
        0x1.1eed8eff8d898p-29, 0x1.6124613a86d09p-33, 0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-41,
        0x1.ae7f3e733b81fp-45};
    double c[kTerms + 1];
    double he_prev = 1.0, he = z0;  // He_0, He_1
    c[1] = 1.0;
    for (int n = 2; n <= kTerms; ++n) {
        c[n] = ((n % 2 == 0) ? -he : he) * kInvFactorial[n];  // He_{n-1}
        const double next = z0 * he - (n - 1) * he_prev;
        he_prev = he;
        he = next;
    }
    double sum = c[kTerms];
    for (int n = kTerms - 1; n >= 1; --n) sum = std::fma(sum, h, c[n]);
    const double integral = sum * h;
    double cdf_err = 0.0;
    const double cdf_hi = two_sum(row[0], std::fma(row[2], integral, row[1] + row[3] * integral), cdf_err);
    const double cdf_lo = cdf_err;
    if (a) {
        const double p = z * cdf_hi;
        *a = from_double(p + (std::fma(z, cdf_hi, -p) + z * cdf_lo));
    }
    if (d) {
        // phi(z) = phi(z0) (1 + em), em = e^t - 1, t = -h (z + z0) / 2
        const double em = std::expm1(-0.5 * h * (z + z0));
        double pe = 0.0;
        const double pdf_hi = two_sum(row[2], std::fma(row[2], em, row[3] * (1.0 + em)), pe);
        const double pdf_lo = pe;
        // gelu' = Phi + z phi, summed in double-double and rounded once. Near its
        // root (z ~ -0.7518) the terms cancel: the error is bounded relative to
        // Phi(z), and relative to gelu' itself it is unbounded there.
        const double q = z * pdf_hi;
        const double q_lo = std::fma(z, pdf_hi, -q) + z * pdf_lo;
        double se = 0.0;
        const double s = two_sum(cdf_hi, q, se);
        *d = from_double(s + (se + cdf_lo + q_lo));
    }
}

// silu(z) = z s and silu'(z) = s (1 + z (1 - s)), s = sigmoid(z), in terms of
// t = e^{-|z|}, each result one quotient rounded once (div_pair):
//   z < 0: silu = z t / (1 + t),  silu' = t (1 + z + t) / (1 + t)^2
//   z > 0: silu = z / (1 + t),    silu' = (1 + t (1 + z)) / (1 + t)^2
// Numerators and 1 + t are carried as exact pairs (two_sum, exact products), so what is
// left is t's own error and the final rounding (0.5 ulp). t's relative error
// reaches silu damped or undamped (sensitivity t/(1 + t) for z > 0, 1/(1 + t)
// for z < 0), and libm's 0.51 ulp of t is at most 1.02 ulp of a result with a
// larger mantissa: within 1.53 ulp. For silu' the sensitivity is
// |t (1 + z)/N - 2t/(1 + t)| <= 1 for z > 0, and |1 + t/N - 2t/(1 + t)| for
// z < 0, N = 1 + z + t: N vanishes at silu''s root z0 = -1.27846454276107...,
// and the sensitivity exceeds 1.08 only inside [kSiluDdLo, kSiluDdHi]. Outside
// that interval t from libm gives 0.5 + 1.02 * 1.08 < 1.61 ulp; inside it t is
// taken from exp_dd as a pair (its own bound is 2^-63; measured, silu' stays
// within 1.3 ulp wherever |silu'| >= 2^-20 s, i.e. outside z0 -+ 1e-6, the root
// neighbourhood that docs/guarantees.md names; within it the error is below
// 2^-70 s, i.e. N itself is good to 2^-70 there).
constexpr double kSiluDdLo = -1.6;
constexpr double kSiluDdHi = -0.8;

void silu_kernel(double z, Ext* a, Ext* d, bool& under) {
    if (z < -700.0) {
        // t = e^z is below float64 range; 1 + t rounds to 1 and t^2 terms are
        // below 2^-1000 of the results: silu = z t, silu' = t (1 + z), with
        // 1 + z as an exact pair so each result rounds once beyond exp_ext's.
        const Ext t = exp_under(z, under);
        set(a, mul(t, from_double(z)));
        if (d) {
            double c_lo = 0.0;
            const double c = two_sum(1.0, z, c_lo);
            const double p = t.m * c;
            *d = normalize(p + (std::fma(t.m, c, -p) + t.m * c_lo), t.e);
        }
        return;
    }
    double t, t_lo = 0.0;
    if (z >= kSiluDdLo && z <= kSiluDdHi) {
        exp_t k = 0;
        const DD e = exp_dd(DD{z, 0.0}, k);
        t = std::ldexp(e.hi, static_cast<int>(k));  // exact: k is -1 or -2
        t_lo = std::ldexp(e.lo, static_cast<int>(k));
    } else {
        t = std::exp(-std::fabs(z));  // exp_ext's value in this range
    }
    const OnePlusT o = one_plus(t, t_lo);
    if (a) {
        if (z > 0) {
            *a = from_double(div_pair(z, 0.0, o.onep, o.onep_lo, o.inv));
        } else {
            double p, p_lo;
            two_prod(z, t, p, p_lo);
            *a = from_double(div_pair(p, p_lo + z * t_lo, o.onep, o.onep_lo, o.inv));
        }
    }
    if (!d) return;
    double c_lo = 0.0;
    const double c = two_sum(1.0, z, c_lo);  // 1 + z = c + c_lo exactly
    double n, n_lo;
    if (z < 0) {
        double e = 0.0;
        const double nh = two_sum(c, t, e);
        const double nl = (c_lo + e) + t_lo;  // 1 + z + t = nh + nl
        two_prod(t, nh, n, n_lo);
        n_lo += t * nl + t_lo * nh;
    } else {
        double u, u_lo;
        two_prod(t, c, u, u_lo);
        u_lo += t * c_lo;
        double e = 0.0;
        n = two_sum(1.0, u, e);
        n_lo = e + u_lo;
    }
    *d = from_double(div_pair(n, n_lo, o.sq, o.sq_lo, o.inv2));
}

// Above this z, e^{-z} < 2^-70: softplus(z) = silu(z) = z, their derivatives
// and sigmoid(z) are 1 to the last bit (z e^{-z} < 2^-64 too). Taking these
// forms there avoids e^{-z}, which leaves the extended range for z > 2^60 ln 2
// although the results do not.
constexpr double kSaturated = 50.0;

void activate_double_range(Activation act, Ext zx, double z, Ext* a, Ext* d, bool& under) {
    if (z > kSaturated && (act == Activation::softplus || act == Activation::silu)) {
        set(a, zx);
        set(d, kExtOne);
        return;
    }
    switch (act) {
        case Activation::sigmoid:
            if (z > kSaturated && !d) {  // the value alone: 1 (the derivative e^{-z} needs the range)
                set(a, kExtOne);
                return;
            }
            sigmoid_from_t(z >= 0, exp_under(-std::fabs(z), under), a, d);
            return;
        case Activation::tanh: {
            set(a, from_double(std::tanh(z)));
            if (d) {
                const Ext t = exp_under(-2.0 * std::fabs(z), under);  // 1 - tanh^2 = 4t/(1+t)^2
                if (t.e < -60) {
                    *d = Ext{t.m, t.e + 2};
                } else {
                    const double td = to_double(t);
                    *d = from_double(4.0 * td / ((1.0 + td) * (1.0 + td)));
                }
            }
            return;
        }
        case Activation::elu:
            if (z > 0) {
                set(a, zx);
                set(d, kExtOne);
            } else {
                set(a, from_double(kEluAlpha * std::expm1(z)));
                if (d) *d = mul(exp_under(z, under), from_double(kEluAlpha));
            }
            return;
        case Activation::selu:
            if (z > 0) {
                set(a, mul(zx, from_double(kSeluLambda)));
                set(d, from_double(kSeluLambda));
            } else {
                set(a, from_double(kSeluLambda * kSeluAlpha * std::expm1(z)));
                if (d) *d = mul(exp_under(z, under), from_double(kSeluLambda * kSeluAlpha));
            }
            return;
        case Activation::softplus:
            if (z > 0) {
                set(a, from_double(z + std::log1p(std::exp(-z))));
                if (d) sigmoid_from_t(true, exp_under(-z, under), d, nullptr);  // softplus' = sigmoid
            } else {
                const Ext t = exp_under(z, under);
                set(a, log1p_ext(t));
                if (d) sigmoid_from_t(false, t, d, nullptr);
            }
            return;
        case Activation::gelu: {
            if (z >= kGeluTableLo && z <= kGeluTableHi) {
                gelu_tabled(z, a, d);
            } else if (z > kGeluTableHi) {
                const double cdf = 0.5 * std::erfc(-z * kInvSqrt2);
                set(a, from_double(z * cdf));
                set(d, from_double(cdf + z * kInvSqrt2Pi * std::exp(-0.5 * z * z)));
            } else {
                gelu_below_table(z, a, d, under);
            }
            return;
        }
        case Activation::silu:
            silu_kernel(z, a, d, under);
            return;
        default:
            throw std::logic_error("activate_double_range: piecewise-linear activation");
    }
}

}  // namespace

void activate_ext(Activation act, Ext z, Ext* a, Ext* d) {
    const bool pos = z.m > 0;
    switch (act) {  // piecewise-linear ones are exact in any range
        case Activation::identity:
            set(a, z);
            set(d, kExtOne);
            return;
        case Activation::relu:
            set(a, pos ? z : kExtZero);
            set(d, pos ? kExtOne : kExtZero);
            return;
        case Activation::leaky_relu:
            set(a, pos ? z : mul(z, from_double(kLeakySlope)));
            set(d, from_double(pos ? 1.0 : kLeakySlope));
            return;
        default:
            break;
    }
    if (z.m == 0.0 || z.e < kTinyExp) {
        // First-order Taylor forms: f(z) = f(0) + f'(0) z to the last bit.
        switch (act) {
            case Activation::sigmoid:
                set(a, from_double(0.5));
                set(d, from_double(0.25));
                return;
            case Activation::tanh:
            case Activation::elu:
                set(a, z);
                set(d, kExtOne);
                return;
            case Activation::selu: {
                const double k = pos ? kSeluLambda : kSeluLambda * kSeluAlpha;
                set(a, mul(z, from_double(k)));
                set(d, from_double(k));
                return;
            }
            case Activation::softplus:
                set(a, from_double(kLn2));
                set(d, from_double(0.5));
                return;
            case Activation::gelu:
            case Activation::silu:
                set(a, Ext{z.m, z.m == 0.0 ? kZeroExp : z.e - 1});
                set(d, from_double(0.5));
                return;
            default:
                break;
        }
    }
    bool under = false;  // some e^x fell below the extended range (flushed to zero)
    if (z.e > kHugeExp) {
        // |z| > 2^1000: the saturated side is exact; the other side's value or
        // derivative is e^{-|z|} (times at most |z|), below the extended range:
        // zero, as settle_underflow then treats it.
        under = !pos || ((act == Activation::sigmoid || act == Activation::tanh) && d);
        switch (act) {
            case Activation::sigmoid:
                set(a, pos ? kExtOne : kExtZero);
                set(d, kExtZero);
                break;
            case Activation::tanh:
                set(a, from_double(pos ? 1.0 : -1.0));
                set(d, kExtZero);
                break;
            case Activation::elu:
                set(a, pos ? z : from_double(-kEluAlpha));
                set(d, pos ? kExtOne : kExtZero);
                break;
            case Activation::selu:
                set(a, pos ? mul(z, from_double(kSeluLambda))
                           : from_double(-kSeluLambda * kSeluAlpha));
                set(d, pos ? from_double(kSeluLambda) : kExtZero);
                break;
            case Activation::softplus:
            case Activation::gelu:
            case Activation::silu:
                set(a, pos ? z : kExtZero);
                set(d, pos ? kExtOne : kExtZero);
                break;
            default:
                break;
        }
    } else {
        activate_double_range(act, z, to_double(z), a, d, under);
    }
    if (under) settle_underflow(act, z, a, d);
}

namespace {

// float64 value and derivative of activation A at z (the derivative only when
// kDer: libm calls are not free to drop). One definition for the scalar and
// the array forms, so both give the same bits.
template <Activation A, bool kDer>
inline void f64_one(double z, double& v, double& g) {
    if constexpr (A == Activation::identity) {
        v = z;
        g = 1;
    } else if constexpr (A == Activation::sigmoid) {
        v = 1.0 / (1.0 + std::exp(-z));
        g = v * (1.0 - v);
    } else if constexpr (A == Activation::tanh) {
        v = tanh_kernel::tanh_f64(z);
        g = 1.0 - v * v;
    } else if constexpr (A == Activation::relu) {
        // nan propagates as in torch.relu / np.maximum (z > 0 alone would turn it into 0)
        v = z > 0 ? z : (z == z ? 0.0 : z);
        g = z > 0 ? 1.0 : 0.0;
    } else if constexpr (A == Activation::leaky_relu) {
        v = z > 0 ? z : kLeakySlope * z;
        g = z > 0 ? 1.0 : kLeakySlope;
    } else if constexpr (A == Activation::elu) {
        v = z > 0 ? z : kEluAlpha * std::expm1(z);
        if constexpr (kDer) g = z > 0 ? 1.0 : kEluAlpha * std::exp(z);
    } else if constexpr (A == Activation::selu) {
        v = z > 0 ? kSeluLambda * z : kSeluLambda * kSeluAlpha * std::expm1(z);
        if constexpr (kDer) g = z > 0 ? kSeluLambda : kSeluLambda * kSeluAlpha * std::exp(z);
    } else if constexpr (A == Activation::softplus) {
        // log(1 + e^z) as numpy's logaddexp(0, z) forms it: finite wherever the
        // value is (log1p(exp(z)) overflowed for z > 709; PyTorch's is finite there too)
        v = std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z)));
        if constexpr (kDer) g = 1.0 / (1.0 + std::exp(-z));
    } else if constexpr (A == Activation::gelu) {
        const double cdf = 0.5 * (1.0 + std::erf(z * kInvSqrt2));
        v = z * cdf;
        if constexpr (kDer) g = cdf + z * kInvSqrt2Pi * std::exp(-0.5 * z * z);
    } else {
        static_assert(A == Activation::silu, "every activation has a float64 form");
        const double s = 1.0 / (1.0 + std::exp(-z));
        v = z * s;
        g = s * (1.0 + z * (1.0 - s));
    }
}

// Calls fn(std::integral_constant<Activation, act>{}): the switch on the
// activation is made once, outside the loops.
template <class F>
void with_activation(Activation act, F&& fn) {
    using A = Activation;
    switch (act) {
        case A::identity: return fn(std::integral_constant<A, A::identity>{});
        case A::sigmoid: return fn(std::integral_constant<A, A::sigmoid>{});
        case A::tanh: return fn(std::integral_constant<A, A::tanh>{});
        case A::relu: return fn(std::integral_constant<A, A::relu>{});
        case A::leaky_relu: return fn(std::integral_constant<A, A::leaky_relu>{});
        case A::elu: return fn(std::integral_constant<A, A::elu>{});
        case A::selu: return fn(std::integral_constant<A, A::selu>{});
        case A::softplus: return fn(std::integral_constant<A, A::softplus>{});
        case A::gelu: return fn(std::integral_constant<A, A::gelu>{});
        case A::silu: return fn(std::integral_constant<A, A::silu>{});
    }
    throw std::invalid_argument("unknown activation code " + std::to_string(static_cast<int>(act)));
}

// a = f(z + b) (b per column; without kBias, f(z)) over rows x n values, and
// d = f'(...) when kDer. Piecewise-linear activations and tanh vectorise.
template <Activation A, bool kBias, bool kDer>
void f64_rows(std::size_t rows, std::size_t n, const double* z, const double* b, double* a, double* d) {
    for (std::size_t r = 0; r < rows; ++r) {
        const double* zr = z + r * n;
        double* ar = a + r * n;
        double* dr = kDer ? d + r * n : nullptr;
        for (std::size_t j = 0; j < n; ++j) {
            double v, g = 0;
            if constexpr (kBias) f64_one<A, kDer>(zr[j] + b[j], v, g);
            else f64_one<A, kDer>(zr[j], v, g);
            ar[j] = v;
            if constexpr (kDer) dr[j] = g;
        }
    }
}

// The piecewise-linear ones and tanh vectorise: built for AVX2 and AVX-512 too
// (see simd.hpp).
template <Activation A, bool kBias, bool kDer>
LOGGRAD_TARGET_AVX2 void f64_rows_avx2(std::size_t rows, std::size_t n, const double* z, const double* b, double* a,
                                       double* d) {
    f64_rows<A, kBias, kDer>(rows, n, z, b, a, d);
}
template <Activation A, bool kBias, bool kDer>
LOGGRAD_TARGET_AVX512 void f64_rows_avx512(std::size_t rows, std::size_t n, const double* z, const double* b,
                                           double* a, double* d) {
    f64_rows<A, kBias, kDer>(rows, n, z, b, a, d);
}

template <Activation A, bool kBias, bool kDer>
void f64_rows_dispatch(std::size_t rows, std::size_t n, const double* z, const double* b, double* a, double* d) {
#if LOGGRAD_SIMD_AVX2
    if constexpr (A == Activation::identity || A == Activation::relu || A == Activation::leaky_relu ||
                  A == Activation::tanh)
        return simd::pick(&f64_rows_avx512<A, kBias, kDer>, &f64_rows_avx2<A, kBias, kDer>,
                          &f64_rows<A, kBias, kDer>)(rows, n, z, b, a, d);
#endif
    f64_rows<A, kBias, kDer>(rows, n, z, b, a, d);
}

template <bool kBias>
void f64_rows(Activation act, std::size_t rows, std::size_t n, const double* z, const double* b, double* a,
              double* d) {
    with_activation(act, [&](auto A) {
        if (d) f64_rows_dispatch<decltype(A)::value, kBias, true>(rows, n, z, b, a, d);
        else f64_rows_dispatch<decltype(A)::value, kBias, false>(rows, n, z, b, a, d);
    });
}

}  // namespace

void activate_f64(Activation act, double z, double* a, double* d) { f64_rows<false>(act, 1, 1, &z, nullptr, a, d); }

void activate_f64_n(Activation act, std::size_t n, const double* z, double* a, double* d) {
    f64_rows<false>(act, 1, n, z, nullptr, a, d);
}

void bias_activate_f64(Activation act, std::size_t rows, std::size_t n, const double* z, const double* b,
                       double* a, double* d) {
    f64_rows<true>(act, rows, n, z, b, a, d);
}

namespace {

// Fast paths for the common case, a pre-activation well inside float64 range,
// written as doubles. Returns false when z is outside that range and the
// general path must be taken.
// tanh: 2^-900 <= |z| < 256, tanh_kernel::tanh_parts (the vectorised
// extended layers take the same; below 2^-900 both give z and 1).
inline bool fast_tanh(double zm, exp_t ze, Ext* a, Ext* d) {
    if (ze < kTinyExp || ze > 8) return false;
    double v, dv;
    tanh_kernel::tanh_parts(zm * pow2(static_cast<int>(ze)), v, dv);
    *a = from_double(v);
    if (d) *d = from_double(dv);
    return true;
}

// The general path, kept out of line: the builds below inline what they call
// (flatten), and this is the rare case.
__attribute__((noinline)) void sigmoid_general(Ext z, Ext* a, Ext* d) { activate_ext(Activation::sigmoid, z, a, d); }

// sigmoid, and sigmoid' when kDer, of n extended values, for those with
// 2^-900 <= |z| < 512 (exponent in [kTinyExp, 9]); the others are left to the
// caller, and the result's bit 63 says whether there are any. Branch-free, so
// that the loop vectorises (each SIMD build gives the same bits: no FMA, one
// order of operations): t = e^{-|z|} = th + tl from tanh_kernel::exp_parts
// (good to 2^-55.5, so t's error shrinks to 0.35 ulp in the bounds of
// sigmoid_der_from_t and sigmoid_from_double), then the same exact-pair
// quotients as one_plus and div_pair with Dekker's products: each result
// rounds once, within 0.9 ulp.
template <bool kDer>
inline std::uint64_t sigmoid_block(std::size_t n, const double* zm, const exp_t* ze, double* am, exp_t* ae,
                                   double* dm, exp_t* de) {
    using detail::bits;
    using detail::from_bits;
    std::uint64_t miss = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const exp_t off = ze[i] - kTinyExp;
        // 1 iff the exponent is outside [kTinyExp, 9] (a zero's kZeroExp too)
        const std::uint64_t out =
            (static_cast<std::uint64_t>(off) | static_cast<std::uint64_t>((9 - kTinyExp) - off)) >> 63;
        miss |= out;
        const std::uint64_t e = static_cast<std::uint64_t>(ze[i]) & (out - 1);  // 0 where out
        const double z = zm[i] * from_bits((e + 1023) << 52);
        const std::uint64_t neg = std::uint64_t(0) - (bits(z) >> 63);  // all ones iff z < 0
        double th, tl;
        tanh_kernel::exp_parts(-std::fabs(z), th, tl);
        const double onep = 1.0 + th, onep_lo = ((1.0 - onep) + th) + tl;  // exact: th <= 1 <= onep
        const double inv = 1.0 / onep;
        // value: (1 or t) / (1 + t)
        const double num = from_bits((bits(th) & neg) | (bits(1.0) & ~neg));
        const double num_lo = from_bits(bits(tl) & neg);
        const double q = num * inv;
        double p, pl;
        tanh_kernel::product_parts(q, onep, p, pl);
        const double v = q + ((((num - p) - pl) + num_lo) - q * onep_lo) * inv;
        detail::normal_parts(v, 0, am[i], ae[i]);
        if constexpr (kDer) {
            // t / (1 + t)^2
            double sq, sq_lo;
            tanh_kernel::square_parts(onep, sq, sq_lo);
            sq_lo += 2.0 * onep * onep_lo;
            const double inv2 = inv * inv;
            const double q2 = th * inv2;
            double p2, pl2;
            tanh_kernel::product_parts(q2, sq, p2, pl2);
            const double dv = q2 + ((((th - p2) - pl2) + tl) - q2 * sq_lo) * inv2;
            detail::normal_parts(dv, 0, dm[i], de[i]);
        }
    }
    return miss << 63;
}

template <bool kDer>
inline void sigmoid_n(std::size_t n, const double* zm, const exp_t* ze, double* am, exp_t* ae, double* dm,
                      exp_t* de) {
    if (!(sigmoid_block<kDer>(n, zm, ze, am, ae, dm, de) >> 63)) return;
    for (std::size_t i = 0; i < n; ++i) {
        if (ze[i] >= kTinyExp && ze[i] <= 9) continue;
        Ext a, d;
        sigmoid_general(Ext{zm[i], ze[i]}, &a, kDer ? &d : nullptr);
        am[i] = a.m;
        ae[i] = a.e;
        if constexpr (kDer) {
            dm[i] = d.m;
            de[i] = d.e;
        }
    }
}

LOGGRAD_FLATTEN void sigmoid_n_base(std::size_t n, const double* zm, const exp_t* ze, double* am, exp_t* ae,
                                    double* dm, exp_t* de) {
    if (dm) sigmoid_n<true>(n, zm, ze, am, ae, dm, de);
    else sigmoid_n<false>(n, zm, ze, am, ae, dm, de);
}
LOGGRAD_TARGET_AVX2 void sigmoid_n_avx2(std::size_t n, const double* zm, const exp_t* ze, double* am, exp_t* ae,
                                        double* dm, exp_t* de) {
    if (dm) sigmoid_n<true>(n, zm, ze, am, ae, dm, de);
    else sigmoid_n<false>(n, zm, ze, am, ae, dm, de);
}
LOGGRAD_TARGET_AVX512 void sigmoid_n_avx512(std::size_t n, const double* zm, const exp_t* ze, double* am,
                                            exp_t* ae, double* dm, exp_t* de) {
    if (dm) sigmoid_n<true>(n, zm, ze, am, ae, dm, de);
    else sigmoid_n<false>(n, zm, ze, am, ae, dm, de);
}

template <bool (*Fast)(double, exp_t, Ext*, Ext*)>
void activate_loop(Activation act, std::size_t n, const double* zm, const exp_t* ze, double* am,
                   exp_t* ae, double* dm, exp_t* de) {
    Ext a, d;
    for (std::size_t i = 0; i < n; ++i) {
        bool done = false;
        if constexpr (Fast != nullptr) done = Fast(zm[i], ze[i], &a, dm ? &d : nullptr);
        if (!done) activate_ext(act, Ext{zm[i], ze[i]}, &a, dm ? &d : nullptr);
        am[i] = a.m;
        ae[i] = a.e;
        if (dm) {
            dm[i] = d.m;
            de[i] = d.e;
        }
    }
}

}  // namespace

void activate_ext_n(Activation act, std::size_t n, const double* zm, const exp_t* ze, double* am,
                    exp_t* ae, double* dm, exp_t* de) {
    // Elementwise: chunks run in parallel, results independent of the split.
    const auto body = [&](std::size_t b, std::size_t e) {
        double* dmb = dm ? dm + b : nullptr;
        exp_t* deb = de ? de + b : nullptr;
        switch (act) {
            case Activation::tanh:
                return activate_loop<fast_tanh>(act, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
            case Activation::sigmoid:
                return simd::pick(&sigmoid_n_avx512, &sigmoid_n_avx2, &sigmoid_n_base)(e - b, zm + b, ze + b, am + b,
                                                                                      ae + b, dmb, deb);
            case Activation::relu:
            case Activation::identity:
                return simd::relu_ext(act == Activation::relu, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
            default:
                return activate_loop<nullptr>(act, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
        }
    };
    constexpr std::size_t kGrain = 4096;
    if (n < 2 * kGrain) {  // too little to share: no pool dispatch, no std::function
        body(0, n);
        return;
    }
    UnderflowSink* sink = underflow_sink();  // the caller's, for the pool's threads too
    parallel_chunks(n, kGrain, [&](std::size_t b, std::size_t e) {
        const UnderflowScope scope(sink);
        body(b, e);
    });
}


}  // namespace loggrad
