// kdloss: reverse KL divergence KL(q || p) between student and teacher logits.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "f_divergence.hpp"
#include "generators/kl.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Reverse KL, the mode-seeking distillation loss (MiniLLM; TRL/Liger with beta = 1):
/// \f[ L_i = KL(q_i\|p_i) = \sum_v q_{iv}(\log q_{iv} - \log p_{iv}),\qquad
///     \frac{\partial L_i}{\partial s_{iv}} = \frac{q_{iv}(\log q_{iv} - \log p_{iv} - L_i)}{\tau}, \f]
/// \f$p = \mathrm{softmax}(t/\tau)\f$ (teacher), \f$q = \mathrm{softmax}(s/\tau)\f$ (student), then
/// weighted and reduced as `Options` says.
///
/// A value-only call reads each logit once; value and gradient read each logit twice.
/// Masked vocabulary: \f$-\infty\f$ on both sides contributes 0; a student entry with mass where
/// the teacher logit is \f$-\infty\f$ makes the row's value \f$+\infty\f$; the gradient is then
/// unbounded, so a gradient call throws std::domain_error naming the row (mask the entry in the
/// student too, or weight the row 0).
template <class T, class Arch = simd::best_arch>
class ReverseKL : public FDivergence<generators::ReverseKL, T, Arch> {
 public:
  /// \param opt options (validated: throws std::invalid_argument)
  explicit ReverseKL(const Options<T>& opt = {})
      : FDivergence<generators::ReverseKL, T, Arch>(opt) {}
};

KDLOSS_END_NAMESPACE
