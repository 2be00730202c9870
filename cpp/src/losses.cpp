// Losses and their gradients, extended and float64 (see loggrad/losses.hpp).
#include "loggrad/losses.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "loggrad/activations.hpp"

namespace loggrad {

const std::vector<std::string>& loss_names() {
    static const std::vector<std::string> names{"mse", "sum", "bce", "cross_entropy"};
    return names;
}

std::string loss_name(Loss l) {
    if (l == Loss::upstream) return "grad_output";
    return loss_names().at(static_cast<std::size_t>(l));
}

Loss loss_from_name(const std::string& name) {
    const auto& names = loss_names();
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == name) return static_cast<Loss>(i);
    std::string valid;
    for (const auto& n : names) valid += (valid.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown loss '" + name + "'; valid: " + valid);
}

void check_target(const Target& t, std::size_t rows, std::size_t cols) {
    if (t.loss == Loss::sum) return;
    if (t.loss == Loss::upstream) {
        if (!t.grad_m) throw std::invalid_argument("grad_output is missing");
        for (std::size_t i = 0; i < rows * cols; ++i) {
            const double m = t.grad_m[i];
            const bool bad = !std::isfinite(m) ||
                             (t.grad_e && m != 0.0 &&
                              (std::fabs(m) < 0.5 || std::fabs(m) >= 1.0 || t.grad_e[i] < -kMaxExp ||
                               t.grad_e[i] > kMaxExp));
            if (bad)
                throw std::invalid_argument(
                    std::string("grad_output has ") +
                    (std::isfinite(m) ? "a value outside the extended range" : "a non-finite value (" + std::to_string(m) + ")") +
                    " at [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]");
        }
        return;
    }
    if (t.loss == Loss::cross_entropy) {
        if (!t.labels) throw std::invalid_argument("cross_entropy needs integer class labels");
        for (std::size_t i = 0; i < rows; ++i) {
            const std::int64_t c = t.labels[i];
            if (c < 0 || static_cast<std::size_t>(c) >= cols)
                throw std::invalid_argument("label " + std::to_string(c) + " at row " +
                                            std::to_string(i) + " is out of range for " +
                                            std::to_string(cols) + " classes (0.." +
                                            std::to_string(cols - 1) + ")");
        }
        return;
    }
    if (!t.y) throw std::invalid_argument(loss_name(t.loss) + " needs a target array y");
    for (std::size_t i = 0; i < rows * cols; ++i)
        if (!std::isfinite(t.y[i]))
            throw std::invalid_argument("target y has a non-finite value (" +
                                        std::to_string(t.y[i]) + ") at [" +
                                        std::to_string(i / cols) + ", " +
                                        std::to_string(i % cols) + "]");
}

namespace {

// softplus(x) = log(1 + e^x) for extended x.
Ext softplus_ext(Ext x) {
    Ext a;
    activate_ext(Activation::softplus, x, &a, nullptr);
    return a;
}

Ext sigmoid_ext(Ext x) {
    Ext a;
    activate_ext(Activation::sigmoid, x, &a, nullptr);
    return a;
}

// e^x for x <= 0, or an exact zero where it falls below the extended range,
// counted in the thread's UnderflowSink (without one: underflow_error).
Ext exp_nonpositive(Ext x) {
    if (x.e <= 1000 && !exp_underflows(to_double(x))) return exp_ext(x);
    UnderflowSink* sink = underflow_sink();
    if (!sink) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.6g", log10abs(x));
        throw underflow_error(false, std::string("e^x at x = -10^") + buf);
    }
    sink->values.fetch_add(1, std::memory_order_relaxed);
    return kExtZero;
}

bool ext_less(Ext a, Ext b) {  // a < b for extended values
    const int sa = sign(a), sb = sign(b);
    if (sa != sb) return sa < sb;
    if (sa == 0) return false;
    if (a.e != b.e) return sa > 0 ? a.e < b.e : a.e > b.e;
    return a.m < b.m;
}

}  // namespace

Ext loss_ext(const Target& t, std::size_t rows, std::size_t cols, const double* ym,
             const exp_t* ye, double* gm, exp_t* ge) {
    const std::size_t n = rows * cols;
    auto put = [&](std::size_t i, Ext g) {
        gm[i] = g.m;
        ge[i] = g.e;
    };
    Ext total = kExtZero;
    switch (t.loss) {
        case Loss::mse: {
            const Ext scale = from_double(2.0 / static_cast<double>(n));
            for (std::size_t i = 0; i < n; ++i) {
                const Ext diff = sub(Ext{ym[i], ye[i]}, from_double(t.y[i]));
                total = add(total, mul(diff, diff));
                put(i, mul(diff, scale));
            }
            return div(total, from_double(static_cast<double>(n)));
        }
        case Loss::sum:
            for (std::size_t i = 0; i < n; ++i) {
                total = add(total, Ext{ym[i], ye[i]});
                put(i, kExtOne);
            }
            return total;
        case Loss::upstream:
            for (std::size_t i = 0; i < n; ++i)
                put(i, t.grad_e ? (t.grad_m[i] == 0.0 ? kExtZero : Ext{t.grad_m[i], t.grad_e[i]})
                                : from_double(t.grad_m[i]));
            return kExtZero;
        case Loss::bce: {
            // L = y softplus(-x) + (1-y) softplus(x); dL/dx = (1-y) sigmoid(x) - y sigmoid(-x),
            // both terms exact where y is 0 or 1 (no 1 - 1 = 0 for sigmoid(1000) - 1).
            const Ext inv_n = from_double(1.0 / static_cast<double>(n));
            for (std::size_t i = 0; i < n; ++i) {
                const Ext x{ym[i], ye[i]};
                const double y = t.y[i];
                Ext l = kExtZero, g = kExtZero;
                if (y != 0.0) {
                    l = mul(softplus_ext(neg(x)), from_double(y));
                    g = neg(mul(sigmoid_ext(neg(x)), from_double(y)));
                }
                if (y != 1.0) {
                    l = add(l, mul(softplus_ext(x), from_double(1.0 - y)));
                    g = add(g, mul(sigmoid_ext(x), from_double(1.0 - y)));
                }
                total = add(total, l);
                put(i, mul(g, inv_n));
            }
            return div(total, from_double(static_cast<double>(n)));
        }
        case Loss::cross_entropy: {
            const Ext inv_rows = from_double(1.0 / static_cast<double>(rows));
            for (std::size_t r = 0; r < rows; ++r) {
                const double* m = ym + r * cols;
                const exp_t* e = ye + r * cols;
                const std::size_t c = static_cast<std::size_t>(t.labels[r]);
                Ext mx{m[0], e[0]};
                for (std::size_t j = 1; j < cols; ++j)
                    if (ext_less(mx, Ext{m[j], e[j]})) mx = Ext{m[j], e[j]};
                // u_j = e^{x_j - max} in (0, 1]; rest = sum_{j != c} u_j, z = u_c + rest.
                Ext rest = kExtZero;
                for (std::size_t j = 0; j < cols; ++j) {
                    const Ext u = exp_nonpositive(sub(Ext{m[j], e[j]}, mx));
                    put(r * cols + j, u);
                    if (j != c) rest = add(rest, u);
                }
                const Ext uc{gm[r * cols + c], ge[r * cols + c]};
                const Ext z = add(uc, rest);
                const Ext xc{m[c], e[c]};
                // loss_r = (max - x_c) + log z; when c is the arg max it is log1p(rest).
                const Ext gap = sub(mx, xc);
                const Ext lr = is_zero(gap) ? log1p_ext(rest) : add(gap, log_ext(z));
                total = add(total, lr);
                for (std::size_t j = 0; j < cols; ++j) {
                    const std::size_t i = r * cols + j;
                    // p_j - [j == c]: for j == c that is -rest / z, exact.
                    const Ext p = j == c ? neg(div(rest, z)) : div(Ext{gm[i], ge[i]}, z);
                    put(i, mul(p, inv_rows));
                }
            }
            return div(total, from_double(static_cast<double>(rows)));
        }
    }
    throw std::logic_error("loss_ext: unknown loss");
}

double loss_f64(const Target& t, std::size_t rows, std::size_t cols, const double* yhat,
                double* g) {
    const std::size_t n = rows * cols;
    const double dn = static_cast<double>(n);
    double total = 0.0;
    switch (t.loss) {
        case Loss::mse:
            for (std::size_t i = 0; i < n; ++i) {
                const double diff = yhat[i] - t.y[i];
                total += diff * diff;
                g[i] = diff * (2.0 / dn);
            }
            return total / dn;
        case Loss::sum:
            for (std::size_t i = 0; i < n; ++i) {
                total += yhat[i];
                g[i] = 1.0;
            }
            return total;
        case Loss::upstream:
            // Extended values rounded to float64 as IEEE would: 0 below its
            // range, inf above it (the exponent clamped where that changes nothing).
            for (std::size_t i = 0; i < n; ++i)
                g[i] = t.grad_e ? std::ldexp(t.grad_m[i], static_cast<int>(std::clamp<exp_t>(t.grad_e[i], -4000, 4000)))
                                : t.grad_m[i];
            return 0.0;
        case Loss::bce:
            // torch's BCEWithLogits: (1-y) x + max(-x, 0) + log1p(e^{-|x|}); grad sigmoid(x) - y.
            for (std::size_t i = 0; i < n; ++i) {
                const double x = yhat[i], y = t.y[i];
                total += (1.0 - y) * x + std::fmax(-x, 0.0) + std::log1p(std::exp(-std::fabs(x)));
                g[i] = (1.0 / (1.0 + std::exp(-x)) - y) / dn;
            }
            return total / dn;
        case Loss::cross_entropy: {
            const double drows = static_cast<double>(rows);
            for (std::size_t r = 0; r < rows; ++r) {
                const double* x = yhat + r * cols;
                double mx = x[0];
                for (std::size_t j = 1; j < cols; ++j) mx = std::fmax(mx, x[j]);
                double s = 0.0;
                for (std::size_t j = 0; j < cols; ++j) s += std::exp(x[j] - mx);
                const double lse = mx + std::log(s);
                const std::size_t c = static_cast<std::size_t>(t.labels[r]);
                total += lse - x[c];
                for (std::size_t j = 0; j < cols; ++j)
                    g[r * cols + j] = (std::exp(x[j] - lse) - (j == c ? 1.0 : 0.0)) / drows;
            }
            return total / drows;
        }
    }
    throw std::logic_error("loss_f64: unknown loss");
}

}  // namespace loggrad
