// kdloss kernels: the fused row of every divergence between p = softmax(t/tau) and
// q = softmax(s/tau), driven by a generator (see kdloss/generators/).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <type_traits>
#include <utility>
#include <variant>

#include "row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// Where a divergence's row value (or its gradient's centring constant) comes from.
enum class From {
  Stats,        ///< a function of KL(p||q) and KL(q||p), which pass 1 computes anyway
  Elementwise,  ///< a sum over the row, in a pass of its own
  /// (value only) a function of the centring constant \f$c = \sum_v h_v\f$ (`value_of_centre(c)`),
  /// which the value pass sums anyway: no per-entry `term` (Amari's alpha-divergence:
  /// \f$D = c/(1-\alpha)\f$)
  Centre,
};

/// The sums of a row pass 1 computes for a generator's value or centre: the two KL divergences
/// (+inf where a support is not covered), the squared Hellinger distance and a sum of ratios of
/// squares. Only those a generator asks for (`needs_fkl`, `needs_rkl`, `needs_hellinger`, a
/// `ratio` with a value or centre from pass 1) are computed.
struct KlStats {
  double fkl = 0;  ///< KL(p||q)
  double rkl = 0;  ///< KL(q||p)
  /// \f$1 - \sum_v\sqrt{p_v q_v} \in [0, 1]\f$ (0 exactly for identical rows), from sums of the
  /// halves \f$e^{k t_v/2}, e^{k s_v/2}\f$ of the rows' exponentials that keep its relative accuracy
  /// where the rows are alike (`RootSums`)
  double hellinger = 0;
  /// \f$\sum_v p_v^2/q_v\f$ (a generator whose `ratio` is `Ratio::TeacherSquared`) or
  /// \f$\sum_v q_v^2/p_v\f$ (`StudentSquared`), at most the largest T (a row whose sum is not is
  /// run by the generator's `by_entries()` form instead)
  double ratio = 0;
};

/// Per-entry quantities a generator sees (all lanes of one vector): \f$a = \log p_v\f$,
/// \f$b = \log q_v\f$, \f$p_v\f$, \f$q_v\f$, the log-ratio \f$u = \log p_v - \log q_v\f$, and
/// the base-2 logs \f$a_2 = \log_2 p_v\f$, \f$b_2 = \log_2 q_v\f$ (the kernel's own, from which
/// \f$a\f$ and \f$b\f$ are made: a power \f$p^c = 2^{c a_2}\f$, \f$c \ge 0\f$, is one
/// `simd::exp2_nonpositive`, cheaper than `simd::exp`), the root \f$r = \sqrt{p_v q_v} =
/// 2^{(a_2 + b_2)/2}\f$, and, for a generator with a `ratio`, that ratio of squares: \f$p_v^2/q_v
/// = 2^{2a_2 - b_2}\f$ or \f$q_v^2/p_v = 2^{2b_2 - a_2}\f$, 0 where both logs are -inf.
/// An entry masked on one side has \f$a\f$ or \f$b = -\infty\f$ (and \f$u = \mp\infty\f$); a
/// probability that underflows in T is 0 while its log stays finite. Everything is inlined, so
/// what a generator does not use is never computed.
template <class B>
struct Elem {
  B a, b, p, q, u, a2, b2, r, ratio;
};

// Compile-time facts about a generator, with the defaults of a plain user generator (which only
// writes `term` and `h`): value and centre summed over the row, masked entries zeroed by the engine.
template <class Gen, class = void>
struct gen_value_from : std::integral_constant<From, From::Elementwise> {};
template <class Gen>
struct gen_value_from<Gen, std::void_t<decltype(Gen::value_from)>>
    : std::integral_constant<From, Gen::value_from> {};
template <class Gen, class = void>
struct gen_centre_from : std::integral_constant<From, From::Elementwise> {};
template <class Gen>
struct gen_centre_from<Gen, std::void_t<decltype(Gen::centre_from)>>
    : std::integral_constant<From, Gen::centre_from> {};
template <class Gen, class = void>
struct gen_needs_fkl : std::false_type {};
template <class Gen>
struct gen_needs_fkl<Gen, std::void_t<decltype(Gen::needs_fkl)>>
    : std::integral_constant<bool, Gen::needs_fkl> {};
template <class Gen, class = void>
struct gen_needs_rkl : std::false_type {};
template <class Gen>
struct gen_needs_rkl<Gen, std::void_t<decltype(Gen::needs_rkl)>>
    : std::integral_constant<bool, Gen::needs_rkl> {};
template <class Gen, class = void>
struct gen_needs_hellinger : std::false_type {};
template <class Gen>
struct gen_needs_hellinger<Gen, std::void_t<decltype(Gen::needs_hellinger)>>
    : std::integral_constant<bool, Gen::needs_hellinger> {};
template <class Gen, class = void>
struct gen_masks_itself : std::false_type {};
template <class Gen>
struct gen_masks_itself<Gen, std::void_t<decltype(Gen::masks_itself)>>
    : std::integral_constant<bool, Gen::masks_itself> {};
/// The ratio of squares a generator's entries see as `Elem::ratio` (`Ratio::TeacherSquared`:
/// \f$p^2/q\f$, as Pearson's \f$\chi^2\f$; `StudentSquared`: \f$q^2/p\f$, as Neyman's). With a value
/// or centre from pass 1, pass 1 also sums it (`KlStats::ratio`); a row where that sum is not
/// below the largest T then runs the generator's `by_entries()`, a form whose value and centre are
/// sums over the row.
template <class Gen, class = void>
struct gen_ratio : std::integral_constant<Ratio, Ratio::None> {};
template <class Gen>
struct gen_ratio<Gen, std::void_t<decltype(Gen::ratio)>> : std::integral_constant<Ratio, Gen::ratio> {};
/// The probability a generator's gradient pass takes from pass 1 (`reuse = Stash::Teacher`: p, as
/// forward KL and Jeffreys; `Stash::Student`: q, as reverse KL): pass 1 leaves that side's
/// exponentials in the gradient row, and the gradient pass multiplies them by a per-block factor
/// instead of taking an exponential. Only for a value and centre from pass 1 and a call that
/// overwrites the gradient.
template <class Gen, class = void>
struct gen_reuse : std::integral_constant<Stash, Stash::None> {};
template <class Gen>
struct gen_reuse<Gen, std::void_t<decltype(Gen::reuse)>> : std::integral_constant<Stash, Gen::reuse> {};
/// A generator that reuses either side, chosen per call by `Stash reuse_side() const` (weighted
/// forward and reverse KL: the side of its nonzero weight, so a zero weight gives exactly the
/// other divergence's arithmetic).
template <class Gen, class = void>
struct gen_reuse_either : std::false_type {};
template <class Gen>
struct gen_reuse_either<Gen, std::void_t<decltype(std::declval<const Gen&>().reuse_side())>> : std::true_type {};
/// A generator whose h is the probability it reuses times a function of the logs alone
/// (`stash_linear`: forward KL, \f$h = -p\f$; reverse KL, \f$h = q(1 - u)\f$), so that scaling that
/// probability scales h: the gradient pass then folds the gradient's scale into the stash's factor.
/// With `reuse = Stash::Ratio` or `Stash::Roots`, `stash_linear` says instead that h is
/// `q_coefficient` times q plus a multiple of the reused quantity (Pearson's \f$h = q - p^2/q\f$,
/// squared Hellinger's \f$h = (q - \sqrt{pq})/2\f$): the gradient pass then takes
/// \f$\partial L/\partial s = h_0 - q\,(c - \alpha)\,\mathrm{scale}\f$ with \f$h_0\f$ the generator's h
/// at q = 0 of the scaled quantity.
template <class Gen, class = void>
struct gen_stash_linear : std::false_type {};
template <class Gen>
struct gen_stash_linear<Gen, std::void_t<decltype(Gen::stash_linear)>>
    : std::integral_constant<bool, Gen::stash_linear> {};
/// The coefficient \f$\alpha\f$ of q in the h of a `stash_linear` generator that reuses a ratio or
/// a root (`q_coefficient`; 0 where a generator gives none).
template <class Gen, class = void>
struct gen_q_coefficient {
  static constexpr double value = 0;
};
template <class Gen>
struct gen_q_coefficient<Gen, std::void_t<decltype(Gen::q_coefficient)>> {
  static constexpr double value = Gen::q_coefficient;
};
/// A generator with per-call constants (e.g. the logs of its weights) provides
/// `template <class T> Bound bind() const`, the generator the row kernel runs with, those constants
/// computed once per row rather than once per entry (a libm call in the loop cannot be hoisted
/// out of it: it may set errno).
template <class T, class Gen, class = void>
struct gen_binds : std::false_type {};
template <class T, class Gen>
struct gen_binds<T, Gen, std::void_t<decltype(std::declval<const Gen&>().template bind<T>())>> : std::true_type {};

/// The fused row of the divergence `gen` between teacher row t and student row s:
/// - pass 1 (row_stats): maxima and sums of exponentials of both rows, plus KL(p||q), KL(q||p)
///   and the squared Hellinger distance as the generator takes its value or centre from them;
/// - a value pass, only for generators whose value or centre is a sum over the row: it sums
///   \f$\mathrm{term}_v\f$ (or, for a value from the centre, only \f$h_v\f$) and \f$h_v\f$ and,
///   when it may, leaves \f$h_v\f$ in the gradient row; it prefetches the next row (`out.next`);
/// - the gradient pass \f$\partial L/\partial s_j = \mathrm{scale}\,(h_j - q_j c) +
///   \beta\,\mathrm{row}_j\f$, \f$h = q\,g\f$, \f$c = \sum_v h_v\f$ (`out.scale` carries
///   \f$1/\tau\f$, the weight and the reduction), which then only recomputes \f$q\f$.
/// With a value and centre from pass 1 (forward and reverse KL, Jeffreys, their weighted sum,
/// squared Hellinger, Pearson's and Neyman's \f$\chi^2\f$) there is no value pass, and the gradient
/// pass takes p (or q, or \f$\sqrt{pq}\f$, or the ratio \f$p^2/q\f$ or \f$q^2/p\f$, as the
/// generator's `reuse` says) from the values pass 1 left in the gradient row: one exponential per
/// entry instead of two.
/// Passes after the first run backwards over the row, so a row larger than L2 starts on the lines
/// the previous pass left in cache. `out.row == nullptr` computes the value alone.
template <class Arch, Stash Side, class Gen, class T, class TeacherRow>
RowResult divergence_row_bound(const Gen& gen_in, const TeacherRow& teacher_in, const T* student, Index n,
                               T k, const GradOut<T>& out) {
  using B = simd::batch<T, Arch>;
  // Local copies: a store to the gradient row may alias anything reached through a reference, which
  // the loops would otherwise load again at every vector.
  const Gen gen = gen_in;
  const TeacherRow teacher = teacher_in;
  constexpr int W = B::size;
  constexpr bool kStatsValue = gen_value_from<Gen>::value == From::Stats;
  constexpr bool kCentreValue = gen_value_from<Gen>::value == From::Centre;
  constexpr bool kTermValue = gen_value_from<Gen>::value == From::Elementwise;
  constexpr bool kStatsCentre = gen_centre_from<Gen>::value == From::Stats;
  static_assert(gen_centre_from<Gen>::value != From::Centre, "a centre cannot come from itself");
  static_assert(!kCentreValue || !kStatsCentre, "a value from the centre sums h in the value pass");
  constexpr bool kFkl = gen_needs_fkl<Gen>::value, kRkl = gen_needs_rkl<Gen>::value;
  constexpr bool kHellinger = gen_needs_hellinger<Gen>::value;
  constexpr Ratio kRatio = gen_ratio<Gen>::value;
  constexpr Ratio kRatioSum = kStatsValue || kStatsCentre ? kRatio : Ratio::None;
  T* const grad = out.row;

  // Pass 1 leaves one side's exponentials in the gradient row when the gradient pass will
  // overwrite it and reuses them (rows of up to kMaxStashBlocks pass-1 blocks; longer rows take the
  // exponential again).
  constexpr Stash kReuse = kStatsValue && kStatsCentre ? Side : Stash::None;
  using Plan = StatsPlan<true, true, kFkl, kRkl, false, false, Stash::None, kHellinger, kRatioSum>;
  using StashPlan = StatsPlan<true, true, kFkl, kRkl, false, false, kReuse, kHellinger, kRatioSum>;
  constexpr Index kBlock = stats_block<B, StashPlan>();
  constexpr Index kStashBlocks = kReuse != Stash::None ? kMaxStashBlocks : 1;
  constexpr bool kTwoRefs = kReuse == Stash::Roots || kReuse == Stash::Ratio;
  T refs[kTwoRefs ? 2 * kStashBlocks : kStashBlocks];
  const bool stash = kReuse != Stash::None && grad != nullptr && out.beta == T(0) && n <= kStashBlocks * kBlock;
  const PairStats<T> st = stash ? row_stats<Arch, StashPlan>(teacher, student, n, k, ExpStash<T>{grad, refs})
                                : row_stats<Arch, Plan>(teacher, student, n, k);
  // The student first: a target formed from the student (Taid, DeltaKL) inherits its defects.
  if (RowError e = st.s.check(false); e != RowError::None) return {0, e};
  if (RowError e = st.t.check(true); e != RowError::None) return {0, e};
  // A sum of ratios past the largest T: an entry's ratio is infinite, or pass 1's float sums
  // overflowed (a block whose divisor lies far below its maximum while its dividend is at its own,
  // which later blocks may lower). The row's entries then say which, as the generator's form by
  // entries computes them.
  if constexpr (kRatioSum != Ratio::None) {
    if (!(st.ratio <= static_cast<double>(std::numeric_limits<T>::max())))
      return divergence_row_bound<Arch, Stash::None>(gen.by_entries(), teacher, student, n, k, out);
  }
  const double lst = st.t.log_sum(), lss = st.s.log_sum();
  const double kd = static_cast<double>(k);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  KlStats kl;
  // A divergence is >= 0; rounding may leave a few ulp below.
  if constexpr (kFkl)
    kl.fkl = st.teacher_uncovered ? kInf : std::max(0.0, kd * st.cross_t / st.t.sum - lst + lss);
  if constexpr (kRkl)
    kl.rkl = st.student_uncovered ? kInf : std::max(0.0, -kd * st.cross_s / st.s.sum + lst - lss);
  if constexpr (kHellinger) kl.hellinger = st.hellinger;
  if constexpr (kRatioSum != Ratio::None) kl.ratio = st.ratio;

  // The entry view, relative to the row maxima (so z/tau never overflows for huge logits). In base
  // 2, log2 p = k log2(e) (t - max t) - log2 S_t: p costs one fms and one exp2.
  // Every lambda of the row is always inlined: one compiled out of line (g++ did so for the tail's
  // instantiation) takes the address of what it captures, and as a store to the gradient row may
  // alias those constants, the loops reload them from the stack at every vector.
  const PlainRow<T> srow{student};
  const double kappa = exp2_scale(k);  // pass 1's base-2 multiplier, which the stash is made with
  const B kb = B::splat(k), k2 = B::splat(static_cast<T>(kappa));
  const B mtb = B::splat(st.t.max), msb = B::splat(st.s.max), ln2 = B::splat(static_cast<T>(kLn2));
  const B lst2 = B::splat(static_cast<T>(lst * kLog2e)), lss2 = B::splat(static_cast<T>(lss * kLog2e));
  const B dl = B::splat(static_cast<T>(lst - lss));
  auto log2q = [&](Index j, auto lanes) KDLOSS_INLINE_LAMBDA { return fms(srow.template load<B>(j, lanes) - msb, k2, lss2); };
  // The entry view, but for the side `skip` names (the caller fills it from pass 1's stash).
  auto view = [&](Index j, auto lanes, auto skip) KDLOSS_INLINE_LAMBDA {
    constexpr Stash kSkip = decltype(skip)::value;
    const B dt = teacher.template load<B>(j, lanes) - mtb;
    const B ds = srow.template load<B>(j, lanes) - msb;
    const B ya = fms(dt, k2, lst2), yb = fms(ds, k2, lss2);
    Elem<B> e;
    e.a = ya * ln2;
    e.b = yb * ln2;
    e.p = kSkip == Stash::Teacher ? B::splat(0) : simd::exp2_nonpositive(ya);
    e.q = kSkip == Stash::Student ? B::splat(0) : simd::exp2_nonpositive(yb);
    e.u = fms(dt - ds, kb, dl);
    e.a2 = ya;
    e.b2 = yb;
    e.r = kSkip == Stash::Roots ? B::splat(0) : simd::exp2_nonpositive((ya + yb) * B::splat(T(0.5)));
    if constexpr (kRatio != Ratio::None) {
      // The divisor's log bounded below: an entry masked on both sides gives 2^-inf = 0 (not 2^NaN),
      // one whose divisor alone is masked gives +inf.
      constexpr bool kTsq = kRatio == Ratio::TeacherSquared;
      const B lowest = B::splat(std::numeric_limits<T>::lowest());
      e.ratio = kSkip == Stash::Ratio ? B::splat(0)
                                      : simd::exp2(fms(B::splat(T(2)), kTsq ? ya : yb, max(kTsq ? yb : ya, lowest)));
    }
    return e;
  };
  auto elem = [&](Index j, auto lanes) KDLOSS_INLINE_LAMBDA { return view(j, lanes, std::integral_constant<Stash, Stash::None>{}); };
  // Entries masked on both sides (and tail lanes) contribute nothing, whatever the formula.
  const B ninf = B::splat(-std::numeric_limits<T>::infinity());
  // (In base 2: a = -inf exactly where a2 is, without the multiply a generator may not need.)
  auto live = [&](const Elem<B>& e) KDLOSS_INLINE_LAMBDA { return (e.a2 > ninf) | (e.b2 > ninf); };
  // An entry's term or h with those entries at 0: by the generator's own formula (`masks_itself`),
  // else by the mask.
  auto masked = [&](const Elem<B>& e, B x) KDLOSS_INLINE_LAMBDA {
    if constexpr (gen_masks_itself<Gen>::value) return x;
    else return select(live(e), x, B::splat(0));
  };

  double value = 0, centre = 0;
  if constexpr (kStatsValue) value = gen.value(kl);
  // With a gradient to overwrite, the value pass leaves h in the gradient row. A value from the
  // centre sums h in every call.
  const bool reduce_centre = kCentreValue || (!kStatsCentre && grad != nullptr);
  const bool stash_h = reduce_centre && grad != nullptr && out.beta == T(0);
  if (!kStatsValue || reduce_centre) {
    // Float lanes over chunks of 32 vectors (each lane sums at most 32 terms, as in pass 1), double
    // across chunks: a float row of 150k entries stays within a few ulp on every path, the scalar
    // one's single lane included.
    constexpr Index kChunk = 32 * W;
    // This pass is bound by its arithmetic: it prefetches the next row (`out.next`), one vector of
    // each side per vector, so that the next row's pass 1 does not wait on memory.
    const NextRow<T> next = out.next;
    for (Index c = (n - 1) / kChunk; c >= 0; --c) {
      B vs = B::splat(0), cs = B::splat(0);
      sweep_reverse<W>(c * kChunk, std::min(n, (c + 1) * kChunk), [&](Index j, auto lanes) KDLOSS_INLINE_LAMBDA {
        next.prefetch(n - 1 - j);  // the next row forwards, as its pass 1 will read it
        const Elem<B> e = elem(j, lanes);
        if constexpr (kTermValue) vs = vs + masked(e, gen.term(e));
        if constexpr (!kStatsCentre) {
          if (reduce_centre) {
            const B h = masked(e, gen.h(e));
            cs = cs + h;
            if (stash_h) store(grad + j, h, lanes);
          }
        }
      });
      if constexpr (kTermValue) value += hsum_wide(vs);
      if (reduce_centre) centre += hsum_wide(cs);
    }
    if constexpr (kCentreValue) value = gen.value_of_centre(centre);
    if constexpr (!kStatsValue) value = std::max(value, 0.0);
  }
  if (grad == nullptr) return {value, RowError::None};

  if constexpr (kStatsCentre) centre = gen.centre(kl);
  // An infinite centre means an infinite gradient entry (e.g. reverse KL with student mass where
  // the teacher logit is -inf): there is no finite gradient to write.
  if (!std::isfinite(centre)) return {value, RowError::UnboundedGradient};

  const B cb = B::splat(static_cast<T>(centre)), gb = B::splat(out.scale);
  if (stash_h) {
    // h is in the row already: only q is recomputed (forward, where the value pass ended).
    sweep<W>(0, n, [&](Index j, auto lanes) KDLOSS_INLINE_LAMBDA {
      const B q = simd::exp2_nonpositive(log2q(j, lanes));
      store(grad + j, gb * fnma(q, cb, load<B>(grad + j, lanes, T(0))), lanes);
    });
    return {value, RowError::None};
  }
  auto grad_entry = [&](const Elem<B>& e) KDLOSS_INLINE_LAMBDA {
    return gb * fnma(e.q, cb, masked(e, gen.h(e)));
  };
  // Writes the gradient block by block from the end of the row. `from_stash` names the side whose
  // probability comes from pass 1's stash (times the block's `StashFactor`). `accumulate` adds beta
  // times the old row.
  auto write = [&](auto from_stash, auto accumulate) {
    constexpr Stash kFrom = decltype(from_stash)::value;
    const SideStats<T>& side = kFrom == Stash::Teacher ? st.t : st.s;
    const double ls = kFrom == Stash::Teacher ? lst : lss;
    const B bb = B::splat(out.beta);
    constexpr bool kFold = gen_stash_linear<Gen>::value && kFrom != Stash::None && !decltype(accumulate)::value;
    auto factor_of = [&](Index b) KDLOSS_INLINE_LAMBDA {
      if constexpr (kFrom == Stash::Roots) return StashFactor<T>::of_roots(refs + 2 * b, st, kappa, lst, lss);
      else if constexpr (kFrom == Stash::Ratio)
        return StashFactor<T>::at(StashFactor<T>::ratio_exponent(refs + 2 * b, st, kRatio == Ratio::TeacherSquared, kappa, lst, lss));
      else if constexpr (kFrom != Stash::None) return StashFactor<T>::of(refs[b], side.max, st.stash_offsets, kappa, ls);
      else return StashFactor<T>{};
    };
    // Each block, its stashed probability times its factor. `folded`: a `stash_linear` generator's
    // factor times the scale, so the reused probability comes out scaled, and so does h: the entry
    // is h - q (c scale) from a stashed p, or h - q c from a stashed q scaled with it, two
    // operations fewer per entry than two factors, then h - q c, then the scale.
    stash_blocks_reverse<kFold>(n, kBlock, out.scale, factor_of, [&](auto folded, Index j0, Index j1, T f1, T f2) KDLOSS_INLINE_LAMBDA {
      constexpr bool kFolded = decltype(folded)::value;
      const B f1b = B::splat(f1), f2b = B::splat(f2);
      constexpr double kQ = gen_q_coefficient<Gen>::value;
      constexpr bool kAffine = kFrom == Stash::Ratio || kFrom == Stash::Roots;  // h = kQ q + (h at q = 0)
      const B cq = kFrom == Stash::Teacher || kAffine
                       ? B::splat(static_cast<T>((centre - kQ) * static_cast<double>(out.scale)))
                       : cb;
      sweep_reverse<W>(j0, j1, [&](Index j, auto lanes) KDLOSS_INLINE_LAMBDA {
        Elem<B> e = view(j, lanes, from_stash);
        if constexpr (kFrom != Stash::None) {
          B& stashed = kFrom == Stash::Teacher ? e.p : kFrom == Stash::Student ? e.q : kFrom == Stash::Roots ? e.r : e.ratio;
          stashed = kFolded ? load<B>(grad + j, lanes, T(0)) * f1b : load<B>(grad + j, lanes, T(0)) * f1b * f2b;
        }
        B g;
        if constexpr (kFolded && kAffine) {  // h at q = 0 (the scaled stash's part)
          static_assert(!kFolded || gen_masks_itself<Gen>::value, "a folded ratio or root is not masked");
          Elem<B> e0 = e;
          e0.q = B::splat(0);
          g = fnma(e.q, cq, gen.h(e0));
        } else {
          g = kFolded ? fnma(e.q, cq, masked(e, gen.h(e))) : grad_entry(e);
        }
        if constexpr (decltype(accumulate)::value) g = fma(load<B>(grad + j, lanes, T(0)), bb, g);
        store(grad + j, g, lanes);
      });
    });
  };
  using None = std::integral_constant<Stash, Stash::None>;
  // A teacher row with the student's statistics (a target made from the student itself, as Taid's
  // at lambda 0) takes p as it takes q, so p = q gives a gradient of exactly 0.
  bool from_stash = stash && st.stash_complete && !st.same_statistics();
  // A stashed ratio may be as large as the largest T: its factor is applied only where it is a
  // product of two normal T (rows whose blocks' references lie far apart take the exponentials).
  if constexpr (kReuse == Stash::Ratio) {
    for (Index b = 0; from_stash && b <= (n - 1) / kBlock; ++b) {
      const double y = StashFactor<T>::ratio_exponent(refs + 2 * b, st, kRatio == Ratio::TeacherSquared, kappa, lst, lss);
      from_stash = y >= StashFactor<T>::lowest_exponent() && y <= StashFactor<T>::highest_exponent();
    }
  }
  if (from_stash)
    write(std::integral_constant<Stash, kReuse>{}, std::false_type{});
  else if (out.beta == T(0))
    write(None{}, std::false_type{});
  else
    write(None{}, std::true_type{});
  return {value, RowError::None};
}

template <class V>
struct is_variant : std::false_type {};
template <class... Alt>
struct is_variant<std::variant<Alt...>> : std::true_type {};

/// `divergence_row_bound` with the generator bound to T first when it has per-call constants
/// (`gen_binds`). A `bind` that returns a `std::variant` of generators (one per case of its
/// parameters) has the row run by the one it holds: the kernel is compiled for each.
template <class Arch, class Gen, class T, class TeacherRow>
RowResult divergence_row(const Gen& gen, const TeacherRow& teacher, const T* student, Index n, T k,
                         const GradOut<T>& out) {
  auto run = [&](const auto& g) {
    using G = std::decay_t<decltype(g)>;
    if constexpr (gen_reuse_either<G>::value) {
      if (g.reuse_side() == Stash::Student)
        return divergence_row_bound<Arch, Stash::Student>(g, teacher, student, n, k, out);
      return divergence_row_bound<Arch, Stash::Teacher>(g, teacher, student, n, k, out);
    } else {
      return divergence_row_bound<Arch, gen_reuse<G>::value>(g, teacher, student, n, k, out);
    }
  };
  if constexpr (gen_binds<T, Gen>::value) {
    const auto bound = gen.template bind<T>();
    if constexpr (is_variant<std::decay_t<decltype(bound)>>::value)
      return std::visit(run, bound);
    else
      return run(bound);
  } else {
    return run(gen);
  }
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
