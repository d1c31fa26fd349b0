// kdloss: total variation distance.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "f_divergence.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Total variation distance between teacher and student distributions:
/// \f[ L_i = \tfrac12\sum_v |p_{iv} - q_{iv}|,\qquad \frac{\partial L_i}{\partial s_{ij}} =
///     \frac{1}{\tau}\,q_j\big(g_j - \textstyle\sum_v q_v g_v\big),\quad g = \tfrac12\,\mathrm{sign}(q - p), \f]
/// with the subgradient 0 where \f$p = q\f$; \f$0 \le L \le 1\f$ (DistiLLM, Liger's TVD, f-DISTILL).
template <class T, class Arch = simd::best_arch>
class TotalVariation : public FDivergence<generators::TotalVariation, T, Arch> {
 public:
  /// \param opt options (validated: throws std::invalid_argument)
  explicit TotalVariation(const Options<T>& opt = {})
      : FDivergence<generators::TotalVariation, T, Arch>(opt) {}
};

KDLOSS_END_NAMESPACE
