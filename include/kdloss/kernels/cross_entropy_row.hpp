// kdloss kernels: the fused row of cross-entropy against a hard label (with label smoothing).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// Cross-entropy of q = softmax(s/tau) against the smoothed one-hot target
/// \f$y = (1-\epsilon)e_{\mathrm{label}} + \epsilon/V\f$:
/// \f$L = -(1-\epsilon)\log q_{\mathrm{label}} - \frac{\epsilon}{V}\sum_v\log q_v\f$,
/// \f$\partial L/\partial s = (q - y)/\tau\f$. Pass 1 is the student's row statistics (plus the
/// sum of its logits when \f$\epsilon > 0\f$); pass 2 writes the gradient.
template <class Arch, bool Smoothing, class T>
RowResult cross_entropy_row(const T* student, Index n, T k, Index label, double smoothing,
                            const GradOut<T>& out) {
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  using Plan = StatsPlan<false, true, false, false, Smoothing>;
  const PairStats<T> st = row_stats<Arch, Plan>(PlainRow<T>{nullptr}, student, n, k);
  if (RowError e = st.s.check(false); e != RowError::None) return {0, e};
  const double kd = static_cast<double>(k), lss = st.s.log_sum();
  const double log_qy =
      kd * (static_cast<double>(student[label]) - static_cast<double>(st.s.max)) - lss;
  double value = -(1 - smoothing) * log_qy;
  if constexpr (Smoothing) {
    const double nd = static_cast<double>(n);
    value -= smoothing / nd * (kd * st.student_sum - nd * lss);
  }
  value = std::max(value, 0.0);
  if (out.row == nullptr) return {value, RowError::None};

  constexpr double kLog2e = 1.4426950408889634;
  const B k2 = B::splat(static_cast<T>(kd * kLog2e)), msb = B::splat(st.s.max);
  const B lss2 = B::splat(static_cast<T>(lss * kLog2e)), gb = B::splat(out.scale);
  const B uniform = B::splat(static_cast<T>(smoothing / static_cast<double>(n)));
  auto entry = [&](Index j, auto lanes) {
    const B q = simd::exp2_nonpositive(fms(load<B>(student + j, lanes, T(0)) - msb, k2, lss2));
    return gb * (q - uniform);
  };
  T* const g = out.row;
  if (out.beta == T(0)) {
    sweep<W>(0, n, [&](Index j, auto lanes) { store(g + j, entry(j, lanes), lanes); });
  } else {
    const B bb = B::splat(out.beta);
    sweep<W>(0, n, [&](Index j, auto lanes) { store(g + j, fma(load<B>(g + j, lanes, T(0)), bb, entry(j, lanes)), lanes); });
  }
  g[label] -= static_cast<T>(static_cast<double>(out.scale) * (1 - smoothing));
  return {value, RowError::None};
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
