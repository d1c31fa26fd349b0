// kdloss: the generalised Jensen–Shannon divergence (TRL / Liger convention).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "f_divergence.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Generalised Jensen–Shannon divergence (GKD, TRL's `generalized_jsd_loss`, Liger's JSD):
/// \f[ L_i = \beta\,KL(p_i\|m_i) + (1-\beta)\,KL(q_i\|m_i),\quad m = \beta p + (1-\beta) q,\qquad
///     \frac{\partial L_i}{\partial s_{ij}} = \frac{1-\beta}{\tau}\,q_j\Big(\log\frac{q_j}{m_j}
///     - KL(q_i\|m_i)\Big), \f]
/// \f$0 < \beta < 1\f$ (default \f$\frac12\f$: the symmetric JSD, \f$0 \le L \le \log 2\f$). The
/// endpoints are other losses (TRL special-cases them too): \f$\beta = 0\f$ is ForwardKL and
/// \f$\beta = 1\f$ ReverseKL, so they are rejected here with a message saying so. Entries that
/// underflow on both sides never produce NaN; disjoint supports give the binary entropy of β.
template <class T, class Arch = simd::best_arch>
class JensenShannon : public FDivergence<generators::JensenShannon, T, Arch> {
 public:
  /// \param opt  options (validated: throws std::invalid_argument)
  /// \param beta mixture weight of the teacher, in (0, 1)
  explicit JensenShannon(const Options<T>& opt = {}, double beta = 0.5)
      : FDivergence<generators::JensenShannon, T, Arch>(opt, generators::JensenShannon{beta}) {}
  /// The mixture weight \f$\beta\f$.
  double beta() const noexcept { return this->generator().beta; }
};

KDLOSS_END_NAMESPACE
