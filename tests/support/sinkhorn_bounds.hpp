// Error bounds of a Sinkhorn computation in type T against the double reference (sinkhorn_reference.hpp),
// shared by the Sinkhorn tests and the per-ISA path comparisons.
//
// Where the rounding comes from: the N x N part runs in double, so a T computation differs from
// the exact loss through its N x V part, the softmax rows and the cost W, computed in T.
//  - W: each entry is a sum of V terms of size |a - b| (or products), accumulated in T over at
//    most 64 (L1) or 256 (squared-L2 product) terms per lane before widening to double, from
//    probabilities that are each within a few ulp. With unit roundoff u and sum_v (a + b) = 2:
//    |dW_ij| <= kW u, kW = 128 (a worst case; typical errors are ~sqrt of it).
//  - value: L = sum Pi W moves by dL ~ sum_ij D_ij dW_ij, D = dL/dW: |dL| <= kW u sum |D|.
//  - gradient: the plan responds to W through exp(-W/eps): a perturbation dW changes Pi and D by a
//    relative ~ dW/eps, amplified by the iterations' coupling by kAmp = 8 (the tests measure the
//    actual errors at under 1% of the resulting bound, KDLOSS_TEST_REPORT=1 prints the ratios),
//    so |d(dL/ds_iv)| <= (q_iv / tau) 2 sum_j (|D_ij| + Pi_ij) (kAmp kW u / eps + 8 u).
//  - near ties: where P_s[i,v] and P_t[j,v] agree to ~16 ulp, the two computations may see the
//    sign of their difference differently (a kink of the L1 cost): that entry may differ by
//    2 |D_ij| q_iv / tau.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <limits>

#include "sinkhorn_reference.hpp"

namespace kdtest::ref {

struct SinkhornBounds {
  double value = 0;
  Mat grad;
};

/// Bounds for a computation in T: `u` = eps(T) (twice the unit roundoff: conservative), `tiny` = the
/// smallest normal T (entries below it lose relative precision), temperature tau, entropic eps,
/// `factor` = the reduction's scale (1/n for BatchMean, tau^2 ...), `l1` = the L1 cost.
inline SinkhornBounds sinkhorn_bounds(const SinkhornRef& r, double u, double tiny, double eps, double tau,
                                      double factor, bool l1) {
  constexpr double kW = 128, kAmp = 8;
  const size_t n = r.cost.size(), v = n ? r.ps[0].size() : 0;
  SinkhornBounds b;
  double sd = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) sd += std::fabs(r.dcost[i][j]);
  b.value = std::fabs(factor) * (kW * u * sd + 8 * u * std::fabs(r.loss));
  const double amp = kAmp * kW * u / eps + 8 * u;
  b.grad = zeros(static_cast<long>(n), static_cast<long>(v));
  for (size_t i = 0; i < n; ++i) {
    double row = 0;
    for (size_t j = 0; j < n; ++j) row += std::fabs(r.dcost[i][j]) + r.plan[i][j];
    for (size_t k = 0; k < v; ++k) {
      const double q = r.ps[i][k];
      double bound = 2 * row * amp;
      if (l1)
        for (size_t j = 0; j < n; ++j) {
          const double p = r.pt[j][k];
          if (std::fabs(q - p) <= 16 * u * std::max(q, p)) bound += 2 * std::fabs(r.dcost[i][j]);
        }
      b.grad[i][k] = std::fabs(factor) * ((q + tiny) / tau * bound);
    }
  }
  return b;
}

}  // namespace kdtest::ref
