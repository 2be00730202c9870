// Activation functions: extended path (exact, log space where it matters) and
// float64 path (framework formulas). Each function's derivative sits next to it.
#include "loggrad/activations.hpp"

#include "loggrad/parallel.hpp"
#include "simd.hpp"
#include "tanh.hpp"

#include <algorithm>
#include <cmath>
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
constexpr double kSqrtPiOver2 = 1.25331413731550025120788264240552263;
constexpr double kInvSqrtPi = 0.564189583547756286948079451560772586;

// Below this |z| (2^-900) every activation is its first-order Taylor form to
// the last bit; above 2^1000 its asymptotic form. In between z is a double.
constexpr exp_t kTinyExp = -900;
constexpr exp_t kHugeExp = 1000;

[[noreturn]] void derivative_out_of_range(Activation act, Ext z) {
    throw range_error(activation_name(act) + " at a pre-activation of " +
                      (sign(z) < 0 ? "-" : "+") + "10^" + std::to_string(log10abs(z)) +
                      " has a value or derivative beyond loggrad's exponent range (|log2| < 2^60)");
}

void set(Ext* p, Ext v) {
    if (p) *p = v;
}

// sigmoid from t = e^{-|z|}: value and derivative t/(1+t)^2, both extended.
void sigmoid_from_t(bool positive, Ext t, Ext* a, Ext* d) {
    if (t.e < -60) {  // 1 + t rounds to 1
        set(a, positive ? kExtOne : t);
        set(d, t);
        return;
    }
    const double td = to_double(t);
    const double onep = 1.0 + td;
    set(a, from_double(positive ? 1.0 / onep : td / onep));
    set(d, from_double(td / (onep * onep)));
}

// erfcx(x) = e^{x^2} erfc(x) for x >= 3.5.
double erfcx_large(double x) {
    if (x < 26.0) {
        // e^{x^2} with x^2 = h + l exactly (fma), so the exponent carries no rounding error.
        const double h = x * x;
        const double l = std::fma(x, x, -h);
        return std::exp(h) * std::erfc(x) * (1.0 + l);
    }
    // Asymptotic series: 1/(x sqrt(pi)) sum_n (-1)^n (2n-1)!! / (2x^2)^n; x >= 26 gives
    // terms below 1e-22 after ten.
    const double w = 1.0 / (2.0 * x * x);
    double term = 1.0, sum = 1.0;
    for (int n = 1; n <= 12; ++n) {
        term *= -(2.0 * n - 1.0) * w;
        sum += term;
    }
    return sum * kInvSqrtPi / x;
}

// e^{-z^2/2} for double z, extended, with z^2 split exactly.
Ext gauss_ext(double z) {
    const double h = z * z;
    const double l = std::fma(z, z, -h);
    Ext g = exp_ext(-0.5 * h);
    return mul(g, from_double(std::exp(-0.5 * l)));
}

// gelu for z in [kGeluTableLo, kGeluTableHi], to about an ulp.
//
// Phi(z) = erfc(-z/sqrt2)/2 from libm loses up to ~30 ulps there: the rounded
// argument -z/sqrt2 is amplified by d ln erfc(u)/du ~ -2u, and erfc itself
// is good to ~2 ulps only. Instead Phi and phi are taken from nodes
// z0 = kGeluTableLo + k/16, stored as double-doubles:
//   Phi(z0 + h) = Phi(z0) + phi(z0) sum_{n>=1} (-1)^{n-1} He_{n-1}(z0) h^n / n!
//   phi(z0 + h) = phi(z0) e^{-h (z + z0)/2}
// (He: probabilists' Hermite polynomials, Phi^{(n)} = (-1)^{n-1} He_{n-1} phi),
// with |h| <= 1/32 and h = z - z0 exact. The corrections are below a fifth of
// the node values, so their float64 rounding costs a fraction of an ulp.
// Table rows: Phi(z0) hi, lo, phi(z0) hi, lo; from mpmath at 240 bits:
//   for k in range(73): z0 = mpf(-5) + mpf(k)/16; v = ncdf(z0) (then npdf(z0));
//   hi = float(v); lo = float(v - hi)
constexpr double kGeluTableLo = -5.0;
constexpr double kGeluTableHi = -0.5;
constexpr double kGeluTable[73][4] = {
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
};

// a + b = s + err exactly (Knuth's two-sum).
inline double two_sum(double a, double b, double& err) {
    const double s = a + b;
    const double bb = s - a;
    err = (a - (s - bb)) + (b - bb);
    return s;
}

void gelu_tabled(double z, Ext* a, Ext* d) {
    const int k = static_cast<int>(std::nearbyint((z - kGeluTableLo) * 16.0));
    const double* row = kGeluTable[std::clamp(k, 0, 72)];
    const double z0 = kGeluTableLo + std::clamp(k, 0, 72) / 16.0;
    const double h = z - z0;  // exact: z0 is a multiple of 1/16, |h| <= 1/32
    // sum_{n=1}^{14} c_n h^n, c_n = (-1)^{n-1} He_{n-1}(z0) / n!, by Horner
    constexpr int kTerms = 14;
    double c[kTerms + 1];
    double he_prev = 1.0, he = z0;  // He_0, He_1
    c[1] = 1.0;
    double fact = 1.0;
    for (int n = 2; n <= kTerms; ++n) {
        fact *= n;
        c[n] = ((n % 2 == 0) ? -he : he) / fact;  // He_{n-1}
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
        // gelu' = Phi + z phi, summed in double-double and rounded once
        const double q = z * pdf_hi;
        const double q_lo = std::fma(z, pdf_hi, -q) + z * pdf_lo;
        double se = 0.0;
        const double s = two_sum(cdf_hi, q, se);
        *d = from_double(s + (se + cdf_lo + q_lo));
    }
}

// Above this z, e^{-z} < 2^-70: softplus(z) = silu(z) = z, their derivatives
// and sigmoid(z) are 1 to the last bit (z e^{-z} < 2^-64 too). Taking these
// forms there avoids e^{-z}, which leaves the extended range for z > 2^60 ln 2
// although the results do not.
constexpr double kSaturated = 50.0;

void activate_double_range(Activation act, Ext zx, double z, Ext* a, Ext* d) {
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
            sigmoid_from_t(z >= 0, exp_ext(-std::fabs(z)), a, d);
            return;
        case Activation::tanh: {
            set(a, from_double(std::tanh(z)));
            if (d) {
                const Ext t = exp_ext(-2.0 * std::fabs(z));  // 1 - tanh^2 = 4t/(1+t)^2
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
                if (d) *d = mul(exp_ext(z), from_double(kEluAlpha));
            }
            return;
        case Activation::selu:
            if (z > 0) {
                set(a, mul(zx, from_double(kSeluLambda)));
                set(d, from_double(kSeluLambda));
            } else {
                set(a, from_double(kSeluLambda * kSeluAlpha * std::expm1(z)));
                if (d) *d = mul(exp_ext(z), from_double(kSeluLambda * kSeluAlpha));
            }
            return;
        case Activation::softplus:
            if (z > 0) {
                set(a, from_double(z + std::log1p(std::exp(-z))));
                if (d) sigmoid_from_t(true, exp_ext(-z), d, nullptr);  // softplus' = sigmoid
            } else {
                const Ext t = exp_ext(z);
                set(a, log1p_ext(t));
                if (d) sigmoid_from_t(false, t, d, nullptr);
            }
            return;
        case Activation::gelu: {
            if (z >= kGeluTableLo && z <= kGeluTableHi) {
                gelu_tabled(z, a, d);
            } else if (z >= -5.0) {
                const double cdf = 0.5 * std::erfc(-z * kInvSqrt2);
                set(a, from_double(z * cdf));
                set(d, from_double(cdf + z * kInvSqrt2Pi * std::exp(-0.5 * z * z)));
            } else {
                // Phi(z) = phi(z) R with R = sqrt(pi/2) erfcx(-z/sqrt2) (Mills ratio):
                // a = z phi R, a' = phi (R + z); phi in extended range.
                const Ext phi = mul(gauss_ext(z), from_double(kInvSqrt2Pi));
                const double r = kSqrtPiOver2 * erfcx_large(-z * kInvSqrt2);
                set(a, mul(phi, from_double(z * r)));
                set(d, mul(phi, from_double(r + z)));
            }
            return;
        }
        case Activation::silu: {
            const Ext t = exp_ext(-std::fabs(z));
            Ext s;  // sigmoid(z)
            sigmoid_from_t(z >= 0, t, &s, nullptr);
            set(a, mul(s, from_double(z)));
            if (d) {
                // silu' = s (1 + z (1 - s)), with 1 - s = sigmoid(-z) from the same t.
                Ext sm;
                sigmoid_from_t(z < 0, t, &sm, nullptr);
                *d = mul(s, from_double(1.0 + z * to_double(sm)));
            }
            return;
        }
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
    if (z.e > kHugeExp) {
        // |z| > 2^1000: the saturated side is exact; the other side's value or
        // derivative is e^{-|z|}, beyond the extended range.
        switch (act) {
            case Activation::sigmoid:
                if (!pos) derivative_out_of_range(act, z);
                set(a, kExtOne);
                break;
            case Activation::tanh:
                set(a, from_double(pos ? 1.0 : -1.0));
                break;
            case Activation::elu:
                set(a, pos ? z : from_double(-kEluAlpha));
                if (pos) set(d, kExtOne);
                break;
            case Activation::selu:
                set(a, pos ? mul(z, from_double(kSeluLambda))
                           : from_double(-kSeluLambda * kSeluAlpha));
                if (pos) set(d, from_double(kSeluLambda));
                break;
            case Activation::softplus:
            case Activation::gelu:
            case Activation::silu:
                if (!pos) derivative_out_of_range(act, z);
                set(a, z);
                set(d, kExtOne);
                return;
            default:
                break;
        }
        if (d && (!pos || act == Activation::sigmoid || act == Activation::tanh))
            derivative_out_of_range(act, z);
        return;
    }
    activate_double_range(act, z, to_double(z), a, d);
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

// sigmoid: 2^-900 <= |z| < 512, where e^{-|z|} is one libm call and a normal double.
inline bool fast_sigmoid(double zm, exp_t ze, Ext* a, Ext* d) {
    if (ze < kTinyExp || ze > 9) return false;
    const double z = zm * pow2(static_cast<int>(ze));
    const double t = std::exp(-std::fabs(z)), onep = 1.0 + t;
    *a = from_double(z >= 0 ? 1.0 / onep : t / onep);
    if (d) *d = from_double(t / (onep * onep));
    return true;
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
                return activate_loop<fast_sigmoid>(act, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
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
    parallel_chunks(n, kGrain, body);
}


}  // namespace loggrad
