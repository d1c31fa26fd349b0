// kdloss: Decoupled knowledge distillation (DKD): target-class and non-target-class KL, weighted.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "detail/labeled_calls.hpp"
#include "kernels/target_split_row.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022; reference
/// megvii-research/mdistiller `DKD.py`). Per row with label y, \f$p = \mathrm{softmax}(t/T)\f$,
/// \f$q = \mathrm{softmax}(s/T)\f$, the binary distributions \f$b = (x_y, 1 - x_y)\f$ and the
/// non-target distributions \f$\hat x_i = x_i / (1 - x_y)\f$, \f$i \ne y\f$:
/// \f[ L_i = T^2\big(\alpha\,KL(b_p\|b_q) + \beta\,KL(\hat p\|\hat q)\big), \f]
/// \f[ \frac{\partial L_i}{\partial s_y} = \alpha T (q_y - p_y),\qquad
///     \frac{\partial L_i}{\partial s_j} = T\big(-\alpha (q_y - p_y)\hat q_j + \beta(\hat q_j - \hat p_j)\big),\ j \ne y. \f]
/// Defaults as the reference: \f$\alpha = 1\f$, \f$\beta = 8\f$, \f$T = 4\f$ with the \f$T^2\f$
/// factor (`default_options()`: temperature 4, `scale_by_t2`), mean over rows. The reference's
/// warm-up factor \f$\min(\mathrm{epoch}/20, 1)\f$ and its separate cross-entropy are the caller's:
/// pass the factor as `accumulate`'s alpha and add `CrossEntropy` into the same buffer.
///
/// Calls: `dkd(S, T, labels)`, `dkd(S, T, labels, dS)`, with weights, `accumulate`, `per_row` (see
/// `detail::LabeledLossCalls`). Rows whose label is `ignore_index` (−100) are masked; a label
/// outside [0, V) is a std::invalid_argument; V must be >= 2. Numerics: \f$\log(1 - x_y)\f$ is the
/// log-sum-exp of the other classes minus the row's (never the rounded difference 1 − x_y), and the
/// label is dropped from the non-target distributions exactly (the reference subtracts 1000 from its
/// logit). A row whose teacher has no finite logit besides the label is a std::domain_error (its
/// non-target distribution is undefined); the student's non-target logits may all be −inf (then
/// \f$KL(\hat p\|\hat q) = +\infty\f$ with a finite gradient).
template <class T, class Arch = simd::best_arch>
class Decoupled : public detail::LabeledLossCalls<Decoupled<T, Arch>, T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  /// The reference's options: temperature 4 with the \f$T^2\f$ factor, mean over rows.
  static Options<T> default_options() {
    Options<T> o;
    o.temperature = T(4);
    o.scale_by_t2 = true;
    return o;
  }
  /// \param opt          options (validated: throws std::invalid_argument)
  /// \param alpha, beta  weights of the target and non-target terms (finite, >= 0)
  /// \param ignore_index label of rows to skip
  explicit Decoupled(const Options<T>& opt = default_options(), double alpha = 1, double beta = 8,
                     std::int64_t ignore_index = -100)
      : m_opt(opt), m_alpha(alpha), m_beta(beta), m_ignore(ignore_index) {
    internal::check_options(m_opt, name());
    KDLOSS_REQUIRE(std::isfinite(alpha) && alpha >= 0 && std::isfinite(beta) && beta >= 0,
                   std::string(name()) + ": alpha and beta must be finite and >= 0 (got " +
                       std::to_string(alpha) + ", " + std::to_string(beta) + ")");
  }
  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::Decoupled"; }
  const Options<T>& options() const noexcept { return m_opt; }
  double alpha() const noexcept { return m_alpha; }
  double beta() const noexcept { return m_beta; }
  std::int64_t ignore_index() const noexcept { return m_ignore; }

 private:
  friend class detail::LabeledLossCalls<Decoupled, T>;
  template <class S, class U, class L>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, const Eigen::MatrixBase<L>& labels,
        GradRef<T>* grad, T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    KDLOSS_REQUIRE(student.rows() == 0 || student.cols() != 1,
                   std::string(name()) + ": needs V >= 2 (a target and at least one other class)");
    const T k = T(1) / m_opt.temperature;
    return detail::run_labeled(name(), m_opt, m_ignore, student, teacher, labels, grad, alpha, beta, out, weights,
                               per_row_call,
                               [&](Eigen::Index, const T* s, const T* t, Eigen::Index y, const kernels::GradOut<T>& g) {
                                 return kernels::decoupled_row<Arch>(t, s, student.cols(), k, y, m_alpha, m_beta, g);
                               });
  }

  Options<T> m_opt;
  double m_alpha, m_beta;
  std::int64_t m_ignore;
};

KDLOSS_END_NAMESPACE
