// kdloss generators: forward, reverse and symmetric (Jeffreys) Kullback–Leibler divergence.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <limits>
#include <variant>

#include "../kernels/divergence_row.hpp"

KDLOSS_BEGIN_NAMESPACE
/// Generators of `FDivergence<Generator>`: the function \f$f\f$ of \f$D_f(p\|q) = \sum_v q_v
/// f(p_v/q_v)\f$, written in log-ratio space, with the limits each one takes when \f$q_v \to 0\f$
/// or \f$p_v \to 0\f$.
///
/// A generator provides, per entry (`kernels::Elem`: \f$a = \log p\f$, \f$b = \log q\f$, \f$p\f$,
/// \f$q\f$, \f$u = \log(p/q)\f$):
/// - `term(e)` \f$= q f(p/q)\f$, the entry's share of the value, and
/// - `h(e)` \f$= q\,g(p/q)\f$ with \f$g = f(r) - r f'(r) = \partial D/\partial q_v\f$; the engine
///   turns it into \f$\partial L/\partial s_j = (h_j - q_j\sum_v h_v)/\tau\f$.
/// Entries \f$-\infty\f$ on both sides are zeroed by the engine (or by a generator that says
/// `masks_itself`, below); everything else (one side masked,
/// probabilities that underflow to 0 while their logs stay finite) is the generator's to handle:
/// it returns the limit, \f$+\infty\f$ for a divergent value, and an infinite `h` for an unbounded
/// gradient (reported as an error by gradient calls). Optional members let the engine skip work:
/// `value_from`/`centre_from = kernels::From::Stats` with `value(kl)`/`centre(kl)` (the value or the
/// centring constant \f$\sum_v h_v\f$ as a function of the sums pass 1 computes when asked: the two
/// KL divergences through `needs_fkl`/`needs_rkl`, the squared Hellinger distance through
/// `needs_hellinger`, the sum of \f$p^2/q\f$ or \f$q^2/p\f$ through a `ratio`, whose generator
/// then also gives `by_entries()`, a form for the rows where that sum passes the float range; see
/// `kernels::KlStats`), `value_from = kernels::From::Centre` with
/// `value_of_centre(c)` (the value as a function of \f$c = \sum_v h_v\f$, which the value pass then
/// sums alone: `term` is never called), `masks_itself` (`term` and h are already 0 where both
/// logs are -inf, an entry masked on both sides or a tail lane: the engine applies no mask),
/// `reuse` (`kernels::Stash::Teacher` or `Student`, or a `reuse_side()` that chooses per call: with
/// a value and centre from pass 1, pass 1 leaves that side's exponentials in the gradient row and
/// the gradient pass takes p or q from there instead of an exponential; `Stash::Roots`, with the
/// squared Hellinger distance: \f$\sqrt{pq}\f$, `Elem::r`; `Stash::Ratio`, with a `ratio`: that
/// ratio, `Elem::ratio`), `stash_linear` (with `reuse`: h is
/// the reused probability times a function of the logs alone, so the gradient pass folds the
/// gradient's scale into the stash's factor; forward and reverse KL), and
/// `template <class T> bind() const`, which returns the generator the kernel runs with, per-call
/// constants (such as the logs of a mixture weight) computed once per row instead of per entry (or
/// a `std::variant` of such generators, one per case of the parameters, as `AlphaBeta`'s: the
/// kernel is compiled for each, and the row runs the one the variant holds).
namespace generators {

namespace detail {
template <class B>
KDLOSS_INLINE B big() {
  return B::splat(std::numeric_limits<typename B::value_type>::max());
}
}  // namespace detail

/// Forward KL, \f$f(r) = r\log r\f$: \f$L = KL(p\|q) = \sum_v p_v(\log p_v - \log q_v)\f$.
///
/// \f$g = -r\f$, so \f$h = -p\f$ and \f$\sum_v h_v = -1\f$: \f$\partial L/\partial s = (q - p)/\tau\f$
/// needs no row reduction, and the value comes from pass 1 (a value-only call reads each logit
/// once). Limits: \f$p_v \to 0\f$ contributes 0; \f$q_v = 0 < p_v\f$ gives \f$L = +\infty\f$ (the
/// true value) with a finite gradient.
struct ForwardKL {
  static constexpr const char* name = "kdloss::ForwardKL";
  static constexpr kernels::From value_from = kernels::From::Stats;
  static constexpr kernels::From centre_from = kernels::From::Stats;
  static constexpr bool needs_fkl = true;
  static constexpr bool masks_itself = true;
  static constexpr kernels::Stash reuse = kernels::Stash::Teacher;
  static constexpr bool stash_linear = true;  // h = -p
  double value(const kernels::KlStats& kl) const { return kl.fkl; }
  double centre(const kernels::KlStats&) const { return -1.0; }
  /// \f$p(\log p - \log q)\f$
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    return e.p * max(e.u, -detail::big<B>());
  }
  /// \f$h = -p\f$
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    return -e.p;
  }
};

/// Reverse KL, \f$f(r) = -\log r\f$: \f$L = KL(q\|p) = \sum_v q_v(\log q_v - \log p_v)\f$ (MiniLLM).
///
/// \f$g = 1 - \log r\f$, \f$h = q(1 - u)\f$ and \f$\sum_v h_v = L + 1\f$, known from pass 1:
/// \f$\partial L/\partial s_j = q_j(\log q_j - \log p_j - L)/\tau\f$, two passes like forward KL.
/// Limits: \f$q_v \to 0\f$ contributes 0; \f$p_v = 0 < q_v\f$ gives \f$L = +\infty\f$ with an
/// unbounded gradient (a gradient call reports the row).
struct ReverseKL {
  static constexpr const char* name = "kdloss::ReverseKL";
  static constexpr kernels::From value_from = kernels::From::Stats;
  static constexpr kernels::From centre_from = kernels::From::Stats;
  static constexpr bool needs_rkl = true;
  static constexpr bool masks_itself = true;  // min() maps u = +inf/NaN (q = 0) to a finite value
  static constexpr kernels::Stash reuse = kernels::Stash::Student;
  static constexpr bool stash_linear = true;  // h = q (1 - u)
  double value(const kernels::KlStats& kl) const { return kl.rkl; }
  double centre(const kernels::KlStats& kl) const { return kl.rkl + 1.0; }
  /// \f$q(\log q - \log p)\f$
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    return -(e.q * min(e.u, detail::big<B>()));
  }
  /// \f$h = q(1 - u)\f$
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    return e.q * (B::splat(T(1)) - min(e.u, detail::big<B>()));
  }
};

/// Jeffreys divergence (symmetric KL), \f$f(r) = (r - 1)\log r\f$:
/// \f$L = KL(p\|q) + KL(q\|p) = \sum_v (p_v - q_v)(\log p_v - \log q_v)\f$.
///
/// \f$h = q(1 - u) - p\f$, \f$\sum_v h_v = KL(q\|p)\f$; value and centre both come from pass 1.
/// Limits: either support not covering the other gives \f$+\infty\f$; the gradient is unbounded
/// only where \f$p_v = 0 < q_v\f$ (as for reverse KL).
struct Jeffreys {
  static constexpr const char* name = "kdloss::FDivergence<Jeffreys>";
  static constexpr kernels::From value_from = kernels::From::Stats;
  static constexpr kernels::From centre_from = kernels::From::Stats;
  static constexpr bool needs_fkl = true;
  static constexpr bool needs_rkl = true;
  static constexpr bool masks_itself = true;
  static constexpr kernels::Stash reuse = kernels::Stash::Teacher;
  double value(const kernels::KlStats& kl) const { return kl.fkl + kl.rkl; }
  double centre(const kernels::KlStats& kl) const { return kl.rkl; }
  /// \f$(p - q)(\log p - \log q)\f$
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    return (e.p - e.q) * e.u;
  }
  /// \f$h = q(1 - u) - p\f$
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    return fms(e.q, B::splat(T(1)) - min(e.u, detail::big<B>()), e.p);
  }
};

/// Weighted forward and reverse KL, \f$L = w_f\,KL(p\|q) + w_r\,KL(q\|p)\f$ (\f$w_f, w_r \ge 0\f$;
/// `SymmetricKL`). \f$h = w_r\,q(1 - u) - w_f\,p\f$, \f$\sum_v h_v = w_r(KL(q\|p) + 1) - w_f\f$:
/// value and centre from pass 1. A zero weight removes its term entirely (its KL may be
/// \f$+\infty\f$ on a masked vocabulary without affecting the loss or the gradient).
struct WeightedKL {
  static constexpr const char* name = "kdloss::SymmetricKL";
  static constexpr kernels::From value_from = kernels::From::Stats;
  static constexpr kernels::From centre_from = kernels::From::Stats;
  static constexpr bool needs_fkl = true;
  static constexpr bool needs_rkl = true;
  static constexpr bool masks_itself = true;
  double wf = 0.5, wr = 0.5;
  /// The side the gradient pass reuses from pass 1: q when only the reverse term is left, else p.
  kernels::Stash reuse_side() const { return wf == 0 ? kernels::Stash::Student : kernels::Stash::Teacher; }
  /// The generator the row kernel runs with: ForwardKL itself at weights (1, 0) and ReverseKL at
  /// (0, 1), so those are exactly their arithmetic (the gradient pass's scale folded into the
  /// stash's factor included); else this one.
  template <class T>
  std::variant<WeightedKL, ForwardKL, ReverseKL> bind() const {
    if (wf == 1 && wr == 0) return ForwardKL{};
    if (wf == 0 && wr == 1) return ReverseKL{};
    return *this;
  }
  double value(const kernels::KlStats& kl) const {
    return (wf > 0 ? wf * kl.fkl : 0.0) + (wr > 0 ? wr * kl.rkl : 0.0);
  }
  double centre(const kernels::KlStats& kl) const { return (wr > 0 ? wr * (kl.rkl + 1.0) : 0.0) - wf; }
  /// \f$w_f\,p(\log p - \log q) + w_r\,q(\log q - \log p)\f$
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    B r = B::splat(T(0));
    if (wf > 0) r = B::splat(static_cast<T>(wf)) * (e.p * max(e.u, -detail::big<B>()));
    if (wr > 0) r = r - B::splat(static_cast<T>(wr)) * (e.q * min(e.u, detail::big<B>()));
    return r;
  }
  /// \f$h = w_r\,q(1 - u) - w_f\,p\f$
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    const B f = B::splat(static_cast<T>(wf)) * e.p;
    if (!(wr > 0)) return -f;
    return fms(B::splat(static_cast<T>(wr)) * e.q, B::splat(T(1)) - min(e.u, detail::big<B>()), f);
  }
};

}  // namespace generators
KDLOSS_END_NAMESPACE
