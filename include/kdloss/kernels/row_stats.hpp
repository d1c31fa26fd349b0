// kdloss kernels: pass 1 of every row, the online max / sum-exp of teacher and student together.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "sweep.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// Why a row cannot be computed (the row loop turns it into an exception naming the row).
enum class RowError : std::uint8_t {
  None,
  TeacherNaN,         ///< a NaN teacher logit
  TeacherPosInf,      ///< a +inf teacher logit
  TeacherEmpty,       ///< no finite teacher logit
  StudentNaN,         ///< a NaN student logit
  StudentPosInf,      ///< a +inf student logit
  StudentEmpty,       ///< no finite student logit
  UnboundedGradient,  ///< the loss is +inf and its gradient has no finite value
  BadLabel,           ///< a label outside [0, V) that is not the ignore index
  NonTargetEmpty,     ///< no finite teacher logit outside the label (DKD, NKD)
  BadTarget,          ///< a soft-target entry that is NaN, infinite or negative
};

/// What a row kernel returns: the row's unweighted loss \f$L_i\f$ (before weighting and reduction),
/// or why it could not be computed.
struct RowResult {
  double value = 0;
  RowError error = RowError::None;
};

/// Statistics of one logit row x at inverse temperature k.
template <class T>
struct SideStats {
  T max = -std::numeric_limits<T>::infinity();  ///< \f$\max_v x_v\f$ (-inf if none is finite)
  double sum = 0;                                ///< \f$\sum_v e^{k(x_v - \max)}\f$ (>= 1 if valid)
  /// \f$\log\sum_v e^{k(x_v-\max)}\f$; \f$\log p_v = k(x_v - \max) - \f$ `log_sum()`.
  double log_sum() const { return std::log(sum); }
  /// The row's defect, if any (O(1): rides on the statistics).
  RowError check(bool teacher) const {
    if (max == std::numeric_limits<T>::infinity()) return teacher ? RowError::TeacherPosInf : RowError::StudentPosInf;
    if (std::isnan(sum)) return teacher ? RowError::TeacherNaN : RowError::StudentNaN;
    if (!(sum >= 1.0)) return teacher ? RowError::TeacherEmpty : RowError::StudentEmpty;
    return RowError::None;
  }
};

/// Pass-1 statistics of a teacher row t and a student row s.
///
/// With \f$D_v = (t_v - \max t) - (s_v - \max s)\f$ (logit units), the cross sums give the two
/// KL divergences without a second pass:
/// \f$KL(p\|q) = k\,C_t/S_t - \log S_t + \log S_s\f$ and
/// \f$KL(q\|p) = -k\,C_s/S_s + \log S_t - \log S_s\f$.
template <class T>
struct PairStats {
  SideStats<T> t, s;
  double cross_t = 0;          ///< \f$C_t = \sum_v e^{k(t_v-\max t)} D_v\f$
  double cross_s = 0;          ///< \f$C_s = \sum_v e^{k(s_v-\max s)} D_v\f$
  double student_sum = 0;          ///< \f$\sum_v (s_v - \max s)\f$ (-inf if some \f$s_v = -\infty\f$)
  bool teacher_uncovered = false;  ///< some finite t_v has s_v = -inf: KL(p||q) = +inf
  bool student_uncovered = false;  ///< some finite s_v has t_v = -inf: KL(q||p) = +inf
  double teacher_m1 = 0;  ///< \f$\sum_v e^{k(t_v-\max t)}(t_v - \max t)\f$ (teacher moments, if planned)
  double teacher_m2 = 0;  ///< \f$\sum_v e^{k(t_v-\max t)}(t_v - \max t)^2\f$
  /// The squared Hellinger distance \f$1 - \sum_v \sqrt{p_v q_v}\f$ (if planned; see `RootSums`), in
  /// [0, 1], exactly 0 for identical rows.
  double hellinger = 0;
  /// \f$\sum_v p_v^2/q_v\f$ or \f$\sum_v q_v^2/p_v\f$ (if planned; see `Ratio`), not finite where
  /// an entry's ratio is infinite or where pass 1's float sums of the ratios overflowed; exactly 1
  /// for identical rows.
  double ratio = 0;
  /// The stash (if planned) is read with one kind of reference for every block (false for a row
  /// whose \f$|\kappa\max|\f$ passed \f$2^{12}\f$ part way: its later blocks have maxima, not offsets).
  bool stash_complete = true;
  /// The stash's references are the exponent offsets \f$C_b\f$ (with a fused multiply-add), not
  /// maxima \f$m_b\f$ (`row[v]` \f$= 2^{\kappa(t_v - m_b)}\f$; see `ExpStash`).
  bool stash_offsets = false;
  /// Both rows have the same maximum and sum (as a target formed from the student itself): a later
  /// pass then takes p exactly as it takes q, not from a stash, so p = q stays exact.
  bool same_statistics() const { return t.max == s.max && t.sum == s.sum; }
};

/// The sums pass 1 keeps for the squared Hellinger distance \f$H = 1 - C/\sqrt{AB}\f$ of two rows of
/// exponentials \f$u_v^2\f$ (teacher) and \f$w_v^2\f$ (student), with \f$A = \sum_v u_v^2\f$,
/// \f$B = \sum_v w_v^2\f$ (the rows' own sums) and \f$C = \sum_v u_v w_v\f$. Formed from C, H
/// would cancel for near-identical rows (an error of a few float ulp of 1, whatever the size of H);
/// it is formed instead from \f$E = \sum_v u_v(u_v - w_v) = A - C\f$ and \f$D = \sum_v (u_v -
/// w_v)^2\f$, small where the rows are alike, which float sums keep to a few ulp of their own size
/// (so H keeps a relative error of a small multiple of eps over the rows' relative difference;
/// `tests/f_divergence.test.cpp` checks rows 1e-3 apart):
/// \f$AB/C^2 - 1 = D/C + E(D - E)/C^2\f$, of the order of H itself.
///
/// That holds while the two sides' references move together, as they do for rows that are alike.
/// A rescale that moves one side's halves by more than \f$\sqrt2\f$ relative to the other's
/// (maxima rising differently, as where the rows differ) would recover small sums from large ones
/// (a block swept against one side's stale maximum is dominated by that side): after one, H is
/// \f$1 - C/\sqrt{AB}\f$ from C summed as well, to a few ulp of 1, the accuracy rows that differ
/// need.
struct RootSums {
  double e = 0, d = 0, c = 0;
  bool alike = true;  ///< every rescale so far kept the two sides within sqrt(2) of each other
  /// The sums once every u is multiplied by a and every w by b (A, B: the rows' sums before).
  void scale(double a, double b, double A, double B) {
    constexpr double kRoot2 = 1.4142135623730951;
    if ((A > 0 || B > 0) && (a > kRoot2 * b || b > kRoot2 * a)) alike = false;
    const double ab = a - b;  // sum w (u - w) = C - B = E - D
    const double d_new = a * a * d + 2 * a * ab * (e - d) + ab * ab * B;
    e = a * ab * A + a * b * e;
    d = d_new;
    c *= a * b;
  }
  void add(const RootSums& o) { e += o.e, d += o.d, c += o.c; }
  /// H: \f$1 - (1 + x)^{-1/2}\f$, \f$x = AB/C^2 - 1\f$, while `alike`, else \f$1 - C/\sqrt{AB}\f$
  /// (1 where rounding leaves no positive C).
  double distance(double A, double B) const {
    if (!(c > 0)) return 1.0;
    const double x = d / c + e * (d - e) / (c * c);
    const double h = alike ? -std::expm1(-0.5 * std::log1p(x)) : 1 - c / std::sqrt(A * B);
    return std::min(1.0, std::max(0.0, h));
  }
};

/// Which ratio of squares pass 1 sums when planned (`StatsPlan::ratio`): \f$p^2/q\f$
/// (`TeacherSquared`, Pearson's \f$\chi^2 = \sum_v p_v^2/q_v - 1\f$) or \f$q^2/p\f$
/// (`StudentSquared`, Neyman's). An entry's ratio is one more exponential of the two exponents the
/// sweep already has, \f$2^{2y_t - y_s}\f$ (or \f$2^{2y_s - y_t}\f$), relative to the same
/// references.
enum class Ratio : std::uint8_t { None, TeacherSquared, StudentSquared };

/// One pass-1 block's sums (relative to the block's references and in base-2 units as its sweep
/// returns them; see `row_stats`) and, when the sweep tracked them, its maxima.
template <class T>
struct BlockSums {
  double st = 0, ss = 0, ct = 0, cs = 0, m1 = 0, m2 = 0, lin = 0, ratio = 0;
  RootSums roots;
  T max_t = -std::numeric_limits<T>::infinity(), max_s = -std::numeric_limits<T>::infinity();
};

/// Where pass 1 leaves one side's exponentials when the plan asks (`StatsPlan::stash`): for the
/// teacher, `row[v]` \f$= 2^{\kappa t_v - C_b}\f$ (\f$\kappa\f$ = `exp2_scale(k)`) with \f$C_b\f$ =
/// `ref[b]` the exponent offset of v's block b (blocks of `stats_block`; \f$C_b\f$ is \f$\kappa\f$
/// times a maximum of the row so far, rounded to T, and an exponent may exceed 0 by up to 4), so
/// \f$p_v\f$ = `row[v]` \f$\cdot\, 2^{C_b - \kappa \max t} / S_t\f$: a later pass gets p with a
/// multiply by a per-block factor instead of an exponential (the student likewise gives q). Without
/// a fused multiply-add (`PairStats::stash_offsets` false), `ref[b]` is that maximum \f$m_b\f$
/// itself and `row[v]` \f$= 2^{\kappa(t_v - m_b)}\f$. `ref` holds one entry per block; a stash
/// whose blocks mix the two is not to be read (`PairStats::stash_complete`).
template <class T>
struct ExpStash {
  T* row = nullptr;
  T* ref = nullptr;
};

/// The most pass-1 blocks whose stash references a kernel keeps on its stack (`ExpStash::ref`):
/// rows of up to 256 blocks (512k entries in float with AVX-512) take the stash; longer rows take
/// the exponential again in their later pass.
inline constexpr Index kMaxStashBlocks = 256;

/// `s += x` with the rounding error added to `comp` (Neumaier's compensated sum; the sum is
/// `s + comp`): a double sum carried across a row's blocks keeps about one ulp whatever their number.
KDLOSS_INLINE void compensated_add(double& s, double& comp, double x) {
  const double t = s + x, bp = t - s;
  comp += (s - (t - bp)) + (x - bp);
  s = t;
}

/// \f$\log_2 e\f$ and \f$\ln 2\f$, in double, for the kernels' base-2 exponents and logs.
inline constexpr double kLog2e = 1.4426950408889634;
inline constexpr double kLn2 = 0.69314718055994530942;

/// The base-2 multiplier \f$\kappa = k\log_2 e\f$ of pass 1 and every later pass, rounded to T:
/// \f$e^{k(x - m)} = 2^{\kappa(x - m)}\f$. All passes use this one value, so the probabilities a
/// later pass forms agree with the sums pass 1 took.
template <class T>
KDLOSS_INLINE double exp2_scale(T k) {
  return static_cast<double>(static_cast<T>(static_cast<double>(k) * kLog2e));
}

/// Which side's exponentials pass 1 leaves in a row for a later pass (`ExpStash`).
/// `Roots`: \f$\sqrt{e_t e_s}\f$, whence \f$\sqrt{p_v q_v}\f$ (a plan with `roots`); `Ratio`: the
/// entries' ratios of squares (a plan with a `ratio`), whence \f$p_v^2/q_v\f$ or \f$q_v^2/p_v\f$.
/// For both, `ExpStash::ref` holds both sides' references of block b, at 2b and 2b + 1.
/// `StudentLogits`: the student's logits themselves, copied (no references): a later pass that
/// needs only the logits reads them from the row it overwrites, whose lines pass 1 has then brought
/// into cache while it computed (`log_softmax`).
enum class Stash : std::uint8_t { None, Teacher, Student, Roots, Ratio, StudentLogits };

/// The factor \f$f_1 f_2\f$ that turns block b's stashed exponentials (`ExpStash`) of a side with
/// maximum `top` and log-sum `log_sum` into probabilities: \f$2^y\f$ with
/// \f$y = C_b - \kappa\,\mathrm{top} - \log_2 S\f$ (or, with maxima \f$m_b\f$ for references,
/// \f$\kappa(m_b - \mathrm{top}) - \log_2 S\f$), made in double: \f$f_1\f$ alone while it is a
/// normal T, else \f$f_1 = 2^{lo}\f$ and \f$f_2\f$ the rest, both normal down to \f$2^{2\,lo}\f$, below
/// which every stashed value (\f$\le 2^4\f$) times the factor rounds to 0.
template <class T>
struct StashFactor {
  T f1 = T(1), f2 = T(1);
  static StashFactor of(T ref, T top, bool offsets, double kappa, double log_sum) {
    return at(exponent(ref, top, offsets, kappa, log_sum));
  }
  /// For a `Stash::Roots` block: \f$\sqrt{f_t f_s}\f$, the mean of the two sides' exponents.
  static StashFactor of_roots(const T* refs, const PairStats<T>& st, double kappa, double lst, double lss) {
    return at((exponent(refs[0], st.t.max, st.stash_offsets, kappa, lst) +
               exponent(refs[1], st.s.max, st.stash_offsets, kappa, lss)) / 2);
  }
  /// The exponent of a `Stash::Ratio` block's factor, \f$2y_t - y_s\f$ (`TeacherSquared`) or
  /// \f$2y_s - y_t\f$, from the two sides' exponents y above. Unlike the other stashes', whose
  /// values are at most \f$2^4\f$, a stashed ratio may be up to the largest float, so the
  /// factor is applied only where this exponent lies in [`lowest_exponent`, `highest_exponent`].
  static double ratio_exponent(const T* refs, const PairStats<T>& st, bool teacher_squared, double kappa,
                               double lst, double lss) {
    const double yt = exponent(refs[0], st.t.max, st.stash_offsets, kappa, lst);
    const double ys = exponent(refs[1], st.s.max, st.stash_offsets, kappa, lss);
    return teacher_squared ? 2 * yt - ys : 2 * ys - yt;
  }
  /// The bound lo of `at`'s first factor (float -120, double -1016).
  static constexpr double kLow = -(std::numeric_limits<T>::max_exponent - 8);
  /// The least exponent `at` represents (as two normal factors), 2 lo.
  static constexpr double lowest_exponent() { return 2 * kLow; }
  /// The largest exponent `at` represents (one normal factor).
  static constexpr double highest_exponent() { return std::numeric_limits<T>::max_exponent - 1; }
  /// y itself (see above).
  static double exponent(T ref, T top, bool offsets, double kappa, double log_sum) {
    const double r = static_cast<double>(ref), m = static_cast<double>(top);
    return (offsets ? -std::fma(kappa, m, -r) : kappa * (r - m)) - log_sum * kLog2e;
  }
  /// \f$f_1 f_2\cdot\f$`scale` as one T where that product is a normal T, so a pass applies the
  /// factor and a gradient's scale in one multiply; else 0 (the pass applies them apart).
  T folded(T scale) const {
    const double x = static_cast<double>(f1) * static_cast<double>(f2) * static_cast<double>(scale);
    return x >= static_cast<double>(std::numeric_limits<T>::min()) && x <= static_cast<double>(std::numeric_limits<T>::max())
               ? static_cast<T>(x)
               : T(0);
  }
  /// The factor \f$2^y\f$, split as above.
  static StashFactor at(double y) {
    constexpr double lo = kLow;
    return {static_cast<T>(std::exp2(std::max(y, lo))), static_cast<T>(y < lo ? std::exp2(std::max(y, 2 * lo) - lo) : 1.0)};
  }
};

/// The pass after pass 1 over a row of n entries that reads a stash: calls
/// `block(folded, j0, j1, f1, f2)` for each pass-1 block [j0, j1) (`block_size` entries), the last
/// block first (the blocks pass 1 left in cache last), with `factor_of(b)` block b's
/// `StashFactor`. Where `Fold` and the factor times `scale` is a normal T (`StashFactor::folded`),
/// `folded` is `std::true_type`, f1 that product and f2 = 1: the block applies factor and scale in
/// one multiply. Otherwise `folded` is `std::false_type` and f1, f2 are the factor's two parts.
template <bool Fold, class T, class FactorOf, class Block>
KDLOSS_INLINE void stash_blocks_reverse(Index n, Index block_size, T scale, FactorOf&& factor_of, Block&& block) {
  for (Index b = (n - 1) / block_size; b >= 0; --b) {
    const StashFactor<T> f = factor_of(b);
    const Index j0 = b * block_size, j1 = std::min(n, j0 + block_size);
    if constexpr (Fold) {
      if (const T scaled = f.folded(scale); scaled != T(0)) {
        block(std::true_type{}, j0, j1, scaled, T(1));
        continue;
      }
    }
    block(std::false_type{}, j0, j1, f.f1, f.f2);
  }
}

/// What pass 1 accumulates (compile-time, so unused work is not compiled).
template <bool Teacher, bool Student, bool CrossT, bool CrossS, bool StudentSum = false,
          bool TeacherMoments = false, Stash StashSide = Stash::None, bool Roots = false,
          Ratio RatioOf = Ratio::None>
struct StatsPlan {
  static constexpr bool teacher = Teacher;
  static constexpr bool student = Student;
  static constexpr bool cross_t = CrossT;
  static constexpr bool cross_s = CrossS;
  static constexpr bool student_sum = StudentSum;  ///< also \f$\sum_v (s_v - \max s)\f$
  /// also the first two moments of the teacher logits under p (AdaptiveKL's head estimate)
  static constexpr bool teacher_moments = TeacherMoments;
  /// also write one side's exponentials to a row (see `ExpStash`)
  static constexpr Stash stash = StashSide;
  /// also the squared Hellinger distance (`RootSums`): each side's exponential is then taken as the
  /// square of \f$2^{y/2}\f$, and the root of an entry is the product of its two halves (two
  /// exponentials per entry, not three; a square is within 6 ulp of the exponential, measured over
  /// [-120, 64] on every path, against 2 to 3 ulp)
  static constexpr bool roots = Roots;
  /// also the sum of a ratio of squares (`Ratio`, `PairStats::ratio`)
  static constexpr Ratio ratio = RatioOf;
  static_assert(!StudentSum || Student, "the student sum needs the student row");
  static_assert(StashSide != Stash::Teacher || Teacher, "the teacher stash needs the teacher row");
  static_assert((StashSide != Stash::Student && StashSide != Stash::StudentLogits) || Student,
                "the student stash needs the student row");
  static_assert(StashSide != Stash::Roots || Roots, "the roots' stash needs the roots");
  static_assert(StashSide != Stash::Ratio || RatioOf != Ratio::None, "the ratios' stash needs a ratio");
  static_assert(RatioOf == Ratio::None || (Teacher && Student && !Roots), "a ratio takes both sides' exponentials");
  static_assert(!Roots || !(CrossT || CrossS || TeacherMoments), "the roots plan takes half exponents alone");
  static_assert(!(CrossT || CrossS || Roots) || (Teacher && Student), "cross sums need both rows");
};

/// Accumulators per sum in pass 1's block sweep: four, or two for a plan with more sums than
/// four of each would keep in registers (AdaptiveKL's teacher moments).
template <class Plan>
constexpr int stats_accumulators() {
  return Plan::teacher_moments ? 2 : 4;
}

/// Entries per pass-1 block for a batch type B and a plan (the unit of online rescaling): 32
/// vectors per accumulator, so a float accumulator sums at most 32 terms.
template <class B, class Plan>
constexpr Index stats_block() {
  return Index{32} * stats_accumulators<Plan>() * B::size;
}

/// Pass 1: reads each logit of t and s once from memory, in blocks of `stats_block`. The first
/// block's maxima come from a max-only sweep; every later block takes its exponentials relative to
/// the maxima of the blocks before it and finds its own maxima in the same sweep (one read of each
/// logit, in a loop that computes while it streams). A block whose maxima rise more than 4 in
/// base-2 exponent above the earlier ones is swept again from L1 relative to its own. An exponent
/// y rounded to T is off by up to ulp(y)/2, so \f$2^y\f$ is off by up to
/// \f$\ln 2\,\mathrm{ulp}(y)/2\f$ relative: at most 0.7 eps for y < 4, where exponents up to 64
/// would put 11 to 22 eps into the row's largest terms (bench/RESULTS.md, twenty-second session).
/// A row whose maxima climb by more than 4 a block sweeps most blocks twice; a row in no
/// particular order, a handful. The running maxima move at most once per block, and the rescaling
/// of the accumulated sums costs O(1) per block, not per element. The sums across blocks are
/// compensated double sums (`compensated_add`), which keeps a double row's sum within about one
/// ulp of its terms.
///
/// The exponent of x is one fused multiply-subtract, \f$y = \kappa x - C\f$ with \f$\kappa\f$ =
/// `exp2_scale(k)` and \f$C\f$ the reference maximum m times \f$\kappa\f$, rounded to T; the block's
/// sums are brought to m itself afterwards, in double, by dividing them by the exponential the sweep
/// took at m, \f$2^{\kappa m - C}\f$ as rounded (O(1)), so m adds exactly 1.
/// A row whose \f$|\kappa m|\f$ exceeds \f$2^{12}\f$ (logits in the thousands, or huge ones at a tiny
/// temperature), or a build without a fused multiply-add (which the exact product of y needs),
/// takes \f$y = \kappa(x - m)\f$ instead; in the first case each block's maxima come from a
/// max-only sweep first. Sums are float within a block (`stats_accumulators` per lane, <= 32 terms
/// each) and double across blocks, which keeps float rows of 150k entries within a few ulp.
///
/// -inf logits are legal (masked vocabulary) and contribute nothing; NaN and +inf poison the sums
/// so `SideStats::check` sees them. Tail lanes read as -inf.
template <class Arch, class Plan, class T, class TeacherRow, class StudentRow>
PairStats<T> row_stats(const TeacherRow& teacher, const StudentRow& srow, Index n, T k,
                       const ExpStash<T>& stash = {}) {
  static_assert(!Plan::student_sum || std::is_same<StudentRow, PlainRow<T>>::value,
                "the student sum reads a plain student row");
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  constexpr Index kBlock = stats_block<B, Plan>();
  constexpr int kAcc = stats_accumulators<Plan>();
  constexpr T kInf = std::numeric_limits<T>::infinity();
  constexpr T kBig = std::numeric_limits<T>::max();
  // -inf maxima are replaced by the lowest finite value before subtracting, so a row that starts
  // with masked entries gives exp(-inf) = 0 instead of exp(-inf - -inf) = NaN.
  auto finite_floor = [](T m) { return std::max(m, std::numeric_limits<T>::lowest()); };

  // The exponent y = kappa x - C needs the exact product inside a fused multiply-add.
  constexpr bool kCanFuse = Arch::fused_multiply_add;

  PairStats<T> r;
  T mt = -kInf, ms = -kInf;
  double st = 0, ss = 0, ct = 0, cs = 0, lin = 0, m1 = 0, m2 = 0, ratio = 0;
  double st_comp = 0, ss_comp = 0;  // the rounding errors of st and ss (`compensated_add`)
  RootSums roots;
  constexpr bool kTeacherSquared = Plan::ratio == Ratio::TeacherSquared;
  // exp(k (x - max)) = 2^(kappa (x - max)): one multiplier folds 1/tau and log2(e).
  const double kappa = exp2_scale(k);
  const B kb = B::splat(static_cast<T>(kappa));

  // Moves the reference maxima to (nmt, nms): D' = D - delta, and every accumulated term is
  // rescaled to the new maxima.
  auto move_to = [&](T nmt, T nms) {
    const double dt = static_cast<double>(finite_floor(nmt)) - static_cast<double>(finite_floor(mt));
    const double ds = static_cast<double>(finite_floor(nms)) - static_cast<double>(finite_floor(ms));
    const double delta = dt - ds;
    // The roots' halves scale by the square roots of the sums' factors (before the sums do).
    if constexpr (Plan::roots) {
      if (dt > 0 || ds > 0)
        roots.scale(dt > 0 ? std::exp2(-kappa * dt / 2) : 1.0, ds > 0 ? std::exp2(-kappa * ds / 2) : 1.0, st, ss);
    }
    // A ratio of squares scales by the square of its numerator's factor over its denominator's,
    // taken as one exponential (in double, where a ratio that overflows is a true +inf).
    if constexpr (Plan::ratio != Ratio::None) {
      if (ratio != 0 && (dt > 0 || ds > 0)) {
        const double dn = std::max(kTeacherSquared ? dt : ds, 0.0), dd = std::max(kTeacherSquared ? ds : dt, 0.0);
        ratio *= std::exp2(-kappa * (2 * dn - dd));
      }
    }
    if (st > 0 && (dt > 0 || delta != 0)) {
      const double sc = dt > 0 ? std::exp2(-kappa * dt) : 1.0;
      ct = sc * (ct - st * delta);
      if constexpr (Plan::teacher_moments) {  // (t - m') = (t - m) - dt
        m2 = sc * (m2 - 2 * dt * m1 + dt * dt * st);
        m1 = sc * (m1 - dt * st);
      }
      st *= sc, st_comp *= sc;
    }
    if (ss > 0 && (ds > 0 || delta != 0)) {
      const double sc = ds > 0 ? std::exp2(-kappa * ds) : 1.0;
      cs = sc * (cs - ss * delta);
      ss *= sc, ss_comp *= sc;
    }
    mt = nmt;
    ms = nms;
  };

  // The maxima of the entries in [j0, j1), four chains per side (NaN is skipped; the sums carry it).
  auto block_max = [&](Index j0, Index j1) {
    B bt[4] = {B::splat(-kInf), B::splat(-kInf), B::splat(-kInf), B::splat(-kInf)};
    B bs[4] = {B::splat(-kInf), B::splat(-kInf), B::splat(-kInf), B::splat(-kInf)};
    auto chain = [&](Index j, auto lanes, int a) {
      if constexpr (Plan::teacher) bt[a] = max(teacher.template load<B>(j, lanes), bt[a]);
      if constexpr (Plan::student) bs[a] = max(srow.template load<B>(j, lanes), bs[a]);
    };
    Index j = j0;
    for (; j + 4 * W <= j1; j += 4 * W) {
      chain(j, Full{}, 0);
      chain(j + W, Full{}, 1);
      chain(j + 2 * W, Full{}, 2);
      chain(j + 3 * W, Full{}, 3);
    }
    sweep<W>(j, j1, [&](Index jj, auto lanes) { chain(jj, lanes, 0); });
    BlockSums<T> b;
    if constexpr (Plan::teacher) b.max_t = hmax(max(max(bt[0], bt[1]), max(bt[2], bt[3])));
    if constexpr (Plan::student) b.max_s = hmax(max(max(bs[0], bs[1]), max(bs[2], bs[3])));
    return b;
  };

  // One block's sums relative to the references rt, rs, in base-2 units. `tracked`: the sweep also
  // finds the block's maxima and, with a fused multiply-add, takes the exponent y = kappa x - C
  // (rt, rs are C); otherwise y = kappa (x - m) (rt, rs are the maxima m).
  auto sweep_block = [&](Index j0, Index j1, auto tracked, auto bounded, T rt, T rs) {
    constexpr bool kTracked = decltype(tracked)::value, kFused = kTracked && kCanFuse;
    constexpr bool kBounded = decltype(bounded)::value;
    // The exponential, and the bounds on the cross sums' log ratios, only in the bounded sweep (see
    // `sweep` below).
    auto exp2 = [](B y) { return kBounded ? simd::exp2_nonpositive(y) : simd::exp2_unbounded(y); };
    auto above = [](B d) { return kBounded ? max(d, B::splat(-kBig)) : d; };
    auto below = [](B d) { return kBounded ? min(d, B::splat(kBig)) : d; };
    // Local copies of the rows and accumulators only: a store to the stash row may alias whatever
    // the closure reaches by reference, which would otherwise be reloaded (or kept in memory) at
    // every vector.
    [[maybe_unused]] const TeacherRow trow = teacher;
    [[maybe_unused]] const StudentRow sr = srow;
    [[maybe_unused]] T* const stash_row = stash.row;
    const T msf = finite_floor(ms);
    const B rtb = B::splat(rt), rsb = B::splat(rs), msb = B::splat(msf), mtb = B::splat(finite_floor(mt));
    auto exponent = [&](B x, B ref) { return kFused ? fms(x, kb, ref) : (x - ref) * kb; };
    // The roots plan's half exponent y/2, with kappa and the reference halved (exactly: the same
    // value as y times 1/2, one multiply fewer).
    const T half = T(0.5);
    [[maybe_unused]] const B kbh = kb * B::splat(half), rtbh = B::splat(rt * half), rsbh = B::splat(rs * half);
    [[maybe_unused]] auto half_exp = [&](B x, B ref, B ref_half) {
      return exp2(kFused ? fms(x, kbh, ref_half) : (x - ref) * kbh);
    };
    const B zero = B::splat(0);
    B ft[4] = {zero, zero, zero, zero}, fs[4] = {zero, zero, zero, zero};
    B fct[4] = {zero, zero, zero, zero}, fcs[4] = {zero, zero, zero, zero};
    B fsum[4] = {zero, zero, zero, zero};
    B fm1[4] = {zero, zero, zero, zero}, fm2[4] = {zero, zero, zero, zero};
    B fre[2] = {zero, zero}, frd[2] = {zero, zero}, frc[2] = {zero, zero};
    B fr[4] = {zero, zero, zero, zero};
    B bt[2] = {B::splat(-kInf), B::splat(-kInf)}, bs[2] = {B::splat(-kInf), B::splat(-kInf)};
    auto body = [&](Index j, auto lanes, int a) {
      B yt = zero, ys = zero, et = zero, es = zero;
      [[maybe_unused]] B ht = zero, hs = zero;
      if constexpr (Plan::teacher) {
        const B x = trow.template load<B>(j, lanes);
        if constexpr (kTracked) bt[a & 1] = max(x, bt[a & 1]);
        if constexpr (Plan::roots) {
          ht = half_exp(x, rtb, rtbh), et = ht * ht;
        } else {
          yt = exponent(x, rtb);
          et = exp2(yt);
        }
        ft[a] = ft[a] + et;
        if constexpr (Plan::stash == Stash::Teacher) store(stash_row + j, et, lanes);
        if constexpr (Plan::teacher_moments) {
          // In logit units from the maximum (exactly 0 at it). -inf entries (weight 0) are clamped
          // so their product stays 0 rather than NaN.
          const B xc = kBounded ? max(x - mtb, B::splat(T(-1e15))) : x - mtb;
          const B ex = et * xc;
          fm1[a] = fm1[a] + ex;
          fm2[a] = fma(ex, xc, fm2[a]);
        }
      }
      if constexpr (Plan::student) {
        const B x = sr.template load<B>(j, lanes);
        if constexpr (kTracked) bs[a & 1] = max(x, bs[a & 1]);
        if constexpr (Plan::roots) {
          hs = half_exp(x, rsb, rsbh), es = hs * hs;
        } else {
          ys = exponent(x, rsb);
          es = exp2(ys);
        }
        fs[a] = fs[a] + es;
        if constexpr (Plan::stash == Stash::Student) store(stash_row + j, es, lanes);
        if constexpr (Plan::stash == Stash::StudentLogits) store(stash_row + j, x, lanes);
        // Tail lanes read as the maximum here (they must add 0, not -inf).
        if constexpr (Plan::student_sum) fsum[a] = fsum[a] + (load<B>(sr.p + j, lanes, msf) - msb);
      }
      if constexpr (Plan::cross_t || Plan::cross_s) {
        // d = +inf: teacher finite, student -inf. d = -inf: the reverse. NaN: both -inf (or a tail
        // lane). The clamps map NaN and the infinity that meets a zero weight to a finite value,
        // so 0 * inf never happens; the infinity that meets a nonzero weight (or an underflowed
        // one: 0 * inf is NaN) makes the sum non-finite, which is how the KL learns it is +inf.
        const B d = yt - ys;
        if constexpr (Plan::cross_t) fct[a] = fma(et, above(d), fct[a]);
        if constexpr (Plan::cross_s) fcs[a] = fma(es, below(d), fcs[a]);
      }
      if constexpr (Plan::roots) {  // (see RootSums; two accumulators each, which 32 registers hold)
        const B d = ht - hs, root = ht * hs;
        fre[a & 1] = fma(ht, d, fre[a & 1]);
        frd[a & 1] = fma(d, d, frd[a & 1]);
        frc[a & 1] = frc[a & 1] + root;
        if constexpr (Plan::stash == Stash::Roots) store(stash_row + j, root, lanes);
      }
      if constexpr (Plan::ratio != Ratio::None) {
        // 2^(2 y_t - y_s) (or 2^(2 y_s - y_t)): the same exponential as the sides' own, so a ratio
        // of equal exponents is bit for bit their exponential. The bounded sweep bounds the
        // divisor's exponent, so an entry masked on both sides adds 2^-inf = 0 (not 2^NaN).
        const B y = fms(B::splat(T(2)), kTeacherSquared ? yt : ys, above(kTeacherSquared ? ys : yt));
        const B rr = kBounded ? simd::exp2(y) : simd::exp2_unbounded(y);
        fr[a] = fr[a] + rr;
        if constexpr (Plan::stash == Stash::Ratio) store(stash_row + j, rr, lanes);
      }
    };
    Index j = j0;
    for (; j + 4 * W <= j1; j += 4 * W) {
      body(j, Full{}, 0);
      body(j + W, Full{}, 1);
      body(j + 2 * W, Full{}, 2 % kAcc);
      body(j + 3 * W, Full{}, 3 % kAcc);
    }
    sweep<W>(j, j1, [&](Index jj, auto lanes) { body(jj, lanes, 0); });
    auto total = [](const B(&f)[4]) { return hsum_wide((f[0] + f[1]) + (f[2] + f[3])); };
    BlockSums<T> sums;
    if constexpr (Plan::teacher) sums.st = total(ft);
    if constexpr (Plan::student) sums.ss = total(fs);
    if constexpr (Plan::cross_t) sums.ct = total(fct);
    if constexpr (Plan::cross_s) sums.cs = total(fcs);
    if constexpr (Plan::roots)
      sums.roots = {hsum_wide(fre[0] + fre[1]), hsum_wide(frd[0] + frd[1]), hsum_wide(frc[0] + frc[1])};
    if constexpr (Plan::teacher_moments) sums.m1 = total(fm1), sums.m2 = total(fm2);
    if constexpr (Plan::ratio != Ratio::None) sums.ratio = total(fr);
    // The block's sum is relative to the maximum it used: keep the absolute part aside.
    if constexpr (Plan::student_sum) sums.lin = total(fsum) + static_cast<double>(j1 - j0) * static_cast<double>(msf);
    if constexpr (kTracked && Plan::teacher) sums.max_t = hmax(max(bt[0], bt[1]));
    if constexpr (kTracked && Plan::student) sums.max_s = hmax(max(bs[0], bs[1]));
    return sums;
  };

  // The fused exponent while both |C| stay below 2^12: then |delta| <= ulp(C)/2 <= 2^-12 (float),
  // so the exponents still exceed 0 by at most kRise (below) plus a trifle, and 2^-delta is a short
  // series. Larger logits (thousands of nats) take the other exponent.
  constexpr double kFusedLimit = 4096;
  auto fusable = [&](T m) { return m == -kInf || std::fabs(kappa * static_cast<double>(m)) <= kFusedLimit; };
  auto fused_now = [&] { return kCanFuse && (!Plan::teacher || fusable(mt)) && (!Plan::student || fusable(ms)); };
  // A sweep's reference for a side at maximum m: C = kappa m rounded to T for the fused exponent
  // (0 for a side still at -inf, which has only zeros to sum relative to anything finite), else m.
  auto ref_of = [&](T m, bool fused) {
    if (!fused) return finite_floor(m);
    return m == -kInf ? T(0) : static_cast<T>(kappa * static_cast<double>(m));
  };
  // delta = kappa m - C, exact through fma in double as in float: exponentials relative to C are
  // 2^delta times those relative to m.
  auto delta_of = [&](T m) {
    return m == -kInf ? 0.0 : std::fma(kappa, static_cast<double>(m), -static_cast<double>(ref_of(m, true)));
  };
  // What the sweep itself added for an entry at the maximum m, 2^(kappa m - C) = 2^delta as the
  // kernel's own exponential rounds it (1 for a side at -inf, which has nothing to scale).
  auto own_at_max = [&](T m) {
    if (m == -kInf) return 1.0;
    const B y = fms(B::splat(m), kb, B::splat(ref_of(m, true)));
    if constexpr (Plan::roots) {  // as the sweep's half exponent (y/2 exactly) and its square
      const B h = simd::exp2_nonpositive(y * B::splat(T(0.5)));
      return static_cast<double>(hmax(h * h));
    } else {
      return static_cast<double>(hmax(simd::exp2_nonpositive(y)));
    }
  };
  // Takes in the sums of the block at j0, swept relative to the current maxima (`fused`: to their
  // references C): brought to the maxima, in logit units, kappa (t - max t) = y_t - delta_t and
  // kappa D = (y_t - y_s) - (delta_t - delta_s). A fused block's sums are divided by what the
  // sweep added at the maximum (2^delta within a rounding, |delta| <= 2^-12) rather than multiplied
  // by the exact 2^-delta, so the maximum adds exactly 1, as it does to an unfused sweep: a row
  // whose only entry is its maximum sums to exactly 1, and its p is exactly 1 (as log p = 0 says).
  auto add = [&](Index j0, BlockSums<T> b, bool fused) {
    const double dt = fused && Plan::teacher ? delta_of(mt) : 0.0;
    const double ds = fused && Plan::student ? delta_of(ms) : 0.0;
    const double et = fused && Plan::teacher ? own_at_max(mt) : 1.0;
    const double es = fused && Plan::student ? own_at_max(ms) : 1.0;
    const double dd = dt - ds, inv = 1 / kappa;
    if constexpr (Plan::teacher_moments) b.m1 /= et, b.m2 /= et;  // already relative to max t
    if constexpr (Plan::cross_t) b.ct = (b.ct - dd * b.st) * inv / et;
    if constexpr (Plan::cross_s) b.cs = (b.cs - dd * b.ss) * inv / es;
    // The halves were taken at sqrt(et) and sqrt(es) (equal for identical rows).
    if constexpr (Plan::roots) {
      if (et != 1.0 || es != 1.0) b.roots.scale(1 / std::sqrt(et), 1 / std::sqrt(es), b.st, b.ss);
      roots.add(b.roots);
    }
    // 2^(2 delta_t - delta_s) as the sweep's own exponentials round (exactly et for equal ones).
    if constexpr (Plan::ratio != Ratio::None) {
      const double en = kTeacherSquared ? et : es, ed = kTeacherSquared ? es : et;
      ratio += b.ratio / (en * en / ed);
    }
    compensated_add(st, st_comp, b.st / et);
    compensated_add(ss, ss_comp, b.ss / es);
    ct += b.ct, cs += b.cs, m1 += b.m1, m2 += b.m2, lin += b.lin;
    if constexpr (Plan::stash == Stash::Roots || Plan::stash == Stash::Ratio) {
      stash.ref[2 * (j0 / kBlock)] = ref_of(mt, fused);
      stash.ref[2 * (j0 / kBlock) + 1] = ref_of(ms, fused);
    } else if constexpr (Plan::stash == Stash::Teacher || Plan::stash == Stash::Student) {
      const T m = Plan::stash == Stash::Teacher ? mt : ms;
      stash.ref[j0 / kBlock] = ref_of(m, fused);
    }
    if constexpr (Plan::stash != Stash::None) {
      if (j0 == 0) r.stash_offsets = fused;
      r.stash_complete = r.stash_complete && fused == r.stash_offsets;
    }
  };
  // A block's sweep. Where the exponential has an unbounded form (`simd::has_exp2_unbounded`), the
  // block is swept first without the bounds that map -inf logits to a zero exponential and keep the
  // cross sums' 0 * inf from NaN: three instructions fewer per pair of entries. Each term of the
  // unbounded sweep is the bounded sweep's, bit for bit, or not finite (a -inf logit, whose
  // exponential is 0 or NaN by processor, meeting a cross sum or a moment; NaN or +inf logits; a
  // block whose maxima rise past the float range), so sums that come out finite are the bounded
  // sweep's. Others make the block, and the rest of the row, take the bounded sweep (a masked row
  // pays one block twice, not every block).
  bool unbounded = simd::has_exp2_unbounded<B>;
  auto finite = [](const BlockSums<T>& b) {
    return std::isfinite(b.st + b.ss + b.ct + b.cs + b.m1 + b.m2 + b.roots.e + b.roots.d + b.roots.c + b.ratio);
  };
  auto sweep = [&](Index j0, Index j1, auto tracked, T rt, T rs) {
    if constexpr (simd::has_exp2_unbounded<B>) {
      if (unbounded) {
        const BlockSums<T> b = sweep_block(j0, j1, tracked, std::false_type{}, rt, rs);
        if (finite(b)) return b;
        unbounded = false;
      }
    }
    return sweep_block(j0, j1, tracked, std::true_type{}, rt, rs);
  };
  // Sweeps the block relative to the current maxima (which contain its own).
  auto sweep_at_max = [&](Index j0, Index j1) {
    const bool fused = fused_now();
    if (fused)
      add(j0, sweep(j0, j1, std::true_type{}, ref_of(mt, true), ref_of(ms, true)), true);
    else
      add(j0, sweep(j0, j1, std::false_type{}, ref_of(mt, false), ref_of(ms, false)), false);
  };

  // A later block's exponents may exceed 0 by up to kRise (base 2), where rounding y costs its
  // exponential at most 0.7 eps (see above); a block whose maxima rise further (the first blocks
  // after masked ones, or a rise of 2.8 nats at tau = 1) is swept again relative to its own maxima.
  constexpr double kRise = 4;
  auto too_high = [&](T top, T m) {
    return kappa * (static_cast<double>(top) - static_cast<double>(finite_floor(m))) > kRise;
  };
  for (Index j0 = 0; j0 < n; j0 += kBlock) {
    const Index j1 = std::min(n, j0 + kBlock);
    if (j0 == 0 || (kCanFuse && !fused_now())) {  // the first block; a row beyond the fused range
      const BlockSums<T> m = block_max(j0, j1);
      move_to(std::max(mt, m.max_t), std::max(ms, m.max_s));
      sweep_at_max(j0, j1);
      continue;
    }
    // Relative to the maxima of the blocks before it, finding its own.
    const BlockSums<T> block = sweep(j0, j1, std::true_type{}, ref_of(mt, kCanFuse), ref_of(ms, kCanFuse));
    const T nmt = std::max(mt, block.max_t), nms = std::max(ms, block.max_s);
    if (too_high(block.max_t, mt) || too_high(block.max_s, ms)) {
      move_to(nmt, nms);
      sweep_at_max(j0, j1);
    } else {
      add(j0, block, kCanFuse);
      move_to(nmt, nms);
    }
  }
  // From the sums before the clamp below (identical rows: E = D = 0, and H = 0 exactly).
  if constexpr (Plan::roots) r.hellinger = roots.distance(st, ss);
  // Sum p^2/q = (P / S_t)(S_s / S_t) from the sums before the clamp below (identical rows: P = S_t =
  // S_s bit for bit, and the ratio is exactly 1).
  if constexpr (kTeacherSquared) r.ratio = ratio / st * (ss / st);
  if constexpr (Plan::ratio == Ratio::StudentSquared) r.ratio = ratio / ss * (st / ss);
  // The compensations, after the ratio and the Hellinger distance above, which read st and ss
  // alike (identical rows: the same compensations, bit for bit).
  st += st_comp, ss += ss_comp;
  // Each maximum adds exactly 1 when its block's exponentials are relative to it; relative to an
  // earlier maximum it adds 1 within rounding, which may leave a sum a few ulp below 1. The exact
  // sum is >= 1: so is this one (log S >= 0, every p <= 1).
  if (st < 1 && mt > -kInf) st = 1;
  if (ss < 1 && ms > -kInf) ss = 1;
  r.t = {mt, st};
  r.s = {ms, ss};
  r.cross_t = ct;
  r.cross_s = cs;
  r.teacher_m1 = m1;
  r.teacher_m2 = m2;
  if constexpr (Plan::student_sum) r.student_sum = lin - static_cast<double>(n) * static_cast<double>(finite_floor(ms));
  // A KL sum that is not finite met an entry one side masks and the other does not (see above).
  if constexpr (Plan::cross_t) r.teacher_uncovered = !std::isfinite(ct);
  if constexpr (Plan::cross_s) r.student_uncovered = !std::isfinite(cs);
  return r;
}

/// Pass 1 with the student row read straight from memory.
template <class Arch, class Plan, class T, class TeacherRow>
PairStats<T> row_stats(const TeacherRow& teacher, const T* student, Index n, T k,
                       const ExpStash<T>& stash = {}) {
  return row_stats<Arch, Plan>(teacher, PlainRow<T>{student}, n, k, stash);
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
