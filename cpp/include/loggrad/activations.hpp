// loggrad/activations.hpp — activation functions and their derivatives.
//
// Each activation is defined once for the extended path (value and
// derivative from the pre-activation, in log space where that matters:
// sigmoid'(1000) is e^-1000, not s*(1-s) of a rounded s) and once for the
// float64 path (the formulas frameworks use, so it under/overflows as they do).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "loggrad/ext.hpp"

namespace loggrad {

enum class Activation : int {
    identity = 0,
    sigmoid,
    tanh,
    relu,
    leaky_relu,
    elu,
    selu,
    softplus,
    gelu,
    silu,
};

constexpr double kLeakySlope = 0.01;
constexpr double kEluAlpha = 1.0;
constexpr double kSeluLambda = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

// Canonical names, in enum order.
const std::vector<std::string>& activation_names();
std::string activation_name(Activation a);
// Accepts the canonical names and the alias "linear"; throws
// std::invalid_argument listing the valid names otherwise.
Activation activation_from_name(const std::string& name);

// Extended: a = f(z), and d = f'(z) when d != nullptr.
// A value or derivative below the extended range (e^-|z| for |z| > 8e17)
// becomes zero, counted in the thread's UnderflowSink (loggrad/ext.hpp), or
// throws underflow_error where none is installed; activate_ext_n passes the
// caller's sink on to the threads it shares the work with.
void activate_ext(Activation act, Ext z, Ext* a, Ext* d);

// float64: a = f(z), d = f'(z) when d != nullptr (framework formulas).
void activate_f64(Activation act, double z, double* a, double* d);

// Arrays: n elements; dm/de (resp. d) may be null when no derivative is needed.
void activate_ext_n(Activation act, std::size_t n, const double* zm, const exp_t* ze, double* am,
                    exp_t* ae, double* dm, exp_t* de);
void activate_f64_n(Activation act, std::size_t n, const double* z, double* a, double* d);
// a = f(z + b), d = f'(z + b) (d may be null) for rows x n values, b one per
// column: the bias add and activation of a float64 layer in one pass.
void bias_activate_f64(Activation act, std::size_t rows, std::size_t n, const double* z, const double* b,
                       double* a, double* d);

}  // namespace loggrad
