// kdloss generators: Jensen–Shannon, skew KL, skew reverse KL, total variation, squared Hellinger,
// Pearson and Neyman chi-squared.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <variant>

#include "kl.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace generators {

namespace detail {

/// The weights \f$w\f$ of p and \f$1 - w\f$ of q in a mixture \f$m = w p + (1 - w) q\f$, in T. Made
/// once per row by the mixture generators' `bind`.
template <class T>
struct MixWeight {
  T w, w1;  // w1 = 1 - w
  /// \param w the weight of p; \param one_minus_w the weight of q (passed apart: 1 - (1 - a) is not
  /// always a in floating point)
  static MixWeight of(double w, double one_minus_w) { return {static_cast<T>(w), static_cast<T>(one_minus_w)}; }
  /// \f$m = w p + (1 - w) q\f$ of one vector of entries: two positive terms, so m keeps a relative
  /// error of about an ulp whatever the weights (as \f$q + w(p - q)\f$ would not where w is near 1
  /// and \f$p \ll (1 - w) q\f$: the difference's rounding, an ulp of q, would swamp m).
  template <class B>
  KDLOSS_INLINE B mixture(const kernels::Elem<B>& e) const {
    return fma(B::splat(w), e.p, B::splat(w1) * e.q);
  }
  /// \f$q / m\f$, with m bounded below by the least normal T (m = 0 only where q = 0).
  template <class B>
  KDLOSS_INLINE B q_over_mixture(const kernels::Elem<B>& e) const {
    return e.q / max(mixture(e), B::splat(std::numeric_limits<T>::min()));
  }
};

/// The skew divergences' weight check: \f$\alpha \in [0, 1)\f$.
inline void check_skew_alpha(const char* who, double alpha) {
  KDLOSS_REQUIRE(alpha >= 0 && alpha < 1, std::string(who) + ": alpha must be in [0, 1) (got " +
                                              std::to_string(alpha) + ")");
}

/// \f$x_2 - \log_2 m\f$ (a base-2 log ratio) bounded below by -big (\f$x_2 = -\infty\f$ on a masked
/// side: its weight is 0 there). On an entry masked on both sides (or a tail lane), where
/// \f$x_2 = \log_2 m = -\infty\f$, it is max(NaN, -big) = -big (`max` returns its second operand for
/// a NaN first one, on every path), and p = q = m = 0 there: each mixture generator's term and h are
/// then exactly 0, so they say `masks_itself` and the value pass applies no mask of its own.
template <class B>
KDLOSS_INLINE B minus_log_mixture(B x2, B log2_m) {
  return max(x2 - log2_m, -big<B>());
}

/// \f$\log_2 m\f$ of the mixture \f$m = w p + (1 - w) q\f$, formed in probability space: one log,
/// the equal of the log-space `logaddexp` to rounding wherever m is a normal T, at one transcendental
/// instead of two (where m is subnormal, the entry's share of the value is below the least normal
/// T over \f$\min(w, 1-w)\f$, times a log). Where m is 0 (both probabilities 0 in T: their
/// log-probabilities below -104 in float, or masked) it is -200 in float, -1100 in double, below the
/// log of every m > 0; the entry's p and q (0, or a subnormal that its weight took to 0) then make
/// its terms 0 or below the least normal T, so no \f$0\cdot\log 0\f$ can become NaN (the failure
/// of Liger-Kernel #1453). Equal logs give exactly that log. In base 2, as the kernel's own logs
/// \f$a_2, b_2\f$: no multiply by \f$\ln 2\f$ per entry makes natural ones. The weight is not tested
/// per entry: a skew divergence whose weight is 0 in T binds forward or reverse KL instead, and a
/// Jensen–Shannon beta that rounds to 0 or 1 in T (within 2^-25 of 1 in float) gives the remaining
/// component's log within rounding.
template <class B>
KDLOSS_INLINE B log2_mixture(const kernels::Elem<B>& e, const MixWeight<typename B::value_type>& mw) {
  using T = typename B::value_type;
  // Below the log of the least subnormal T (2^-149 in float, 2^-1074 in double).
  constexpr T kBelow = std::is_same<T, float>::value ? T(-200) : T(-1100);
  const B lm = simd::log2_at_least(mw.mixture(e), B::splat(kBelow));
  // p = q exactly (same logits): log m is log p, so D(p||p) = 0 exactly, not a rounding residue.
  return select(e.a2 == e.b2, e.a2, lm);
}
}  // namespace detail

/// Generalised Jensen–Shannon divergence with TRL/Liger's convention:
/// \f$L = \beta\,KL(p\|m) + (1-\beta)\,KL(q\|m)\f$, \f$m = \beta p + (1-\beta) q\f$, \f$0 < \beta < 1\f$
/// (\f$\beta = 1/2\f$ is the symmetric JSD, bounded by \f$\log 2\f$).
///
/// \f$g = \partial L/\partial q = (1-\beta)\log(q/m)\f$, \f$h = (1-\beta)\,q\log(q/m)\f$.
/// Limits: one side 0 contributes \f$-\beta p\log\beta\f$ or \f$-(1-\beta) q\log(1-\beta)\f$; the
/// value and the gradient are always finite (at most the binary entropy of \f$\beta\f$).
struct JensenShannon {
  static constexpr const char* name = "kdloss::JensenShannon";
  double beta = 0.5;
  void check(const char* who) const {
    KDLOSS_REQUIRE(beta > 0 && beta < 1,
                   std::string(who) + ": beta must be in (0, 1) (got " + std::to_string(beta) +
                       "); beta = 0 is KL(p||q): use ForwardKL; beta = 1 is KL(q||p): use ReverseKL");
  }
  /// The generator the row kernel runs with: `term` and `h` with beta's logs made once.
  template <class T>
  struct Bound {
    static constexpr bool masks_itself = true;  // see detail::minus_log_mixture
    detail::MixWeight<T> mix;
    T beta_ln2, one_minus_beta_ln2;  // the weights times ln 2: the log ratios are base 2
    template <class B>
    KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
      const B lm = detail::log2_mixture(e, mix);
      const B da = detail::minus_log_mixture(e.a2, lm), db = detail::minus_log_mixture(e.b2, lm);
      return fma(B::splat(beta_ln2) * e.p, da, B::splat(one_minus_beta_ln2) * e.q * db);
    }
    template <class B>
    KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
      const B db = detail::minus_log_mixture(e.b2, detail::log2_mixture(e, mix));  // log2(q/m)
      return B::splat(one_minus_beta_ln2) * e.q * db;
    }
  };
  template <class T>
  Bound<T> bind() const {
    return {detail::MixWeight<T>::of(beta, 1 - beta), static_cast<T>(beta * kernels::kLn2),
            static_cast<T>((1 - beta) * kernels::kLn2)};
  }
};

/// Skew KL (DistiLLM's SKL): \f$L = KL(p\,\|\,\alpha p + (1-\alpha) q)\f$, \f$0 \le \alpha < 1\f$
/// (\f$\alpha = 0\f$ is forward KL).
///
/// \f$g = -(1-\alpha)\,p/m\f$, \f$h = -(1-\alpha)\,p q/m\f$. Limits: \f$p_v = 0\f$ contributes 0;
/// \f$q_v = 0 < p_v\f$ contributes \f$-p_v\log\alpha\f$ (\f$+\infty\f$ at \f$\alpha = 0\f$) with a
/// finite gradient.
struct SkewKL {
  static constexpr const char* name = "kdloss::SkewKL";
  double alpha = 0.1;
  void check(const char* who) const { detail::check_skew_alpha(who, alpha); }
  /// The generator the row kernel runs with: `term` and `h` with alpha's logs made once.
  template <class T>
  struct Bound {
    static constexpr bool masks_itself = true;  // see detail::minus_log_mixture
    detail::MixWeight<T> mix;  // m = alpha p + (1 - alpha) q
    T alpha_minus_1;
    template <class B>
    KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
      return B::splat(T(kernels::kLn2)) * e.p * detail::minus_log_mixture(e.a2, detail::log2_mixture(e, mix));
    }
    template <class B>
    KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
      return B::splat(alpha_minus_1) * e.p * mix.q_over_mixture(e);
    }
  };
  /// At an alpha that is 0 in T, forward KL itself (its two passes, its very values).
  template <class T>
  std::variant<Bound<T>, ForwardKL> bind() const {
    if (static_cast<T>(alpha) == T(0)) return ForwardKL{};
    return Bound<T>{detail::MixWeight<T>::of(alpha, 1 - alpha), static_cast<T>(alpha - 1)};
  }
};

/// Skew reverse KL (DistiLLM's SRKL): \f$L = KL(q\,\|\,(1-\alpha) p + \alpha q)\f$,
/// \f$0 \le \alpha < 1\f$ (\f$\alpha = 0\f$ is reverse KL).
///
/// \f$g = \log q + 1 - \log m - \alpha q/m\f$, \f$h = q(\log(q/m) + 1) - \alpha q^2/m\f$. Limits:
/// \f$q_v = 0\f$ contributes 0; \f$p_v = 0 < q_v\f$ contributes \f$-q_v\log\alpha\f$ with a finite
/// gradient (\f$+\infty\f$ and an unbounded gradient at \f$\alpha = 0\f$).
struct SkewReverseKL {
  static constexpr const char* name = "kdloss::SkewReverseKL";
  double alpha = 0.1;
  void check(const char* who) const { detail::check_skew_alpha(who, alpha); }
  /// The generator the row kernel runs with: `term` and `h` with alpha's logs made once.
  template <class T>
  struct Bound {
    static constexpr bool masks_itself = true;  // see detail::minus_log_mixture
    detail::MixWeight<T> mix;  // m = (1 - alpha) p + alpha q: the weight of p is 1 - alpha
    T alpha;
    template <class B>
    KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
      return B::splat(T(kernels::kLn2)) * e.q * detail::minus_log_mixture(e.b2, detail::log2_mixture(e, mix));
    }
    /// \f$q\log(q/m) + q - \alpha q^2/m\f$: the term plus \f$q - \alpha q^2/m\f$.
    template <class B>
    KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
      return fnma(B::splat(alpha) * e.q, mix.q_over_mixture(e), term(e) + e.q);
    }
  };
  /// At an alpha that is 0 in T, reverse KL itself (its two passes, its very values).
  template <class T>
  std::variant<Bound<T>, ReverseKL> bind() const {
    if (static_cast<T>(alpha) == T(0)) return ReverseKL{};
    return Bound<T>{detail::MixWeight<T>::of(1 - alpha, alpha), static_cast<T>(alpha)};
  }
};

/// Total variation distance, \f$f(r) = \tfrac12|r - 1|\f$: \f$L = \tfrac12\sum_v |p_v - q_v|\f$,
/// \f$0 \le L \le 1\f$.
///
/// \f$g = \tfrac12\,\mathrm{sign}(q - p)\f$ (subgradient 0 where \f$p = q\f$),
/// \f$h = \tfrac12\,q\,\mathrm{sign}(q - p)\f$. Always finite.
struct TotalVariation {
  static constexpr const char* name = "kdloss::TotalVariation";
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    return B::splat(T(0.5)) * abs(e.p - e.q);
  }
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    const B half_q = B::splat(T(0.5)) * e.q;
    return select(e.q > e.p, half_q, select(e.q < e.p, -half_q, B::splat(T(0))));
  }
};

/// Squared Hellinger distance, \f$f(r) = \tfrac12(\sqrt r - 1)^2\f$:
/// \f$L = \tfrac12\sum_v(\sqrt{p_v} - \sqrt{q_v})^2 = 1 - BC\f$, \f$0 \le L \le 1\f$, with
/// \f$BC = \sum_v\sqrt{p_v q_v}\f$ the Bhattacharyya coefficient.
///
/// \f$g = \tfrac12(1 - \sqrt r)\f$, \f$h = \tfrac12(q - \sqrt{pq})\f$ (`Elem::r`
/// \f$= \sqrt{pq}\f$), and \f$\sum_v h_v = L/2\f$. Pass 1 computes L beside the rows' own sums
/// (`kernels::RootSums`: where the rows are alike, with a relative error of a small multiple of eps
/// over their relative difference, as the term form's, not an absolute one of a few ulp of 1), so
/// value and centre come from it, and it leaves the roots in the gradient row, from which the
/// gradient pass takes \f$\sqrt{pq}\f$ without reading the teacher: two passes, as forward KL.
/// Always finite; identical rows give exactly 0.
struct SquaredHellinger {
  static constexpr const char* name = "kdloss::FDivergence<SquaredHellinger>";
  static constexpr kernels::From value_from = kernels::From::Stats;
  static constexpr kernels::From centre_from = kernels::From::Stats;
  static constexpr bool needs_hellinger = true;
  static constexpr bool masks_itself = true;
  static constexpr kernels::Stash reuse = kernels::Stash::Roots;
  /// h is q/2 plus a multiple of the root (the gradient pass folds its scale into the stash's factor)
  static constexpr bool stash_linear = true;
  static constexpr double q_coefficient = 0.5;
  double value(const kernels::KlStats& s) const { return s.hellinger; }
  double centre(const kernels::KlStats& s) const { return s.hellinger / 2; }
  /// \f$\tfrac12(\sqrt p - \sqrt q)^2\f$
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    const B d = sqrt(e.p) - sqrt(e.q);
    return B::splat(T(0.5)) * d * d;
  }
  /// \f$\tfrac12(q - \sqrt{pq})\f$ (0 where both logs are -inf)
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    return B::splat(T(0.5)) * (e.q - e.r);
  }
};

namespace detail {
/// What Pearson's and Neyman's \f$\chi^2\f$ share: the ratio of squares R pass 1 sums and stashes,
/// value and centre from that sum, and an h that is a multiple of q plus a multiple of the ratio
/// (so the gradient pass folds its scale into the stash's factor), 0 where both logs are -inf.
template <kernels::Ratio R>
struct Chi2Traits {
  static constexpr kernels::Ratio ratio = R;
  static constexpr kernels::From value_from = kernels::From::Stats;
  static constexpr kernels::From centre_from = kernels::From::Stats;
  static constexpr kernels::Stash reuse = kernels::Stash::Ratio;
  static constexpr bool stash_linear = true;
  static constexpr bool masks_itself = true;
};

/// The form of Pearson's and Neyman's \f$\chi^2\f$ whose value and centre are sums over the row
/// (`kernels::From::Centre`): what they run for a row whose pass-1 sum of ratios is not below the
/// largest T (see `kernels::gen_ratio`). `Chi2` is the generator itself, whose h and
/// `value_of_centre` it takes.
template <class Chi2>
struct Chi2ByEntries {
  static constexpr const char* name = Chi2::name;
  static constexpr kernels::Ratio ratio = Chi2::ratio;
  static constexpr kernels::From value_from = kernels::From::Centre;
  static constexpr bool masks_itself = true;
  double value_of_centre(double centre) const { return Chi2::value_of_centre(centre); }
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    return Chi2{}.h(e);
  }
};
}  // namespace detail

/// Pearson \f$\chi^2\f$, \f$f(r) = (r - 1)^2\f$: \f$L = \sum_v (p_v - q_v)^2/q_v = \sum_v
/// p_v^2/q_v - 1\f$ (as both rows sum to 1).
///
/// \f$g = 1 - r^2\f$, \f$h = q - p^2/q\f$ (`Elem::ratio` \f$= p^2/q = 2^{2\log_2 p - \log_2 q}\f$,
/// so probabilities that underflow in float never give 0/0), and \f$\sum_v h_v = -L\f$. Pass 1
/// sums \f$p^2/q\f$ beside the rows' own sums (`kernels::Ratio`), so value and centre come from it,
/// and leaves the ratios in the gradient row, from which the gradient pass takes them without
/// reading the teacher: two passes, as forward KL. Identical rows give exactly 0 (the ratio sum is
/// then the rows' own sum, bit for bit). Limits: \f$p_v = 0\f$ contributes \f$q_v\f$; \f$q_v = 0 <
/// p_v\f$ gives \f$+\infty\f$ and an unbounded gradient, as does a ratio beyond the float range.
struct PearsonChi2 : detail::Chi2Traits<kernels::Ratio::TeacherSquared> {
  static constexpr const char* name = "kdloss::FDivergence<PearsonChi2>";
  static constexpr double q_coefficient = 1;  ///< h = q - p^2/q
  /// \f$\sum_v p_v^2/q_v - 1\f$
  double value(const kernels::KlStats& s) const { return value_of_centre(centre(s)); }
  /// \f$\sum_v h_v = 1 - \sum_v p_v^2/q_v\f$
  double centre(const kernels::KlStats& s) const { return 1 - s.ratio; }
  /// \f$L = -c\f$ (the value from the centre, as the form by entries takes it)
  static double value_of_centre(double centre) { return std::max(0.0, -centre); }
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    return e.q - e.ratio;
  }
  detail::Chi2ByEntries<PearsonChi2> by_entries() const { return {}; }
};

/// Neyman \f$\chi^2\f$, \f$f(r) = (1 - r)^2/r\f$: \f$L = \sum_v (p_v - q_v)^2/p_v = \sum_v
/// q_v^2/p_v - 1\f$.
///
/// \f$g = 2(1/r - 1)\f$, \f$h = 2(q^2/p - q)\f$ (`Elem::ratio` \f$= q^2/p = 2^{2\log_2 q - \log_2
/// p}\f$), and \f$\sum_v h_v = 2L\f$. Two passes, as Pearson's \f$\chi^2\f$ (pass 1 sums and stashes
/// \f$q^2/p\f$). Identical rows give exactly 0. Limits: \f$q_v = 0\f$ contributes \f$p_v\f$;
/// \f$p_v = 0 < q_v\f$ gives \f$+\infty\f$ and an unbounded gradient.
struct NeymanChi2 : detail::Chi2Traits<kernels::Ratio::StudentSquared> {
  static constexpr const char* name = "kdloss::FDivergence<NeymanChi2>";
  static constexpr double q_coefficient = -2;  ///< h = 2 q^2/p - 2q
  /// \f$\sum_v q_v^2/p_v - 1\f$
  double value(const kernels::KlStats& s) const { return value_of_centre(centre(s)); }
  /// \f$\sum_v h_v = 2(\sum_v q_v^2/p_v - 1)\f$
  double centre(const kernels::KlStats& s) const { return 2 * (s.ratio - 1); }
  /// \f$L = c/2\f$
  static double value_of_centre(double centre) { return std::max(0.0, centre / 2); }
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    return B::splat(T(2)) * (e.ratio - e.q);
  }
  detail::Chi2ByEntries<NeymanChi2> by_entries() const { return {}; }
};

}  // namespace generators
KDLOSS_END_NAMESPACE
