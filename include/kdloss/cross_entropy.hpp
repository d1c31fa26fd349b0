// kdloss: cross-entropy against hard labels (with label smoothing), for CE + KD mixes.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>

#include "detail/calls.hpp"
#include "detail/labeled_calls.hpp"
#include "detail/row_loop.hpp"
#include "kernels/cross_entropy_row.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Cross-entropy of the student against hard labels, with label smoothing \f$\epsilon\f$:
/// \f[ L_i = -(1-\epsilon)\log q_{i,y_i} - \frac{\epsilon}{V}\sum_v \log q_{iv},\qquad
///     \frac{\partial L_i}{\partial s_{iv}} = \frac{1}{\tau}\Big(q_{iv} - (1-\epsilon)[v = y_i]
///     - \frac{\epsilon}{V}\Big), \f]
/// \f$q = \mathrm{softmax}(s/\tau)\f$ (\f$\tau = 1\f$ by default). Rows whose label is
/// `ignore_index` (−100 by default) are masked (weight 0), on top of any row weights; a label
/// outside \f$[0, V)\f$ is a std::invalid_argument naming the row. Same options, reductions, calls
/// and guarantees as every kdloss loss (no allocation, const and thread-safe), so a trainer forms
/// \f$a\cdot CE + b\cdot KD\f$ in one gradient buffer:
/// \code
/// float loss = ce.accumulate(S, labels, dS, a, 0.0f) + kd.accumulate(S, T, dS, b, 1.0f);
/// \endcode
/// A label on a \f$-\infty\f$ logit, or smoothing over a masked vocabulary, gives
/// \f$L = +\infty\f$ (the true value) with a finite gradient.
template <class T, class Arch = simd::best_arch>
class CrossEntropy : public detail::LossCalls<CrossEntropy<T, Arch>, T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  /// \param opt             options (validated: throws std::invalid_argument)
  /// \param label_smoothing \f$\epsilon \in [0, 1]\f$
  /// \param ignore_index    label of rows to skip
  explicit CrossEntropy(const Options<T>& opt = {}, double label_smoothing = 0,
                        std::int64_t ignore_index = -100)
      : m_opt(opt), m_smoothing(label_smoothing), m_ignore(ignore_index) {
    internal::check_options(m_opt, name());
    KDLOSS_REQUIRE(label_smoothing >= 0 && label_smoothing <= 1,
                   std::string(name()) + ": label_smoothing must be in [0, 1] (got " +
                       std::to_string(label_smoothing) + ")");
  }
  static constexpr const char* name() noexcept { return "kdloss::CrossEntropy"; }
  const Options<T>& options() const noexcept { return m_opt; }
  double label_smoothing() const noexcept { return m_smoothing; }
  std::int64_t ignore_index() const noexcept { return m_ignore; }

 private:
  friend class detail::LossCalls<CrossEntropy, T>;

  template <class S, class L>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<L>& labels, GradRef<T>* grad,
        T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const detail::MatView<T> s = detail::view<T>(student, who, "student");
    KDLOSS_REQUIRE(s.rows == 0 || s.cols > 0, std::string(who) + ": the vocabulary is empty (V = 0)");
    detail::check_reduction(m_opt, per_row_call, who);
    detail::check_labels(labels, s.rows, s.cols, m_ignore, who);
    detail::check_weights(weights, s.rows, who);
    const detail::RowOutputs<T> o = detail::outputs<T>(who, grad, out, alpha, beta, s, nullptr);
    const T k = T(1) / m_opt.temperature;
    auto label = [&](Eigen::Index i) { return static_cast<std::int64_t>(labels(i)); };
    auto weight = [&](Eigen::Index i) { return label(i) == m_ignore ? T(0) : weights[i]; };
    auto row = [&](Eigen::Index i, const kernels::GradOut<T>& g) {
      if (m_smoothing > 0)
        return kernels::cross_entropy_row<Arch, true>(s.row(i), s.cols, k, label(i), m_smoothing, g);
      return kernels::cross_entropy_row<Arch, false>(s.row(i), s.cols, k, label(i), 0.0, g);
    };
    return detail::run_rows(who, m_opt, s.rows, s.cols, weight, o, row);
  }

  Options<T> m_opt;
  double m_smoothing;
  std::int64_t m_ignore;
};

KDLOSS_END_NAMESPACE
