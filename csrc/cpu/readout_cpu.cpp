// CPU kernel of qlam::readout (readout.cpp): one pass over the rows
// (b, t, h), each a J x K query block against K features, rows in parallel.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../readout.h"

namespace qlam {
namespace {

// Rows per task: a row is J * K multiply-adds (4 x 18 in the default layer).
constexpr int64_t kGrain = 512;

// The rows (b, t, h): the product of query's dimensions before (J, K).
int64_t leading_rows(const Tensor& query) { return c10::multiply_integers(query.sizes().slice(0, query.dim() - 2)); }

Tensor readout_cpu(const Tensor& query_in, const Tensor& features_in) {
  check_readout_inputs(query_in, features_in);
  const Tensor query = query_in.contiguous(), features = features_in.contiguous();
  const int64_t J = query.size(-2), K = query.size(-1);
  Tensor out = at::empty(query.sizes().slice(0, query.dim() - 1), query.options());
  const int64_t rows = leading_rows(query);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "qlam_readout_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* q = query.const_data_ptr<scalar_t>();
    const scalar_t* f = features.const_data_ptr<scalar_t>();
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* fr = f + r * K;
        for (int64_t j = 0; j < J; ++j) {
          const scalar_t* qr = q + (r * J + j) * K;
          acc_t acc = 0;
          for (int64_t k = 0; k < K; ++k) acc += acc_t(qr[k]) * acc_t(fr[k]);
          y[r * J + j] = scalar_t(acc);
        }
      }
    });
  });
  return out;
}

std::tuple<Tensor, Tensor> readout_backward_cpu(const Tensor& grad_in, const Tensor& query_in,
                                                const Tensor& features_in) {
  check_readout_backward_inputs(grad_in, query_in, features_in);
  const Tensor query = query_in.contiguous(), features = features_in.contiguous();
  const Tensor grad = grad_in.to(query.scalar_type()).contiguous();
  const int64_t J = query.size(-2), K = query.size(-1);
  Tensor grad_query = at::empty_like(query), grad_features = at::empty_like(features);
  const int64_t rows = leading_rows(query);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, query.scalar_type(), "qlam_readout_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* q = query.const_data_ptr<scalar_t>();
    const scalar_t* f = features.const_data_ptr<scalar_t>();
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    scalar_t* gq = grad_query.mutable_data_ptr<scalar_t>();
    scalar_t* gf = grad_features.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
      // K is small (3n, or 12n - 9 with pair features).
      std::vector<acc_t> acc(K);
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* fr = f + r * K;
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t j = 0; j < J; ++j) {
          const acc_t gj = g[r * J + j];
          const scalar_t* qr = q + (r * J + j) * K;
          scalar_t* gqr = gq + (r * J + j) * K;
          for (int64_t k = 0; k < K; ++k) {
            gqr[k] = scalar_t(gj * acc_t(fr[k]));
            acc[k] += gj * acc_t(qr[k]);
          }
        }
        for (int64_t k = 0; k < K; ++k) gf[r * K + k] = scalar_t(acc[k]);
      }
    });
  });
  return {grad_query, grad_features};
}

}  // namespace

TORCH_LIBRARY_IMPL(qlam, CPU, m) {
  m.impl("readout", &readout_cpu);
  m.impl("readout_backward", &readout_backward_cpu);
}

}  // namespace qlam
