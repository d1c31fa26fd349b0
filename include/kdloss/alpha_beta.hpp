// kdloss: the alpha-beta divergence of ABKD.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "f_divergence.hpp"

KDLOSS_BEGIN_NAMESPACE

/// The alpha–beta divergence (ABKD, ICML 2025), \f$\lambda = \alpha + \beta\f$:
/// \f[ L_i = -\frac{1}{\alpha\beta}\sum_v\Big(p^\alpha q^\beta - \frac{\alpha}{\lambda}p^\lambda
///     - \frac{\beta}{\lambda}q^\lambda\Big),\qquad \frac{\partial L_i}{\partial s_{ij}} =
///     \frac{1}{\tau}\big(h_j - q_j\textstyle\sum_v h_v\big),\quad h = \frac{q^\beta(q^\alpha - p^\alpha)}{\alpha}, \f]
/// with the special cases \f$\alpha = 0\f$, \f$\beta = 0\f$, \f$\alpha + \beta = 0\f$ and
/// \f$\alpha = \beta = 0\f$ taken as their continuous limits (see `generators::AlphaBeta`):
/// \f$(1, 0)\f$ is ForwardKL and \f$(0, 1)\f$ ReverseKL to rounding; \f$(\alpha, 1-\alpha)\f$ is
/// Amari's alpha-divergence. ABKD's scripts use e.g. \f$(0.2, 0.7)\f$ and \f$(0.1, 0.8)\f$.
template <class T, class Arch = simd::best_arch>
class AlphaBeta : public FDivergence<generators::AlphaBeta, T, Arch> {
 public:
  /// \param opt   options (validated: throws std::invalid_argument)
  /// \param alpha, beta the divergence's parameters (finite)
  explicit AlphaBeta(const Options<T>& opt = {}, double alpha = 0.5, double beta = 0.5)
      : FDivergence<generators::AlphaBeta, T, Arch>(opt, generators::AlphaBeta{alpha, beta}) {}
  double alpha() const noexcept { return this->generator().alpha; }
  double beta() const noexcept { return this->generator().beta; }
};

KDLOSS_END_NAMESPACE
