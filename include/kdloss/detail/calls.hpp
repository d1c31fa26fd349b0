// kdloss internals: the call operators every loss offers, written once (CRTP).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "../types.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace detail {

/// The five calls of a loss of (student, second) — second is the teacher logits, or the labels —
/// forwarding to `Derived::run(student, second, grad*, alpha, beta, per_row*, weights, per_row_call)`.
template <class Derived, class T>
class LossCalls {
 public:
  /// Value only: \f$L\f$ reduced as `options().reduction` says. Never runs a gradient pass.
  /// \param weights optional N row weights (\f$w_i = 0\f$ masks row i)
  template <class S, class U>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& second,
               const Weights<T>& weights = {}) const {
    return self().run(student, second, nullptr, T(1), T(0), nullptr, weights, false);
  }

  /// Value and gradient: returns \f$L\f$ and overwrites `grad` with \f$\partial L/\partial s\f$.
  template <class S, class U>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& second,
               GradRef<T> grad, const Weights<T>& weights = {}) const {
    return self().run(student, second, &grad, T(1), T(0), nullptr, weights, false);
  }

  /// BLAS-style accumulate form: `grad = alpha * dL/ds + beta * grad`, returns \f$\alpha L\f$.
  /// With beta = 0 the old contents are never read (they may be uninitialised). Builds
  /// \f$a\,CE + b\,KD\f$ in one buffer: `ce.accumulate(S, y, G, a, 0) + kd.accumulate(S, T, G, b, 1)`.
  template <class S, class U>
  T accumulate(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& second,
               GradRef<T> grad, T alpha, T beta, const Weights<T>& weights = {}) const {
    return self().run(student, second, &grad, alpha, beta, nullptr, weights, false);
  }

  /// Per-row values: `out[i]` = row i's contribution to the reduced loss (\f$w_i L_i\f$, divided by
  /// the BatchMean denominator and times \f$\tau^2\f$ as the options say); returns their sum.
  /// The only call that accepts `Reduction::None`.
  template <class S, class U>
  T per_row(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& second,
            RowValuesRef<T> out, const Weights<T>& weights = {}) const {
    return self().run(student, second, nullptr, T(1), T(0), &out, weights, true);
  }

  /// Per-row values and the gradient of their sum.
  template <class S, class U>
  T per_row(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& second,
            RowValuesRef<T> out, GradRef<T> grad, const Weights<T>& weights = {}) const {
    return self().run(student, second, &grad, T(1), T(0), &out, weights, true);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

}  // namespace detail
KDLOSS_END_NAMESPACE
