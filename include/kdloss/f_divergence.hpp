// kdloss: FDivergence<Generator>, the engine of every divergence between two logit matrices.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "detail/calls.hpp"
#include "detail/row_loop.hpp"
#include "generators/alpha_beta.hpp"
#include "generators/family.hpp"
#include "generators/kl.hpp"
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
template <class Gen, class = void>
struct gen_has_check : std::false_type {};
template <class Gen>
struct gen_has_check<Gen, std::void_t<decltype(std::declval<const Gen&>().check(""))>> : std::true_type {};
}  // namespace detail

/// The f-divergence \f$D_f(p\|q) = \sum_v q_v f(p_v/q_v)\f$ between the teacher
/// \f$p = \mathrm{softmax}(t/\tau)\f$ and the student \f$q = \mathrm{softmax}(s/\tau)\f$, row by row,
/// with its analytic gradient with respect to the student logits
/// \f[ \frac{\partial L_i}{\partial s_{ij}} = \frac{1}{\tau}\, q_j\Big(g_j - \sum_v q_v g_v\Big),
///     \qquad g = f(r) - r f'(r),\ r = p/q, \f]
/// then weighted and reduced as `Options` says.
///
/// Calls (from `detail::LossCalls`): `f(S, T)` value only, `f(S, T, dS)` value and gradient,
/// `f(S, T, dS, w)` / `f(S, T, w)` with row weights, `f.accumulate(S, T, dS, alpha, beta, w)`,
/// `f.per_row(S, T, out[, dS][, w])`.
///
/// Every divergence of kdloss between two logit matrices is this engine with a generator
/// (`kdloss::generators`): one fused row kernel reads each logit at most twice from memory (pass 1:
/// online max and sum-exp of both rows; pass 2: value and gradient together).
///
/// \tparam Generator the divergence (see `kdloss/generators/`); a user generator needs only
///         `term(e)` (\f$q f(p/q)\f$ per entry) and `h(e)` (\f$q g\f$ per entry) over the entry view
///         `kernels::Elem` (log-probabilities `a`, `b`, probabilities `p`, `q`, log-ratio `u`),
///         written with the `kdloss::simd` functions (exp, log, expm1, sqrt, min, max, select...).
///         For example the squared Hellinger distance:
/// \code
/// struct Hellinger {   // f(r) = (sqrt(r) - 1)^2 / 2,  g = f(r) - r f'(r) = (1 - sqrt(r)) / 2
///   template <class B> B term(const kdloss::kernels::Elem<B>& e) const {
///     const B d = sqrt(e.p) - sqrt(e.q);
///     return B::splat(0.5f) * d * d;
///   }
///   template <class B> B h(const kdloss::kernels::Elem<B>& e) const {   // q g
///     return B::splat(0.5f) * (e.q - sqrt(e.p) * sqrt(e.q));
///   }
/// };
/// kdloss::FDivergence<Hellinger, float> hellinger;   // value, gradient, options as every loss
/// \endcode
///         A generator may also check its parameters (`void check(const char* who) const`,
///         throwing std::invalid_argument), name itself (`static constexpr const char* name`) and
///         precompute per-call constants (`template <class T> Bound bind() const`, the generator
///         the kernel then runs with; see `generators::JensenShannon`).
/// \tparam T     float or double (accumulation is in double either way)
/// \tparam Arch  instruction set (default: the best the compiler flags enable; `simd::scalar`
///               forces the portable path)
///
/// Inputs are row-major N x V matrices with direct access (RowMatrix, a Map over any buffer, a
/// row-major block such as `teacher.leftCols(V)`); anything else is a compile error rather than a
/// silent copy. Calls never allocate. The functor is immutable during a call and thread-safe.
/// On an exception the gradient buffer's contents are unspecified.
template <class Generator, class T, class Arch = simd::best_arch>
class FDivergence : public detail::LossCalls<FDivergence<Generator, T, Arch>, T> {
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
    if constexpr (detail::gen_has_check<Generator>::value) m_gen.check(name());
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

 private:
  friend class detail::LossCalls<FDivergence, T>;

  template <class S, class U>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad,
        T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const detail::PairCall<T> c =
        detail::pair_call(who, m_opt, student, teacher, grad, alpha, beta, out, weights, per_row_call);
    const detail::MatView<T>&s = c.s, &t = c.t;
    const detail::RowOutputs<T>& o = c.o;
    const T k = T(1) / m_opt.temperature;
    const Eigen::Index v = s.cols;
    return detail::run_rows(who, m_opt, s.rows, v, [&](Eigen::Index i) { return weights[i]; }, o,
                            [&](Eigen::Index i, const kernels::GradOut<T>& g) {
                              const kernels::PlainRow<T> trow{t.row(i)};
                              return kernels::divergence_row<Arch>(m_gen, trow, s.row(i), v, k, c.with_next(g, i));
                            });
  }

  Options<T> m_opt;
  Generator m_gen;
};

KDLOSS_END_NAMESPACE
