// kdloss: Normalized knowledge distillation (NKD): a teacher-weighted target term and a normalised
// non-target term.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "detail/labeled_calls.hpp"
#include "kernels/target_split_row.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Normalized KD (Yang et al., "From Knowledge Distillation to Self-Knowledge Distillation",
/// ICCV 2023; reference yzd-v/cls_KD `nkd.py` after its fix 9466b3f). Per row with label y,
/// \f$p, q\f$ the softmax of teacher and student at temperature 1, and \f$\hat p^\lambda,
/// \hat q^\lambda\f$ the softmax at temperature \f$\lambda\f$ over the classes other than y:
/// \f[ L_i = -p_y \log q_y - \gamma\lambda^2 \sum_{j \ne y} \hat p^\lambda_j \log \hat q^\lambda_j, \f]
/// \f[ \frac{\partial L_i}{\partial s_y} = p_y (q_y - 1),\qquad
///     \frac{\partial L_i}{\partial s_j} = p_y q_j + \gamma\lambda(\hat q^\lambda_j - \hat p^\lambda_j),\ j \ne y, \f]
/// \f$p_y\f$ detached. \f$\lambda\f$ is `Options::temperature` (default 1) and \f$\gamma\f$ = 1.5
/// (the reference's ImageNet settings; CIFAR-100 uses \f$\lambda\f$ = 3, \f$\gamma\f$ = 3.5). The
/// label is excluded from the non-target term (the bug of the reference's first versions, whose
/// mask kept it, is not reproduced). The value is in cross-entropy form, as the reference's
/// (the teacher's non-target entropy is not subtracted). The reference adds a plain cross-entropy
/// of weight 1: add `CrossEntropy` into the same gradient buffer with `accumulate`.
/// `scale_by_t2` is rejected (\f$\lambda^2\f$ is already part of the non-target term only).
///
/// Calls as `Decoupled` (labels after the teacher; ignore_index rows masked; bad labels are
/// std::invalid_argument; V >= 2; a teacher with no finite logit besides the label is a
/// std::domain_error).
template <class T, class Arch = simd::best_arch>
class NormalizedKD : public detail::LabeledLossCalls<NormalizedKD<T, Arch>, T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  /// \param opt          options; `temperature` is \f$\lambda\f$ (validated: std::invalid_argument)
  /// \param gamma        weight of the non-target term (finite, >= 0)
  /// \param ignore_index label of rows to skip
  explicit NormalizedKD(const Options<T>& opt = {}, double gamma = 1.5, std::int64_t ignore_index = -100)
      : m_opt(opt), m_gamma(gamma), m_ignore(ignore_index) {
    internal::check_options(m_opt, name());
    KDLOSS_REQUIRE(!m_opt.scale_by_t2, std::string(name()) +
                                           ": scale_by_t2 is not available: the formula already scales its "
                                           "non-target term by lambda^2 (and only that term)");
    KDLOSS_REQUIRE(std::isfinite(gamma) && gamma >= 0,
                   std::string(name()) + ": gamma must be finite and >= 0 (got " + std::to_string(gamma) + ")");
  }
  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::NormalizedKD"; }
  const Options<T>& options() const noexcept { return m_opt; }
  double gamma() const noexcept { return m_gamma; }
  std::int64_t ignore_index() const noexcept { return m_ignore; }

 private:
  friend class detail::LabeledLossCalls<NormalizedKD, T>;
  template <class S, class U, class L>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, const Eigen::MatrixBase<L>& labels,
        GradRef<T>* grad, T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    KDLOSS_REQUIRE(student.rows() == 0 || student.cols() != 1,
                   std::string(name()) + ": needs V >= 2 (a target and at least one other class)");
    const T k = T(1) / m_opt.temperature;
    return detail::run_labeled(name(), m_opt, m_ignore, student, teacher, labels, grad, alpha, beta, out, weights,
                               per_row_call,
                               [&](Eigen::Index, const T* s, const T* t, Eigen::Index y, const kernels::GradOut<T>& g) {
                                 return kernels::normalized_kd_row<Arch>(t, s, student.cols(), k, y, m_gamma, g);
                               });
  }

  Options<T> m_opt;
  double m_gamma;
  std::int64_t m_ignore;
};

KDLOSS_END_NAMESPACE
