// loggrad/network.hpp — forward and backward passes of a dense network, whole
// chain in one call.
//
// Parameters live in one contiguous float64 block, layer by layer:
//   [W_0 (n_1 x n_0, row-major), b_0 (n_1), W_1 (n_2 x n_1), b_1, ...]
// following torch's Linear convention z = a W^T + b; batches are rows.
// Gradients use the same layout, as extended values (mantissa and exponent
// planes) on the extended path, float64 on the float64 path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loggrad/activations.hpp"
#include "loggrad/ext.hpp"
#include "loggrad/gemm.hpp"
#include "loggrad/losses.hpp"

namespace loggrad {

struct LayerStats;  // loggrad/stats.hpp

class Architecture {
public:
    // widths: n_0 .. n_L (L >= 1, every width >= 1); activations: L entries.
    // Throws std::invalid_argument for an empty network, a zero width or a
    // count mismatch.
    Architecture(std::vector<std::size_t> widths, std::vector<Activation> activations);
    // With residual connections: residual[l] is layer l's branch scale s, so
    // that a_{l+1} = a_l + s f(W_l a_l + b_l), or NaN for a plain layer
    // a_{l+1} = f(W_l a_l + b_l). Empty: no residual layers. Throws
    // std::invalid_argument for a residual layer that is not square
    // (n_{l+1} != n_l), an infinite scale or a count mismatch.
    Architecture(std::vector<std::size_t> widths, std::vector<Activation> activations, std::vector<double> residual);

    std::size_t depth() const { return activations_.size(); }
    std::size_t width(std::size_t i) const { return widths_[i]; }
    std::size_t n_in() const { return widths_.front(); }
    std::size_t n_out() const { return widths_.back(); }
    const std::vector<std::size_t>& widths() const { return widths_; }
    std::size_t max_width() const { return max_width_; }  // the largest of n_0 .. n_L
    Activation activation(std::size_t l) const { return activations_[l]; }
    // Whether layer l adds its input back (a residual layer), and its branch scale.
    bool residual(std::size_t l) const { return !residual_.empty() && residual_[l] == residual_[l]; }
    double residual_scale(std::size_t l) const { return residual_[l]; }
    const std::vector<double>& residual_scales() const { return residual_; }  // empty: none
    std::size_t weight_offset(std::size_t l) const { return offsets_[l]; }
    std::size_t bias_offset(std::size_t l) const { return offsets_[l] + widths_[l + 1] * widths_[l]; }
    std::size_t param_count() const { return offsets_.back(); }
    // Start of every layer's block (W_l then b_l) in the parameter layout, and
    // the total: depth + 1 entries.
    const std::vector<std::size_t>& offsets() const { return offsets_; }
    // Sum of the widths n_0..n_L: the activation storage of one sample.
    std::size_t unit_count() const;

    // Throws std::invalid_argument naming the layer and position of the first
    // non-finite parameter.
    void check_params(const double* params) const;
    // The same for layer l's weights and bias only (the passes check each layer
    // just before using it, while its parameters are in cache).
    void check_layer_params(const double* params, std::size_t l) const;

private:
    std::vector<std::size_t> widths_;
    std::vector<Activation> activations_;
    std::vector<std::size_t> offsets_;  // depth + 1 entries
    std::size_t max_width_ = 0;         // max of widths_: sizes every pass's scratch rows, asked for per pass
    std::vector<double> residual_;      // empty, or depth entries (NaN: a plain layer)
};

// Throws std::invalid_argument naming the position of the first non-finite input.
void check_inputs(const double* x, std::size_t rows, std::size_t cols);

// Extended outputs: mantissa and exponent planes of the same shape.
struct ExtOut {
    double* m = nullptr;
    exp_t* e = nullptr;
};

// No layer: an underflow in the loss (Underflow::layer).
constexpr std::size_t kNoUnderflowLayer = static_cast<std::size_t>(-1);

// What a pass flushed to zero below the exponent range (DESIGN.md section 1:
// past |log2| = 2^60 an underflow becomes zero, as IEEE float64's does at its
// own range, and an overflow throws range_error). Passing one asks for that;
// without one (null) an underflow throws range_error as an overflow does.
// count: values flushed, each once, in the pass's own order: activations,
// activation derivatives (where the pass forms them), the loss's terms and
// its e^x, weight and bias gradients, input gradients dL/da. The count and
// the first place do not depend on the thread count or on checkpointing.
struct Underflow {
    std::uint64_t count = 0;
    // Where a layer-by-layer sweep (forward up, the loss, backward down) met the
    // first: its layer (kNoUnderflowLayer for the loss) and quantity
    // ("activations", "activation derivatives", "the loss", "gradients",
    // "input gradients"); empty when count is 0.
    std::size_t layer = kNoUnderflowLayer;
    std::string quantity;
};

// Forward pass of `batch` rows of x (batch x n_in): out (batch x n_out).
// underflow: see Underflow (null: an underflow throws).
void forward_ext(const Architecture& net, const double* params, const double* x,
                 std::size_t batch, ExtOut out, Underflow* underflow = nullptr);
void forward_f64(const Architecture& net, const double* params, const double* x,
                 std::size_t batch, double* out);

// Layer gradients that a pass leaves out (see grad_offset below).
constexpr std::size_t kNoGradient = static_cast<std::size_t>(-1);

// Where a backward pass writes. out and dx may be left null.
// grad_offset, when not null, has depth entries: layer l's weight gradient
// starts at grad + grad_offset[l] and its bias gradient follows it, or the
// layer's parameter gradients are not computed at all (kNoGradient: the pass
// only carries the input gradient through it). Null: every layer, in the
// parameter layout.
struct GradExt {
    ExtOut loss;   // 1 value
    ExtOut out;    // batch x n_out: the network output
    ExtOut grad;   // parameter gradients (param_count values unless grad_offset selects fewer)
    ExtOut dx;     // batch x n_in: dL/dx
    const std::size_t* grad_offset = nullptr;
    // When not null, depth entries that the pass fills with each layer's
    // statistics (loggrad/stats.hpp); they need every layer's gradient.
    LayerStats* stats = nullptr;
    // When not null, values below the exponent range become zero and are
    // counted here (see Underflow); when null, they throw range_error.
    Underflow* underflow = nullptr;
};
struct GradF64 {
    double* loss = nullptr;
    double* out = nullptr;
    double* grad = nullptr;
    double* dx = nullptr;
    const std::size_t* grad_offset = nullptr;
    LayerStats* stats = nullptr;  // as GradExt::stats, of what this float64 pass computes
};

// Offsets for GradExt/GradF64::grad_offset that pack the gradients of the
// given layers (strictly increasing, each < depth) one after another; the
// others get kNoGradient. *total receives the number of gradient values.
// Throws std::invalid_argument for a layer out of range or out of order.
std::vector<std::size_t> gradient_offsets(const Architecture& net, const std::vector<std::size_t>& layers,
                                          std::size_t* total);

// checkpoint: 0 stores every layer's activations for the backward sweep; C > 0
// stores only every C-th layer's and recomputes the others segment by segment
// (one extra forward pass, memory ~ (depth / C + C) layers instead of depth);
// kCheckpointAuto picks C ~ sqrt(depth). Results are identical either way.
constexpr std::size_t kCheckpointAuto = static_cast<std::size_t>(-1);

void backward_ext(const Architecture& net, const double* params, const double* x,
                  std::size_t batch, const Target& target, const GradExt& res,
                  std::size_t checkpoint = 0);
void backward_f64(const Architecture& net, const double* params, const double* x,
                  std::size_t batch, const Target& target, const GradF64& res,
                  std::size_t checkpoint = 0);

// A forward pass kept for a backward pass that comes later: the stored
// activations and derivatives (or, with checkpointing, the checkpoints) and the
// output. forward_tape_* then backward_tape_* give bitwise the results of one
// backward_* call, at the cost of one pass, as an autograd framework needs
// (its forward runs before the gradient of the output is known). A backward
// pass consumes the tape (and hands its memory back); the parameters must be
// the same in both calls. One call at a time per tape.
class Tape {
public:
    Tape();
    ~Tape();
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;
    bool ready() const;         // holds a forward pass not yet used by a backward pass
    std::size_t batch() const;  // its rows
    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
    friend void forward_tape_ext(const Architecture&, const double*, const double*, std::size_t, std::size_t,
                                 Tape&, ExtOut, Underflow*);
    friend void forward_tape_f64(const Architecture&, const double*, const double*, std::size_t, std::size_t,
                                 Tape&, double*);
    friend void backward_tape_ext(const Architecture&, const double*, Tape&, const Target&, const GradExt&);
    friend void backward_tape_f64(const Architecture&, const double*, Tape&, const Target&, const GradF64&);
};

// Forward pass of batch rows of x into the tape; out (batch x n_out) may be null.
// underflow: see Underflow (null: an underflow throws); the backward pass
// counts what it flushes in its own GradExt::underflow.
void forward_tape_ext(const Architecture& net, const double* params, const double* x, std::size_t batch,
                      std::size_t checkpoint, Tape& tape, ExtOut out, Underflow* underflow = nullptr);
void forward_tape_f64(const Architecture& net, const double* params, const double* x, std::size_t batch,
                      std::size_t checkpoint, Tape& tape, double* out);
// The backward pass of the tape's forward pass. Throws std::invalid_argument
// when the tape holds no forward pass of this precision and network.
void backward_tape_ext(const Architecture& net, const double* params, Tape& tape, const Target& target,
                       const GradExt& res);
void backward_tape_f64(const Architecture& net, const double* params, Tape& tape, const Target& target,
                       const GradF64& res);

// One layer of the extended forward pass: z = in W_l^T + b_l (written to z),
// out = f(z), der = f'(z) when der.m is not null. in: batch x n_l, the others
// batch x n_{l+1}. Throws range_error (naming the layer) when a value leaves
// the extended range. With check, first throws as net.check_layer_params(params, l)
// would (see forward_layer_checks).
void forward_layer_ext(const Architecture& net, const double* params, std::size_t l, std::size_t batch,
                       ExtCMat in, ExtMat out, ExtMat der, ExtMat z, Workspace& ws, bool check = false);

// How a backward pass stores its forward pass: segments of `segment` layers
// (the last may be shorter), and per row of the batch the values the largest
// segment's store holds (its activations a_l0..a_l1 and derivatives
// f'(z_l0)..f'(z_{l1-1})). With segments > 1 the pass also keeps one
// checkpoint of max-width values per segment and row.
struct StorePlan {
    std::size_t segment = 0;
    std::size_t segments = 0;
    std::size_t units = 0;
};
StorePlan store_plan(const Architecture& net, std::size_t checkpoint);

// Bytes a backward pass allocates for stored activations and scratch.
std::size_t backward_workspace_bytes(const Architecture& net, std::size_t batch, bool extended);

}  // namespace loggrad
