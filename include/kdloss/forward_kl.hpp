// kdloss: forward KL divergence KL(p || q) between teacher and student logits.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "f_divergence.hpp"
#include "generators/kl.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Forward KL, the classic distillation loss (Hinton; TRL/Liger with beta = 0):
/// \f[ L_i = KL(p_i\|q_i) = \sum_v p_{iv}(\log p_{iv} - \log q_{iv}),\qquad
///     \frac{\partial L_i}{\partial s_{iv}} = \frac{q_{iv} - p_{iv}}{\tau}, \f]
/// \f$p = \mathrm{softmax}(t/\tau)\f$ (teacher), \f$q = \mathrm{softmax}(s/\tau)\f$ (student), then
/// weighted and reduced as `Options` says (default: mean over rows with nonzero weight).
///
/// The value is the true divergence (teacher entropy included): \f$KL(p\|p) = 0\f$ exactly.
/// A value-only call reads each logit once; value and gradient read each logit twice.
/// Masked vocabulary: \f$-\infty\f$ on both sides contributes 0; a teacher entry with mass where
/// the student logit is \f$-\infty\f$ makes the row's value \f$+\infty\f$ with a finite gradient.
/// \code
/// kdloss::ForwardKL<float> fkl({2.0f});      // temperature 2
/// float loss = fkl(S, T, dS);               // dS = dL/dS
/// \endcode
template <class T, class Arch = simd::best_arch>
class ForwardKL : public FDivergence<generators::ForwardKL, T, Arch> {
 public:
  /// \param opt options (validated: throws std::invalid_argument)
  explicit ForwardKL(const Options<T>& opt = {})
      : FDivergence<generators::ForwardKL, T, Arch>(opt) {}
};

KDLOSS_END_NAMESPACE
