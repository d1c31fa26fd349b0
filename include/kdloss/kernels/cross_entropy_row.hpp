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
/// sum of its logits when \f$\epsilon > 0\f$); pass 2 writes the gradient. When the gradient
/// overwrites its row, pass 1 leaves the student's exponentials there (`Stash::Student`) and pass 2
/// turns them into q with one multiply-add per entry (its block's `StashFactor` times the scale),
/// reading neither the logits nor taking an exponential: the gradient row's lines come into cache
/// in pass 1, while it computes, and pass 2 works on them there.
template <class Arch, bool Smoothing, class T>
RowResult cross_entropy_row(const T* student, Index n, T k, Index label, double smoothing,
                            const GradOut<T>& out) {
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  using Plan = StatsPlan<false, true, false, false, Smoothing>;
  using StashPlan = StatsPlan<false, true, false, false, Smoothing, false, Stash::Student>;
  constexpr Index kBlock = stats_block<B, StashPlan>();
  T refs[kMaxStashBlocks];
  T* const g = out.row;
  const bool stash = g != nullptr && out.beta == T(0) && n <= kMaxStashBlocks * kBlock;
  const PairStats<T> st = stash ? row_stats<Arch, StashPlan>(PlainRow<T>{nullptr}, student, n, k, ExpStash<T>{g, refs})
                                : row_stats<Arch, Plan>(PlainRow<T>{nullptr}, student, n, k);
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
  if (g == nullptr) return {value, RowError::None};

  const double uniform = smoothing / static_cast<double>(n), scale = static_cast<double>(out.scale);
  const B gb = B::splat(out.scale), ub = B::splat(static_cast<T>(uniform));
  if (stash && st.stash_complete) {
    // From the end of the row, whose blocks pass 1 left in cache last.
    const double kappa = exp2_scale(k);
    const B gu = B::splat(static_cast<T>(scale * uniform));
    stash_blocks_reverse<true>(
        n, kBlock, out.scale,
        [&](Index b) { return StashFactor<T>::of(refs[b], st.s.max, st.stash_offsets, kappa, lss); },
        [&](auto folded, Index j0, Index j1, T f1, T f2) {
          if constexpr (decltype(folded)::value) {
            // (q - eps/V) scale, the factor and the scale in one multiplier
            const B fb = B::splat(f1);
            sweep_reverse<W>(j0, j1, [&](Index j, auto lanes) { store(g + j, fms(load<B>(g + j, lanes, T(0)), fb, gu), lanes); });
          } else {
            const B f1b = B::splat(f1), f2b = B::splat(f2);
            sweep_reverse<W>(j0, j1, [&](Index j, auto lanes) {
              store(g + j, gb * (load<B>(g + j, lanes, T(0)) * f1b * f2b - ub), lanes);
            });
          }
        });
  } else {
    const B k2 = B::splat(static_cast<T>(exp2_scale(k))), msb = B::splat(st.s.max);
    const B lss2 = B::splat(static_cast<T>(lss * kLog2e));
    auto entry = [&](Index j, auto lanes) {
      const B q = simd::exp2_nonpositive(fms(load<B>(student + j, lanes, T(0)) - msb, k2, lss2));
      return gb * (q - ub);
    };
    if (out.beta == T(0)) {
      sweep<W>(0, n, [&](Index j, auto lanes) { store(g + j, entry(j, lanes), lanes); });
    } else {
      const B bb = B::splat(out.beta);
      sweep<W>(0, n, [&](Index j, auto lanes) { store(g + j, fma(load<B>(g + j, lanes, T(0)), bb, entry(j, lanes)), lanes); });
    }
  }
  g[label] -= static_cast<T>(scale * (1 - smoothing));
  return {value, RowError::None};
}

/// Cross-entropy of q = softmax(s/tau) against the soft target
/// \f$\tilde y = (1-a)\,e_{\mathrm{label}} + a\,P\f$ (PS-KD): \f$L = -\sum_v \tilde y_v \log q_v\f$,
/// \f$\partial L/\partial s = (q - \tilde y)/\tau\f$. P is a caller's probability row: a NaN,
/// infinite or negative entry, or a sum farther than 1e-3 from 1, is reported as `BadTarget`. Pass 1 is
/// the student's statistics; pass 2 reads s and P once, for the value (and the gradient).
template <class Arch, class T>
RowResult soft_target_row(const T* student, const T* target, Index n, T k, Index label, double a,
                          const GradOut<T>& out) {
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  using Plan = StatsPlan<false, true, false, false>;
  const PairStats<T> st = row_stats<Arch, Plan>(PlainRow<T>{nullptr}, student, n, k);
  if (RowError e = st.s.check(false); e != RowError::None) return {0, e};
  const double kd = static_cast<double>(k), lss = st.s.log_sum();
  const B k2 = B::splat(static_cast<T>(exp2_scale(k))), msb = B::splat(st.s.max), kb = B::splat(k);
  const B lss2 = B::splat(static_cast<T>(lss * kLog2e)), lssb = B::splat(static_cast<T>(lss));
  const B gb = B::splat(out.scale), ab = B::splat(static_cast<T>(a)), zero = B::splat(T(0));
  const B inf = B::splat(std::numeric_limits<T>::infinity());
  T* const g = out.row;
  const bool grad = g != nullptr;
  const B bb = B::splat(out.beta);
  // sum_v P_v log q_v, with 0 log 0 = 0 and P_v > 0 = q_v giving -inf; blocks of float, then double.
  BlockSum<B> cross, mass;
  bool bad = false;
  sweep<W>(0, n, [&](Index j, auto lanes) {
    const B s = load<B>(student + j, lanes, -std::numeric_limits<T>::infinity());
    const B pv = load<B>(target + j, lanes, T(0));
    bad = bad || any(~((pv >= zero) & (pv < inf)));
    const B logq = fms(s - msb, kb, lssb);
    cross.add(select(pv > zero, pv * logq, zero));
    mass.add(pv);
    if (grad) {
      const B q = simd::exp2_nonpositive(fms(s - msb, k2, lss2));
      B gv = gb * fnma(ab, pv, q);
      if (out.beta != T(0)) gv = fma(load<B>(g + j, lanes, T(0)), bb, gv);
      store(g + j, gv, lanes);
    }
  });
  // The rows are probability vectors: q - y~ is then the gradient of the value (in general it is
  // (sum y~) q - y~). A row far from summing to 1 is a caller's mistake, not rounding.
  if (bad || (a > 0 && !(std::fabs(mass.value() - 1.0) <= 1e-3))) return {0, RowError::BadTarget};
  const double log_qy = kd * (static_cast<double>(student[label]) - static_cast<double>(st.s.max)) - lss;
  double value = a > 0 ? -a * cross.value() : 0.0;
  if (a < 1) value -= (1 - a) * log_qy;
  if (grad) g[label] -= static_cast<T>(static_cast<double>(out.scale) * (1 - a));
  return {value, RowError::None};
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
