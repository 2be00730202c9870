// How the passes share their work among threads (see schedule.hpp).
#include "schedule.hpp"

#include <algorithm>

namespace loggrad {

thread_local PassFlush* tl_pass = nullptr;

std::size_t row_blocks(const Architecture& net, std::size_t batch) {
    if (batch < 2 * kBlockRows || net.max_width() > kBlockMaxWidth) return 1;
    return (batch + kBlockRows - 1) / kBlockRows;
}

void rethrow_first(const std::vector<Failure>& failures, bool forward) {
    const Failure* first = nullptr;
    for (const Failure& f : failures)
        if (f.error && (!first || (forward ? f.layer < first->layer : f.layer > first->layer))) first = &f;
    if (first) std::rethrow_exception(first->error);
}

std::size_t forward_blocks(const Architecture& net, const double* params, std::size_t l0, std::size_t l1,
                           std::size_t batch, bool check) {
    const std::size_t nb = row_blocks(net, batch);
    if (check && nb > 1)
        for (std::size_t l = l0; l < l1; ++l) net.check_layer_params(params, l);
    return nb;
}

LayerSizes layer_sizes(const Architecture& net, std::size_t l0, std::size_t l1, std::size_t batch) {
    std::size_t most = 0;
    for (std::size_t l = l0; l < l1; ++l) most = std::max(most, batch * net.width(l) * net.width(l + 1));
    return most < kLayerShareWork ? LayerSizes::tiny : most < kLayerTaskWork ? LayerSizes::small : LayerSizes::large;
}

}  // namespace loggrad
