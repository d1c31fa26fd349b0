// kdloss: FDivergence<Generator>, the engine of every divergence between two logit matrices.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <type_traits>

#include "detail/row_loop.hpp"
#include "kernels/divergence_row.hpp"
#include "types.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace detail {
template <class Gen, class = void>
struct gen_name {
  static constexpr const char* value = "kdloss::FDivergence";
};
template <class Gen>
struct gen_name<Gen, std::void_t<decltype(Gen::name)>> {
  static constexpr const char* value = Gen::name;
};
}  // namespace detail

/// The f-divergence \f$D_f(p\|q) = \sum_v q_v f(p_v/q_v)\f$ between the teacher
/// \f$p = \mathrm{softmax}(t/\tau)\f$ and the student \f$q = \mathrm{softmax}(s/\tau)\f$, row by row,
/// with its analytic gradient with respect to the student logits
/// \f[ \frac{\partial L_i}{\partial s_{ij}} = \frac{1}{\tau}\, q_j\Big(g_j - \sum_v q_v g_v\Big),
///     \qquad g = f(r) - r f'(r),\ r = p/q, \f]
/// then weighted and reduced as `Options` says.
///
/// Every divergence of kdloss between two logit matrices is this engine with a generator
/// (`kdloss::generators`): one fused row kernel reads each logit at most twice from memory (pass 1:
/// online max and sum-exp of both rows; pass 2: value and gradient together).
///
/// \tparam Generator the divergence (see `kdloss/generators/`); a user generator needs only
///         `term(e)` (\f$q f(p/q)\f$ per entry) and `h(e)` (\f$q g\f$ per entry) over the entry view
///         `kernels::Elem` (log-probabilities `a`, `b`, probabilities `p`, `q`, log-ratio `u`).
/// \tparam T     float or double (accumulation is in double either way)
/// \tparam Arch  instruction set (default: the best the compiler flags enable; `simd::scalar`
///               forces the portable path)
///
/// Inputs are row-major N x V matrices with direct access (RowMatrix, a Map over any buffer, a
/// row-major block such as `teacher.leftCols(V)`); anything else is a compile error rather than a
/// silent copy. Calls never allocate. The functor is immutable during a call and thread-safe.
/// On an exception the gradient buffer's contents are unspecified.
template <class Generator, class T, class Arch = simd::best_arch>
class FDivergence {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  using generator_type = Generator;
  using arch_type = Arch;

  /// \param opt options (validated here: throws std::invalid_argument)
  /// \param gen the generator and its parameters
  explicit FDivergence(const Options<T>& opt = {}, const Generator& gen = {})
      : m_opt(opt), m_gen(gen) {
    internal::check_options(m_opt, name());
  }

  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return detail::gen_name<Generator>::value; }
  /// Current options.
  const Options<T>& options() const noexcept { return m_opt; }
  /// Replaces the options (validated: throws std::invalid_argument).
  void set_options(const Options<T>& opt) {
    internal::check_options(opt, name());
    m_opt = opt;
  }
  /// The generator.
  const Generator& generator() const noexcept { return m_gen; }

  /// Value only: \f$L\f$ reduced as `options().reduction` says. Never runs a gradient pass.
  /// \param student N x V student logits s
  /// \param teacher N x V teacher logits t
  /// \param weights optional N row weights (\f$w_i = 0\f$ masks row i)
  template <class S, class U>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
               const Weights<T>& weights = {}) const {
    return run(student, teacher, nullptr, T(1), T(0), nullptr, weights, false);
  }

  /// Value and gradient: returns \f$L\f$ and overwrites `grad` with \f$\partial L/\partial s\f$.
  template <class S, class U>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
               GradRef<T> grad, const Weights<T>& weights = {}) const {
    return run(student, teacher, &grad, T(1), T(0), nullptr, weights, false);
  }

  /// BLAS-style accumulate form: `grad = alpha * dL/ds + beta * grad`, returns \f$\alpha L\f$.
  /// With beta = 0 the old contents are never read (they may be uninitialised). Lets a trainer
  /// build \f$a\,CE + b\,KD\f$ in one buffer: `ce.accumulate(S, y, G, a, 0) + kd.accumulate(S, T, G,
  /// b, 1)`.
  template <class S, class U>
  T accumulate(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
               GradRef<T> grad, T alpha, T beta, const Weights<T>& weights = {}) const {
    return run(student, teacher, &grad, alpha, beta, nullptr, weights, false);
  }

  /// Per-row values: `out[i]` = row i's contribution to the reduced loss (\f$w_i L_i\f$, divided by
  /// the BatchMean denominator and times \f$\tau^2\f$ as the options say); returns their sum.
  /// The only call that accepts `Reduction::None`.
  template <class S, class U>
  T per_row(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
            RowValuesRef<T> out, const Weights<T>& weights = {}) const {
    return run(student, teacher, nullptr, T(1), T(0), &out, weights, true);
  }

  /// Per-row values and the gradient of their sum.
  template <class S, class U>
  T per_row(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
            RowValuesRef<T> out, GradRef<T> grad, const Weights<T>& weights = {}) const {
    return run(student, teacher, &grad, T(1), T(0), &out, weights, true);
  }

 private:
  template <class S, class U>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad,
        T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const detail::MatView<T> s = detail::view<T>(student, who, "student");
    const detail::MatView<T> t = detail::view<T>(teacher, who, "teacher");
    detail::check_pair(s, t, who);
    KDLOSS_REQUIRE(per_row_call || m_opt.reduction != Reduction::None,
                   std::string(who) + ": Reduction::None gives one value per row: call per_row()");
    KDLOSS_REQUIRE(std::isfinite(static_cast<double>(alpha)) && std::isfinite(static_cast<double>(beta)),
                   std::string(who) + ": accumulate() needs finite alpha and beta");
    detail::RowOutputs<T> o;
    o.alpha = alpha;
    o.beta = beta;
    if (grad != nullptr) {
      const detail::MatView<T> g = detail::view<T>(*grad);
      detail::check_grad(g, s, &t, who);
      o.grad = grad->data();
      o.grad_stride = g.stride;
    }
    if (out != nullptr) {
      KDLOSS_REQUIRE(out->size() == s.rows, std::string(who) + ": per_row() output has " +
                                                std::to_string(out->size()) + " entries for " +
                                                std::to_string(s.rows) + " rows");
      o.per_row = out->data();
      o.per_row_stride = out->innerStride();
    }
    const T k = T(1) / m_opt.temperature;
    const Eigen::Index v = s.cols;
    return detail::run_rows(who, m_opt, s.rows, v, weights, o,
                            [&](Eigen::Index i, const kernels::GradOut<T>& g) {
                              const kernels::PlainRow<T> trow{t.row(i)};
                              return kernels::divergence_row<Arch>(m_gen, trow, s.row(i), v, k, g);
                            });
  }

  Options<T> m_opt;
  Generator m_gen;
};

KDLOSS_END_NAMESPACE
