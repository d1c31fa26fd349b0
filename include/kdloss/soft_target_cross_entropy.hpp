// kdloss: cross-entropy against a soft target built from the label and a caller's probability
// matrix (PS-KD, progressive self-knowledge distillation).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "detail/labeled_calls.hpp"
#include "kernels/cross_entropy_row.hpp"

KDLOSS_BEGIN_NAMESPACE

/// PS-KD's \f$\alpha_t = \alpha_T\,(e + 1)/E\f$ at epoch e (0-based) of E (Kim et al., ICCV 2021;
/// reference lgcnsai/PS-KD-Pytorch, \f$\alpha_T = 0.8\f$). Throws std::invalid_argument unless
/// 0 <= epoch < epochs and \f$\alpha_T \in [0, 1]\f$.
inline double pskd_alpha(long epoch, long epochs, double alpha_T = 0.8) {
  KDLOSS_REQUIRE(epochs > 0 && epoch >= 0 && epoch < epochs,
                 "kdloss::pskd_alpha: needs 0 <= epoch < epochs (got epoch " + std::to_string(epoch) + " of " +
                     std::to_string(epochs) + ")");
  KDLOSS_REQUIRE(alpha_T >= 0 && alpha_T <= 1, "kdloss::pskd_alpha: alpha_T must be in [0, 1]");
  return alpha_T * static_cast<double>(epoch + 1) / static_cast<double>(epochs);
}

/// Cross-entropy against the soft target of progressive self-knowledge distillation (PS-KD):
/// \f[ \tilde y_i = (1 - \alpha)\,e_{y_i} + \alpha\,P_i,\qquad L_i = -\sum_v \tilde y_{iv}\log q_{iv},\qquad
///     \frac{\partial L_i}{\partial s_{iv}} = \frac{q_{iv} - \tilde y_{iv}}{\tau}, \f]
/// \f$q = \mathrm{softmax}(s/\tau)\f$ (\f$\tau = 1\f$ in PS-KD), \f$P\f$ a caller-owned N x V
/// probability matrix — in PS-KD, each sample's softmax from the previous epoch (initialised to the
/// one-hot labels), which the trainer stores and passes in. \f$\alpha\f$ is the functor's
/// (`set_alpha`, e.g. `pskd_alpha(epoch, epochs)` each epoch). PS-KD replaces the plain
/// cross-entropy with this loss (mean over rows). P's rows must be probability vectors: an entry
/// that is NaN, infinite or negative, or a row whose sum is farther than 1e-3 from 1, is a
/// std::invalid_argument naming the row (checked on the fly, when \f$\alpha > 0\f$). Rows are
/// used as given, not renormalised; the gradient is PS-KD's \f$q - \tilde y\f$, exactly the
/// gradient of the value when a row sums to 1 (a float softmax row does to within rounding).
///
/// Calls: `ce(S, labels, P)`, `ce(S, labels, P, dS)`, with row weights last, `accumulate(S, labels,
/// P, dS, a, b[, w])`, `per_row(S, labels, P, out[, dS][, w])`. Rows whose label is `ignore_index`
/// are masked; a bad label is a std::invalid_argument. Value in cross-entropy form (+inf when the
/// target has mass where the student logit is −inf; the gradient stays finite).
template <class T, class Arch = simd::best_arch>
class SoftTargetCrossEntropy {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  /// \param opt          options (validated: std::invalid_argument)
  /// \param alpha        weight \f$\alpha \in [0, 1]\f$ of P in the target
  /// \param ignore_index label of rows to skip
  explicit SoftTargetCrossEntropy(const Options<T>& opt = {}, double alpha = 0, std::int64_t ignore_index = -100)
      : m_opt(opt), m_ignore(ignore_index) {
    internal::check_options(m_opt, name());
    set_alpha(alpha);
  }
  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::SoftTargetCrossEntropy"; }
  const Options<T>& options() const noexcept { return m_opt; }
  double alpha() const noexcept { return m_alpha; }
  /// Sets \f$\alpha \in [0, 1]\f$ (std::invalid_argument otherwise).
  void set_alpha(double alpha) {
    KDLOSS_REQUIRE(alpha >= 0 && alpha <= 1,
                   std::string(name()) + ": alpha must be in [0, 1] (got " + std::to_string(alpha) + ")");
    m_alpha = alpha;
  }
  std::int64_t ignore_index() const noexcept { return m_ignore; }

  /// Value only.
  template <class S, class L, class P>
  T operator()(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<L>& labels, const Eigen::MatrixBase<P>& target,
               const Weights<T>& w = {}) const {
    return run(s, labels, target, nullptr, T(1), T(0), nullptr, w, false);
  }
  /// Value and gradient (overwrites `grad`).
  template <class S, class L, class P>
  T operator()(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<L>& labels, const Eigen::MatrixBase<P>& target,
               GradRef<T> grad, const Weights<T>& w = {}) const {
    return run(s, labels, target, &grad, T(1), T(0), nullptr, w, false);
  }
  /// `grad = alpha * dL/ds + beta * grad`, returns (call) alpha times L.
  template <class S, class L, class P>
  T accumulate(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<L>& labels, const Eigen::MatrixBase<P>& target,
               GradRef<T> grad, T alpha, T beta, const Weights<T>& w = {}) const {
    return run(s, labels, target, &grad, alpha, beta, nullptr, w, false);
  }
  /// Per-row contributions (accepts `Reduction::None`).
  template <class S, class L, class P>
  T per_row(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<L>& labels, const Eigen::MatrixBase<P>& target,
            RowValuesRef<T> out, const Weights<T>& w = {}) const {
    return run(s, labels, target, nullptr, T(1), T(0), &out, w, true);
  }
  /// Per-row contributions and the gradient of their sum.
  template <class S, class L, class P>
  T per_row(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<L>& labels, const Eigen::MatrixBase<P>& target,
            RowValuesRef<T> out, GradRef<T> grad, const Weights<T>& w = {}) const {
    return run(s, labels, target, &grad, T(1), T(0), &out, w, true);
  }

 private:
  template <class S, class L, class P>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<L>& labels, const Eigen::MatrixBase<P>& target,
        GradRef<T>* grad, T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const detail::MatView<T> s = detail::view<T>(student, who, "student");
    const detail::MatView<T> p = detail::view<T>(target, who, "target");
    KDLOSS_REQUIRE(p.rows == s.rows && p.cols == s.cols,
                   std::string(who) + ": student is " + detail::shape(s.rows, s.cols) + " but the target is " +
                       detail::shape(p.rows, p.cols));
    KDLOSS_REQUIRE(s.rows == 0 || s.cols > 0, std::string(who) + ": the vocabulary is empty (V = 0)");
    detail::check_reduction(m_opt, per_row_call, who);
    detail::check_labels(labels, s.rows, s.cols, m_ignore, who);
    detail::check_weights(weights, s.rows, who);
    const detail::RowOutputs<T> o = detail::outputs(who, grad, out, alpha, beta, s, &p);
    const T k = T(1) / m_opt.temperature;
    auto label = [&](Eigen::Index i) { return static_cast<std::int64_t>(labels(i)); };
    auto weight = [&](Eigen::Index i) { return label(i) == m_ignore ? T(0) : weights[i]; };
    return detail::run_rows(who, m_opt, s.rows, s.cols, weight, o, [&](Eigen::Index i, const kernels::GradOut<T>& g) {
      return kernels::soft_target_row<Arch>(s.row(i), p.row(i), s.cols, k, static_cast<Eigen::Index>(label(i)), m_alpha, g);
    });
  }

  Options<T> m_opt;
  double m_alpha = 0;
  std::int64_t m_ignore;
};

KDLOSS_END_NAMESPACE
