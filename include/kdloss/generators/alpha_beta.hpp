// kdloss generators: the alpha-beta divergence (ABKD) and Amari's alpha-divergence.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <string>
#include <variant>

#include "kl.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace generators {

/// The alpha–beta divergence of ABKD (Cichocki's AB-divergence), \f$\lambda = \alpha + \beta\f$:
/// \f[ D = -\frac{1}{\alpha\beta}\sum_v\Big(p_v^\alpha q_v^\beta - \frac{\alpha}{\lambda}p_v^\lambda
///       - \frac{\beta}{\lambda}q_v^\lambda\Big) \f]
/// with its special cases as continuous limits: \f$\alpha = 0\f$:
/// \f$\frac{1}{\beta^2}\sum(q^\beta\log\frac{q^\beta}{p^\beta} - q^\beta + p^\beta)\f$;
/// \f$\beta = 0\f$: \f$\frac{1}{\alpha^2}\sum(p^\alpha\log\frac{p^\alpha}{q^\alpha} - p^\alpha +
/// q^\alpha)\f$; \f$\lambda = 0\f$: \f$\frac{1}{\alpha^2}\sum(\log\frac{q^\alpha}{p^\alpha} +
/// \frac{p^\alpha}{q^\alpha} - 1)\f$; \f$\alpha = \beta = 0\f$: \f$\frac12\sum(\log q - \log p)^2\f$.
/// \f$(1, 0)\f$ is KL(p||q), \f$(0, 1)\f$ is KL(q||p), \f$(\frac12, \frac12)\f$ is
/// \f$2\sum(\sqrt p - \sqrt q)^2\f$, \f$(\alpha, 1-\alpha)\f$ is Amari's alpha-divergence.
///
/// Each case is evaluated from its own formula with every power taken as \f$2^{c\log_2 p}\f$ (the
/// special cases take \f$e^{c\log p}\f$ for \f$c < 0\f$), so probabilities that underflow in
/// float, and ratios beyond float's range, give the float-rounded value, never 0 times infinity;
/// \f$h = q\,\partial D/\partial q = (q^\lambda - p^\alpha q^\beta)/\alpha\f$,
/// \f$-q^\beta\log(p/q)\f$ at \f$\alpha = 0\f$. Near (not at) \f$\beta = 0\f$ the
/// general formula loses about \f$\epsilon/|\beta|\f$ relative; near \f$p = q\f$ its terms cancel to
/// an absolute error of about \f$\epsilon(p^\lambda + q^\lambda)/|\alpha\beta|\f$ per entry.
///
/// Limits where exactly one side is masked: \f$q_v = 0 < p_v\f$ contributes
/// \f$p_v^\lambda/(\beta\lambda)\f$ if \f$\beta > 0\f$ and \f$\lambda > 0\f$, else \f$+\infty\f$; its
/// gradient term is 0 (\f$\beta, \lambda > 0\f$), \f$-p^\alpha/\alpha\f$ (\f$\beta = 0 < \alpha\f$),
/// else unbounded. \f$p_v = 0 < q_v\f$ contributes \f$q_v^\lambda/(\alpha\lambda)\f$ if
/// \f$\alpha > 0\f$ and \f$\lambda > 0\f$, else \f$+\infty\f$, with gradient term
/// \f$q^\lambda/\alpha\f$ if \f$\alpha > 0\f$, else unbounded.
struct AlphaBeta {
  static constexpr const char* name = "kdloss::AlphaBeta";
  double alpha = 0.5;
  double beta = 0.5;

  void check(const char* who) const {
    KDLOSS_REQUIRE(std::isfinite(alpha) && std::isfinite(beta),
                   std::string(who) + ": alpha and beta must be finite (got " + std::to_string(alpha) +
                       ", " + std::to_string(beta) + ")");
  }

  /// Which formula a bound generator evaluates.
  enum class Case {
    /// the general one at \f$\lambda = 1\f$ with \f$0 < \alpha < 1\f$ (Amari's divergences
    /// between their limits KL(q||p) and KL(p||q)): \f$p^\lambda = p\f$, and the value is
    /// \f$c/\beta\f$ with \f$c = \sum_v h_v\f$ (`value_of_centre`), so no entry takes \f$p\f$
    Unit,
    General,  ///< \f$\alpha, \beta, \lambda \ne 0\f$ (\f$\lambda = 1\f$ too, outside Unit's range)
    Special,  ///< \f$\alpha = 0\f$, \f$\beta = 0\f$ or \f$\lambda = 0\f$, chosen per entry
  };

  /// The generator the row kernel runs with, its constants (\f$1/(\alpha\beta)\f$, \f$\alpha/\lambda\f$,
  /// ...) made once per call in T, for one `Case` (the general ones test no case per entry).
  template <class T, Case K>
  struct Bound {
    static constexpr bool Special = K == Case::Special;
    /// Unit's value: with \f$\sum_v p_v = \sum_v q_v = 1\f$ and \f$\lambda = 1\f$,
    /// \f$D = (1 - \sum_v p_v^\alpha q_v^\beta)/(\alpha\beta) = c/\beta\f$, \f$c = \sum_v h_v\f$.
    static constexpr kernels::From value_from =
        K == Case::Unit ? kernels::From::Centre : kernels::From::Elementwise;
    double alpha, beta, lambda;
    T a, b, inv_a, inv_a2, inv_b2, inv_ab, a_over_l, b_over_l, inv_bl, inv_al;

    /// Unit's value from the centring constant (\f$\beta > 0\f$ there).
    double value_of_centre(double centre) const { return centre / beta; }

    template <class B>
    KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
      static_assert(K != Case::Unit, "Unit's value comes from the centre: the engine never asks its term");
      B t;
      if (Special && beta == 0 && alpha == 0) {
        t = B::splat(T(0.5)) * e.u * e.u;
      } else if (Special && beta == 0) {  // (p^a a u - p^a + q^a) / a^2
        const B pa = pw(alpha, e.a, e.a2, e.p), qa = pw(alpha, e.b, e.b2, e.q);
        t = (fma(pa, B::splat(a) * e.u, qa) - pa) * B::splat(inv_a2);
      } else if (Special && alpha == 0) {  // (q^b (-b u - 1) + p^b) / b^2
        const B pb = pw(beta, e.a, e.a2, e.p), qb = pw(beta, e.b, e.b2, e.q);
        t = (fma(qb, fnma(B::splat(b), e.u, B::splat(T(-1))), pb)) * B::splat(inv_b2);
      } else if (Special && lambda == 0) {  // (-a u + e^{a u} - 1) / a^2
        const B au = B::splat(a) * e.u;
        t = (simd::expm1(au) - au) * B::splat(inv_a2);
      } else {  // -(p^a q^b - (a/l) p^l - (b/l) q^l) / (a b)
        const B m = mixed_power(e);
        const B pl = pw_lambda(e.a, e.a2, e.p), ql = pw_lambda(e.b, e.b2, e.q);
        const B rest = fma(B::splat(a_over_l), pl, B::splat(b_over_l) * ql);
        t = (rest - m) * B::splat(inv_ab);
      }
      // p = q exactly (same logits): the divergence is exactly 0, not a residue of the cancellation.
      // (The base-2 logs, as every test here: the general case needs no other.)
      t = select(e.a2 == e.b2, B::splat(T(0)), t);
      return one_sided(e, t, [&](B pa) {  // q = 0 < p
        return beta > 0 && lambda > 0 ? pa * B::splat(inv_bl) : inf<B>();
      }, [&](B qa) {  // p = 0 < q
        return alpha > 0 && lambda > 0 ? qa * B::splat(inv_al) : inf<B>();
      });
    }

    template <class B>
    KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
      if constexpr (K == Case::Unit) {
        // (q - p^a q^b) / a with 0 < a, b < 1: an entry masked on one side takes its limit by
        // itself (p^a q^b = 0 there: q/a where p = 0, 0 where q = 0), and p = q exactly gives
        // exactly 0, so identical rows have a value (c / b) of exactly 0.
        return select(e.a2 == e.b2, B::splat(T(0)), (e.q - mixed_power(e)) * B::splat(inv_a));
      } else {
        B g;
        if (Special && alpha == 0) {  // -q^b u
          g = -(pw(beta, e.b, e.b2, e.q) * e.u);
        } else if (Special && beta == 0) {  // (q^a - p^a) / a
          g = (pw(alpha, e.b, e.b2, e.q) - pw(alpha, e.a, e.a2, e.p)) * B::splat(inv_a);
        } else if (Special && lambda == 0) {  // (1 - e^{a u}) / a
          g = -simd::expm1(B::splat(a) * e.u) * B::splat(inv_a);
        } else {  // (q^l - p^a q^b) / a
          const B m = mixed_power(e);
          g = (pw_lambda(e.b, e.b2, e.q) - m) * B::splat(inv_a);
        }
        return one_sided(e, g, [&](B) {  // q = 0 < p
          if (beta > 0 && lambda > 0) return B::splat(T(0));
          if (beta == 0 && alpha > 0) return -(pw(alpha, e.a, e.a2, e.p) * B::splat(inv_a));
          return inf<B>();
        }, [&](B qa) {  // p = 0 < q
          return alpha > 0 ? qa * B::splat(inv_a) : inf<B>();
        });
      }
    }

   private:
    template <class B>
    static KDLOSS_INLINE B inf() {
      return B::splat(std::numeric_limits<T>::infinity());
    }
    /// \f$x^c\f$ from \f$\log x\f$ and \f$\log_2 x\f$ (x itself when c = 1; \f$2^{c\log_2 x}\f$, the
    /// kernels' exponential, when \f$c > 0\f$ keeps the exponent \f$\le 0\f$; \f$e^{c\log x}\f$ else).
    template <class B>
    static KDLOSS_INLINE B pw(double c, B log_x, B log2_x, B x) {
      if (c == 1) return x;
      if (c > 0) return simd::exp2_nonpositive(B::splat(T(c)) * log2_x);
      return simd::exp(B::splat(T(c)) * log_x);
    }
    /// \f$x^\lambda\f$ (the General and Special cases; Unit's h needs none): \f$2^{\lambda\log_2 x}\f$
    /// in the General one (`simd::exp2`, whatever the sign of \f$\lambda\f$: with `pw`'s tests of c
    /// per vector, which g++ leaves in the loop, AlphaBeta (0.2, 0.7) took 1.39x the time), `pw` in
    /// the Special one.
    template <class B>
    KDLOSS_INLINE B pw_lambda(B log_x, B log2_x, B x) const {
      static_assert(K != Case::Unit, "Unit takes no power of lambda");
      if constexpr (K == Case::General)
        return simd::exp2(B::splat(T(lambda)) * log2_x);
      else
        return pw(lambda, log_x, log2_x, x);
    }
    /// \f$p^\alpha q^\beta = 2^{\alpha\log_2 p + \beta\log_2 q}\f$ (`simd::exp2`, for either sign
    /// of the exponents; Unit's are positive, which keeps the exponent \f$\le 0\f$).
    template <class B>
    KDLOSS_INLINE B mixed_power(const kernels::Elem<B>& e) const {
      const B y = fma(B::splat(a), e.a2, B::splat(b) * e.b2);
      if constexpr (K == Case::Unit)
        return simd::exp2_nonpositive(y);
      else
        return simd::exp2(y);
    }
    /// Replaces the lanes where exactly one side is masked by the limits (computed only when a
    /// vector has such a lane): q_zero(p^lambda), p_zero(q^lambda).
    template <class B, class QZero, class PZero>
    KDLOSS_INLINE B one_sided(const kernels::Elem<B>& e, B v, QZero q_zero, PZero p_zero) const {
      const B ninf = B::splat(-std::numeric_limits<T>::infinity());
      const auto qm = (e.b2 == ninf) & (e.a2 > ninf), pm = (e.a2 == ninf) & (e.b2 > ninf);
      if (any(qm)) v = select(qm, q_zero(pw_lambda(e.a, e.a2, e.p)), v);
      if (any(pm)) v = select(pm, p_zero(pw_lambda(e.b, e.b2, e.q)), v);
      return v;
    }
  };

  /// The bound generator of this call: the general formula's when \f$\alpha, \beta, \lambda \ne
  /// 0\f$ (Unit at \f$\lambda = 1\f$, \f$0 < \alpha < 1\f$), else the special cases'. A variant,
  /// so the row kernel is compiled for each and the loops of the general cases test no case per
  /// entry.
  template <class T>
  std::variant<Bound<T, Case::Unit>, Bound<T, Case::General>, Bound<T, Case::Special>> bind() const {
    const double lambda = alpha + beta;
    // Every constant is made, as 0 where its divisor is 0: no case that such a divisor selects
    // reads it (the Special case tests alpha, beta and lambda before it divides).
    auto constants = [&](auto& g) {
      g.alpha = alpha;
      g.beta = beta;
      g.lambda = lambda;
      g.a = static_cast<T>(alpha);
      g.b = static_cast<T>(beta);
      g.inv_a = alpha != 0 ? static_cast<T>(1 / alpha) : T(0);
      g.inv_a2 = alpha != 0 ? static_cast<T>(1 / (alpha * alpha)) : T(0);
      g.inv_b2 = beta != 0 ? static_cast<T>(1 / (beta * beta)) : T(0);
      g.inv_ab = alpha != 0 && beta != 0 ? static_cast<T>(1 / (alpha * beta)) : T(0);
      g.a_over_l = lambda != 0 ? static_cast<T>(alpha / lambda) : T(0);
      g.b_over_l = lambda != 0 ? static_cast<T>(beta / lambda) : T(0);
      g.inv_bl = beta != 0 && lambda != 0 ? static_cast<T>(1 / (beta * lambda)) : T(0);
      g.inv_al = alpha != 0 && lambda != 0 ? static_cast<T>(1 / (alpha * lambda)) : T(0);
    };
    if (alpha > 0 && beta > 0 && lambda == 1) {
      Bound<T, Case::Unit> g{};
      constants(g);
      return g;
    }
    if (alpha != 0 && beta != 0 && lambda != 0) {
      Bound<T, Case::General> g{};
      constants(g);
      return g;
    }
    Bound<T, Case::Special> g{};
    constants(g);
    return g;
  }
};

/// Amari's alpha-divergence, \f$f(r) = \frac{r^\alpha - \alpha(r - 1) - 1}{\alpha(\alpha - 1)}\f$:
/// \f$D = \frac{1}{\alpha(\alpha-1)}\sum_v(p_v^\alpha q_v^{1-\alpha} - 1)\f$, the alpha–beta
/// divergence at \f$(\alpha, 1-\alpha)\f$; \f$\alpha \to 1\f$ is KL(p||q) and \f$\alpha \to 0\f$ is
/// KL(q||p), both continuous (\f$h = q(1 - r^\alpha)/\alpha\f$ up to a constant).
struct Amari : AlphaBeta {
  static constexpr const char* name = "kdloss::FDivergence<Amari>";
  /// \param a Amari's alpha
  explicit Amari(double a = 0.5) : AlphaBeta{a, 1 - a} {}
};

}  // namespace generators
KDLOSS_END_NAMESPACE
