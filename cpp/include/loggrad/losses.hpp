// loggrad/losses.hpp — losses on the network output and their gradients.
//
// mse: mean over all elements of (yhat - y)^2 (torch's default reduction).
// sum: sum of all outputs; its gradient is 1, so backward gives the raw chain product.
// bce: binary cross-entropy on logits (torch BCEWithLogitsLoss, mean over all
//      elements), in log space: log sigmoid(-1000) = -1000, never -inf.
// cross_entropy: softmax cross-entropy on logits with integer labels (torch
//      CrossEntropyLoss, mean over the batch).
// upstream: no loss; dL/dyhat is given by the caller (the gradient flowing
//      into the network from a larger computation), and the pass carries it
//      back as it is. The loss value is 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "loggrad/ext.hpp"

namespace loggrad {

// upstream is last and not among loss_names(): it is chosen by giving the
// gradient, not by name.
enum class Loss : int { mse = 0, sum, bce, cross_entropy, upstream };

const std::vector<std::string>& loss_names();
std::string loss_name(Loss l);
Loss loss_from_name(const std::string& name);  // throws std::invalid_argument

// What the loss compares the output with: y (rows x cols) for mse and bce,
// labels (rows) for cross_entropy, nothing for sum; for upstream, dL/dyhat
// itself (rows x cols): plain float64 values in grad_m, or, with grad_e,
// extended values in normal form (mantissa and exponent planes).
struct Target {
    Loss loss = Loss::mse;
    const double* y = nullptr;
    const std::int64_t* labels = nullptr;
    const double* grad_m = nullptr;
    const exp_t* grad_e = nullptr;
};

// Validates the target (finite y, labels in range); throws std::invalid_argument.
void check_target(const Target& t, std::size_t rows, std::size_t cols);

// Extended: returns the loss and writes dL/dyhat (rows x cols) into gm/ge.
// A term below the extended range (a confident logit's e^-|x| in bce or
// cross_entropy) becomes zero, counted in the thread's UnderflowSink
// (loggrad/ext.hpp), or throws underflow_error where none is installed.
Ext loss_ext(const Target& t, std::size_t rows, std::size_t cols, const double* ym,
             const exp_t* ye, double* gm, exp_t* ge);

// float64: returns the loss and writes dL/dyhat into g.
double loss_f64(const Target& t, std::size_t rows, std::size_t cols, const double* yhat,
                double* g);

}  // namespace loggrad
