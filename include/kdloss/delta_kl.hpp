// kdloss: Delta-KD: forward KL toward the SFT teacher shifted by the students' own base behaviour.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "detail/row_loop.hpp"
#include "generators/kl.hpp"
#include "kernels/divergence_row.hpp"
#include "kernels/target_rows.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Delta-KD (Cao et al., arXiv 2509.14526): forward KL toward a target formed from three frozen
/// models on the same tokens — the SFT teacher \f$t_{sft}\f$, the pretrained student
/// \f$s_{base}\f$ and the pretrained teacher \f$t_{base}\f$:
/// \f[ \pi^* = \mathrm{softmax}\Big(\frac{t_{sft} + \alpha(s_{base} - t_{base})}{\tau}\Big)
///     \propto \pi_{t1}\Big(\frac{\pi_{s0}}{\pi_{t0}}\Big)^\alpha,\qquad
///     L_i = KL(\pi^*\|q),\qquad \frac{\partial L_i}{\partial s_j} = \frac{q_j - \pi^*_j}{\tau}. \f]
/// The target is formed inside the row kernel as the three rows are read, never stored.
/// \f$\alpha = 0\f$ is plain forward KL against \f$t_{sft}\f$; \f$\alpha = 1\f$ moves the student
/// base by the teacher's SFT log-ratio.
///
/// **\f$\alpha\f$ is required**: the paper's defaults (for \f$\alpha\f$, the SFT mixing weight and
/// \f$\tau\f$, and whether \f$\tau^2\f$ is applied) are not known to us. Combine with the SFT
/// cross-entropy as \f$\lambda\,CE + (1-\lambda)\,KD\f$ through `accumulate`.
///
/// Calls: `dkl(S, T_sft, S_base, T_base)`, `dkl(S, T_sft, S_base, T_base, dS)` (with optional row
/// weights last), `accumulate(S, T_sft, S_base, T_base, dS, a, b[, w])` and `per_row(...)`, all
/// N x V row-major. Masking of the target: see `kernels::DeltaRow`; errors about "the teacher
/// logits" refer to the combined target (e.g. \f$t_{base} = -\infty\f$ below a finite
/// \f$s_{base}\f$ makes it \f$+\infty\f$).
template <class T, class Arch = simd::best_arch>
class DeltaKL {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  /// \param opt   options (validated: std::invalid_argument)
  /// \param alpha the exponent of the base ratio (finite; no default, see above)
  DeltaKL(const Options<T>& opt, double alpha) : m_opt(opt), m_alpha(alpha) {
    internal::check_options(m_opt, name());
    KDLOSS_REQUIRE(std::isfinite(alpha), std::string(name()) + ": alpha must be finite (got " + std::to_string(alpha) + ")");
  }
  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::DeltaKL"; }
  const Options<T>& options() const noexcept { return m_opt; }
  double alpha() const noexcept { return m_alpha; }

  /// Value only.
  template <class S, class A, class B, class C>
  T operator()(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<A>& t_sft, const Eigen::MatrixBase<B>& s_base,
               const Eigen::MatrixBase<C>& t_base, const Weights<T>& w = {}) const {
    return run(s, t_sft, s_base, t_base, nullptr, T(1), T(0), nullptr, w, false);
  }
  /// Value and gradient (overwrites `grad`).
  template <class S, class A, class B, class C>
  T operator()(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<A>& t_sft, const Eigen::MatrixBase<B>& s_base,
               const Eigen::MatrixBase<C>& t_base, GradRef<T> grad, const Weights<T>& w = {}) const {
    return run(s, t_sft, s_base, t_base, &grad, T(1), T(0), nullptr, w, false);
  }
  /// `grad = alpha * dL/ds + beta * grad`, returns \f$\alpha L\f$.
  template <class S, class A, class B, class C>
  T accumulate(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<A>& t_sft, const Eigen::MatrixBase<B>& s_base,
               const Eigen::MatrixBase<C>& t_base, GradRef<T> grad, T alpha, T beta, const Weights<T>& w = {}) const {
    return run(s, t_sft, s_base, t_base, &grad, alpha, beta, nullptr, w, false);
  }
  /// Per-row contributions (accepts `Reduction::None`).
  template <class S, class A, class B, class C>
  T per_row(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<A>& t_sft, const Eigen::MatrixBase<B>& s_base,
            const Eigen::MatrixBase<C>& t_base, RowValuesRef<T> out, const Weights<T>& w = {}) const {
    return run(s, t_sft, s_base, t_base, nullptr, T(1), T(0), &out, w, true);
  }
  /// Per-row contributions and the gradient of their sum.
  template <class S, class A, class B, class C>
  T per_row(const Eigen::MatrixBase<S>& s, const Eigen::MatrixBase<A>& t_sft, const Eigen::MatrixBase<B>& s_base,
            const Eigen::MatrixBase<C>& t_base, RowValuesRef<T> out, GradRef<T> grad, const Weights<T>& w = {}) const {
    return run(s, t_sft, s_base, t_base, &grad, T(1), T(0), &out, w, true);
  }

 private:
  template <class S, class A, class B, class C>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<A>& t_sft, const Eigen::MatrixBase<B>& s_base,
        const Eigen::MatrixBase<C>& t_base, GradRef<T>* grad, T alpha, T beta, RowValuesRef<T>* out,
        const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const detail::MatView<T> s = detail::view<T>(student, who, "student");
    const detail::MatView<T> a = detail::view<T>(t_sft, who, "teacher (SFT)");
    const detail::MatView<T> sb = detail::view<T>(s_base, who, "student base");
    const detail::MatView<T> tb = detail::view<T>(t_base, who, "teacher base");
    detail::check_pair(s, a, who);
    for (const auto* m : {&sb, &tb})
      KDLOSS_REQUIRE(m->rows == s.rows && m->cols == s.cols,
                     std::string(who) + ": student is " + detail::shape(s.rows, s.cols) + " but a base matrix is " +
                         detail::shape(m->rows, m->cols));
    detail::check_reduction(m_opt, per_row_call, who);
    detail::check_weights(weights, s.rows, who);
    const detail::RowOutputs<T> o = detail::outputs(who, grad, out, alpha, beta, s, &a);
    if (grad != nullptr && s.rows > 0 && s.cols > 0) {
      const detail::MatView<T> g = detail::view<T>(*grad);
      for (const auto* m : {&sb, &tb})
        KDLOSS_REQUIRE(!detail::overlaps(g.begin(), g.end(), m->begin(), m->end()),
                       std::string(who) + ": the gradient buffer overlaps a base matrix");
    }
    const T k = T(1) / m_opt.temperature;
    const Eigen::Index v = s.cols;
    const T al = static_cast<T>(m_alpha);
    const generators::ForwardKL gen{};
    return detail::run_rows(who, m_opt, s.rows, v, [&](Eigen::Index i) { return weights[i]; }, o,
                            [&](Eigen::Index i, const kernels::GradOut<T>& g) {
                              if (al == T(0))
                                return kernels::divergence_row<Arch>(gen, kernels::PlainRow<T>{a.row(i)}, s.row(i), v, k, g);
                              return kernels::divergence_row<Arch>(
                                  gen, kernels::DeltaRow<T>{a.row(i), sb.row(i), tb.row(i), al}, s.row(i), v, k, g);
                            });
  }

  Options<T> m_opt;
  double m_alpha;
};

KDLOSS_END_NAMESPACE
