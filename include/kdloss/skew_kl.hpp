// kdloss: skew KL and skew reverse KL (DistiLLM).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "f_divergence.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Skew KL divergence (DistiLLM's SKL), forward KL against a mixture of teacher and student:
/// \f[ L_i = KL\big(p_i\,\|\,m_i\big),\quad m = \alpha p + (1-\alpha) q,\qquad
///     \frac{\partial L_i}{\partial s_{ij}} = \frac{1}{\tau}\,q_j\big(g_j - \textstyle\sum_v q_v g_v\big),
///     \quad g = -(1-\alpha)\frac{p}{m}, \f]
/// \f$0 \le \alpha < 1\f$ (default 0.1, DistiLLM's; \f$\alpha = 0\f$ is ForwardKL). The value is the
/// true divergence (DistiLLM returns its cross-entropy form; the gradient is the same).
template <class T, class Arch = simd::best_arch>
class SkewKL : public FDivergence<generators::SkewKL, T, Arch> {
 public:
  /// \param opt   options (validated: throws std::invalid_argument)
  /// \param alpha skew, in [0, 1)
  explicit SkewKL(const Options<T>& opt = {}, double alpha = 0.1)
      : FDivergence<generators::SkewKL, T, Arch>(opt, generators::SkewKL{alpha}) {}
  /// The skew \f$\alpha\f$.
  double alpha() const noexcept { return this->generator().alpha; }
};

/// Skew reverse KL divergence (DistiLLM's SRKL), reverse KL against a mixture:
/// \f[ L_i = KL\big(q_i\,\|\,m_i\big),\quad m = (1-\alpha) p + \alpha q,\qquad
///     g = \log\frac{q}{m} + 1 - \alpha\frac{q}{m}, \f]
/// gradient \f$q_j(g_j - \sum_v q_v g_v)/\tau\f$; \f$0 \le \alpha < 1\f$ (default 0.1; \f$\alpha = 0\f$
/// is ReverseKL).
template <class T, class Arch = simd::best_arch>
class SkewReverseKL : public FDivergence<generators::SkewReverseKL, T, Arch> {
 public:
  /// \param opt   options (validated: throws std::invalid_argument)
  /// \param alpha skew, in [0, 1)
  explicit SkewReverseKL(const Options<T>& opt = {}, double alpha = 0.1)
      : FDivergence<generators::SkewReverseKL, T, Arch>(opt, generators::SkewReverseKL{alpha}) {}
  /// The skew \f$\alpha\f$.
  double alpha() const noexcept { return this->generator().alpha; }
};

KDLOSS_END_NAMESPACE
