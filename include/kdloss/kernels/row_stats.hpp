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
};

/// One pass-1 block's sums (relative to the maxima the block used) and, when the sweep tracked them,
/// its maxima.
template <class T>
struct BlockSums {
  double st = 0, ss = 0, ct = 0, cs = 0, m1 = 0, m2 = 0, lin = 0;
  T max_t = -std::numeric_limits<T>::infinity(), max_s = -std::numeric_limits<T>::infinity();
  T dpos = -std::numeric_limits<T>::infinity();  ///< the largest D (+inf: a teacher entry uncovered)
  T dneg = -std::numeric_limits<T>::infinity();  ///< the largest -D (+inf: a student entry uncovered)
};

/// Where pass 1 leaves one side's exponentials when the plan asks (`StatsPlan::stash`): for the
/// teacher, `row[v]` \f$= 2^{k \log_2 e\,(t_v - r_b)}\f$ with \f$r_b\f$ = `ref[b]` the reference
/// maximum of v's block b (blocks of `stats_block`; \f$r_b \le \max t\f$, an exponent may exceed 0
/// by up to 64), so \f$p_v\f$ = `row[v]` \f$\cdot\, 2^{k \log_2 e\,(r_b - \max t)} / S_t\f$: a
/// later pass gets p with a multiply by a per-block factor instead of an exponential (the student
/// likewise gives q). `ref` holds one entry per block.
template <class T>
struct ExpStash {
  T* row = nullptr;
  T* ref = nullptr;
};

/// Entries per pass-1 block for a batch type B (the unit of online rescaling).
template <class B>
constexpr Index stats_block() {
  return Index{64} * B::size;
}

/// Which side's exponentials pass 1 leaves in a row for a later pass (`ExpStash`).
enum class Stash : std::uint8_t { None, Teacher, Student };

/// What pass 1 accumulates (compile-time, so unused work is not compiled).
template <bool Teacher, bool Student, bool CrossT, bool CrossS, bool StudentSum = false,
          bool TeacherMoments = false, Stash StashSide = Stash::None>
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
  static_assert(!StudentSum || Student, "the student sum needs the student row");
  static_assert(StashSide != Stash::Teacher || Teacher, "the teacher stash needs the teacher row");
  static_assert(StashSide != Stash::Student || Student, "the student stash needs the student row");
  static_assert(!(CrossT || CrossS) || (Teacher && Student), "cross sums need both rows");
};

/// Pass 1: reads each logit of t and s once from memory, in blocks of 64 vectors. The first
/// block's maxima come from a max-only sweep; every later block takes its exponentials relative to
/// the maxima of the blocks before it and finds its own maxima in the same sweep (one read of
/// each logit, in a loop that computes while it streams; a block whose maxima rise more than 64
/// in base-2 exponent, rare, is swept again from L1 relative to them). The running maxima move at
/// most once per block, and the rescaling of the accumulated sums costs O(1) per block, not per
/// element. Sums are float within a block (two accumulators per lane,
/// <= 32 terms each) and double across blocks, which keeps float rows of 150k entries within a few
/// ulp.
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
  constexpr Index kBlock = stats_block<B>();
  constexpr T kInf = std::numeric_limits<T>::infinity();
  constexpr T kBig = std::numeric_limits<T>::max();
  // -inf maxima are replaced by the lowest finite value before subtracting, so a row that starts
  // with masked entries gives exp(-inf) = 0 instead of exp(-inf - -inf) = NaN.
  auto finite_floor = [](T m) { return std::max(m, std::numeric_limits<T>::lowest()); };

  PairStats<T> r;
  T mt = -kInf, ms = -kInf;
  double st = 0, ss = 0, ct = 0, cs = 0, lin = 0, m1 = 0, m2 = 0;
  T dpos = -kInf, dneg = -kInf;
  // exp(k (x - max)) = 2^(k log2(e) (x - max)): one multiplier folds 1/tau and log2(e).
  const B kb = B::splat(static_cast<T>(static_cast<double>(k) * 1.4426950408889634));

  const double kd = static_cast<double>(k);
  // Moves the reference maxima to (nmt, nms): D' = D - delta, and every accumulated term is
  // rescaled to the new maxima.
  auto move_to = [&](T nmt, T nms) {
    const double dt = static_cast<double>(finite_floor(nmt)) - static_cast<double>(finite_floor(mt));
    const double ds = static_cast<double>(finite_floor(nms)) - static_cast<double>(finite_floor(ms));
    const double delta = dt - ds;
    if (st > 0 && (dt > 0 || delta != 0)) {
      const double sc = dt > 0 ? std::exp(-kd * dt) : 1.0;
      ct = sc * (ct - st * delta);
      if constexpr (Plan::teacher_moments) {  // (t - m') = (t - m) - dt
        m2 = sc * (m2 - 2 * dt * m1 + dt * dt * st);
        m1 = sc * (m1 - dt * st);
      }
      st *= sc;
    }
    if (ss > 0 && (ds > 0 || delta != 0)) {
      const double sc = ds > 0 ? std::exp(-kd * ds) : 1.0;
      cs = sc * (cs - ss * delta);
      ss *= sc;
    }
    mt = nmt;
    ms = nms;
  };

  // The first block's maxima come from a max-only sweep (four chains per side); the blocks after
  // it take their exponentials relative to the maxima so far, and find their own maxima on the way.
  {
    const Index j1 = std::min(n, kBlock);
    B bt[4] = {B::splat(-kInf), B::splat(-kInf), B::splat(-kInf), B::splat(-kInf)};
    B bs[4] = {B::splat(-kInf), B::splat(-kInf), B::splat(-kInf), B::splat(-kInf)};
    auto block_max = [&](Index j, auto lanes, int a) {
      if constexpr (Plan::teacher) bt[a] = max(teacher.template load<B>(j, lanes), bt[a]);
      if constexpr (Plan::student) bs[a] = max(srow.template load<B>(j, lanes), bs[a]);
    };
    Index jm = 0;
    for (; jm + 4 * W <= j1; jm += 4 * W) {
      block_max(jm, Full{}, 0);
      block_max(jm + W, Full{}, 1);
      block_max(jm + 2 * W, Full{}, 2);
      block_max(jm + 3 * W, Full{}, 3);
    }
    sweep<W>(jm, j1, [&](Index j, auto lanes) { block_max(j, lanes, 0); });
    if constexpr (Plan::teacher) mt = hmax(max(max(bt[0], bt[1]), max(bt[2], bt[3])));
    if constexpr (Plan::student) ms = hmax(max(max(bs[0], bs[1]), max(bs[2], bs[3])));
  }

  // One block's sums relative to the current maxima (and, when `track`, the block's maxima).
  auto sweep_block = [&](Index j0, Index j1, auto track) {
    constexpr bool kTrack = decltype(track)::value;
    // Local copies of the rows and accumulators only: a store to the stash row may alias whatever
    // the closure reaches by reference, which would otherwise be reloaded (or kept in memory) at
    // every vector.
    [[maybe_unused]] const TeacherRow trow = teacher;
    [[maybe_unused]] const StudentRow sr = srow;
    [[maybe_unused]] T* const stash_row = stash.row;
    const T msf = finite_floor(ms);
    const B mtb = B::splat(finite_floor(mt)), msb = B::splat(msf);
    B ft[2] = {B::splat(0), B::splat(0)}, fs[2] = {B::splat(0), B::splat(0)};
    B fct[2] = {B::splat(0), B::splat(0)}, fcs[2] = {B::splat(0), B::splat(0)};
    B fsum[2] = {B::splat(0), B::splat(0)};
    B fm1[2] = {B::splat(0), B::splat(0)}, fm2[2] = {B::splat(0), B::splat(0)};
    B bt[2] = {B::splat(-kInf), B::splat(-kInf)}, bs[2] = {B::splat(-kInf), B::splat(-kInf)};
    B dp = B::splat(-kInf), dn = B::splat(-kInf);
    auto body = [&](Index j, auto lanes, int a) {
      B dtv = B::splat(0), dsv = B::splat(0), et = B::splat(0), es = B::splat(0);
      if constexpr (Plan::teacher) {
        const B x = trow.template load<B>(j, lanes);
        if constexpr (kTrack) bt[a] = max(x, bt[a]);
        dtv = x - mtb;
        et = simd::exp2_nonpositive(dtv * kb);
        ft[a] = ft[a] + et;
        if constexpr (Plan::stash == Stash::Teacher) store(stash_row + j, et, lanes);
        if constexpr (Plan::teacher_moments) {
          // -inf entries (weight 0) are clamped so their product stays 0 rather than NaN.
          const B xc = max(dtv, B::splat(T(-1e15)));
          const B ex = et * xc;
          fm1[a] = fm1[a] + ex;
          fm2[a] = fma(ex, xc, fm2[a]);
        }
      }
      if constexpr (Plan::student) {
        const B x = sr.template load<B>(j, lanes);
        if constexpr (kTrack) bs[a] = max(x, bs[a]);
        dsv = x - msb;
        es = simd::exp2_nonpositive(dsv * kb);
        fs[a] = fs[a] + es;
        if constexpr (Plan::stash == Stash::Student) store(stash_row + j, es, lanes);
        // Tail lanes read as the maximum here (they must add 0, not -inf).
        if constexpr (Plan::student_sum) fsum[a] = fsum[a] + (load<B>(sr.p + j, lanes, msf) - msb);
      }
      if constexpr (Plan::cross_t || Plan::cross_s) {
        // D = +inf: teacher finite, student -inf. D = -inf: the reverse. NaN: both -inf (or a tail
        // lane). The clamps map NaN and the infinity that meets a zero weight to a finite value,
        // so 0 * inf never happens; the flags record the infinities the values must report.
        const B d = dtv - dsv;
        if constexpr (Plan::cross_t) {
          fct[a] = fma(et, max(d, B::splat(-kBig)), fct[a]);
          dp = max(d, dp);
        }
        if constexpr (Plan::cross_s) {
          fcs[a] = fma(es, min(d, B::splat(kBig)), fcs[a]);
          dn = max(-d, dn);
        }
      }
    };
    Index j = j0;
    for (; j + 4 * W <= j1; j += 4 * W) {
      body(j, Full{}, 0);
      body(j + W, Full{}, 1);
      body(j + 2 * W, Full{}, 0);
      body(j + 3 * W, Full{}, 1);
    }
    sweep<W>(j, j1, [&](Index jj, auto lanes) { body(jj, lanes, 0); });
    BlockSums<T> sums;  // the block's sums
    if constexpr (Plan::teacher) sums.st = hsum_wide(ft[0] + ft[1]);
    if constexpr (Plan::student) sums.ss = hsum_wide(fs[0] + fs[1]);
    if constexpr (Plan::cross_t) sums.ct = hsum_wide(fct[0]) + hsum_wide(fct[1]);
    if constexpr (Plan::cross_s) sums.cs = hsum_wide(fcs[0]) + hsum_wide(fcs[1]);
    if constexpr (Plan::teacher_moments) sums.m1 = hsum_wide(fm1[0] + fm1[1]), sums.m2 = hsum_wide(fm2[0] + fm2[1]);
    // The block's sum is relative to the maximum it used: keep the absolute part aside.
    if constexpr (Plan::student_sum)
      sums.lin = hsum_wide(fsum[0] + fsum[1]) + static_cast<double>(j1 - j0) * static_cast<double>(msf);
    if constexpr (kTrack && Plan::teacher) sums.max_t = hmax(max(bt[0], bt[1]));
    if constexpr (kTrack && Plan::student) sums.max_s = hmax(max(bs[0], bs[1]));
    if constexpr (Plan::cross_t) sums.dpos = hmax(dp);
    if constexpr (Plan::cross_s) sums.dneg = hmax(dn);
    return sums;
  };
  // Takes in the sums of the block at j0, made relative to the current maxima (which a stashed
  // block's exponentials are relative to as well).
  auto add = [&](Index j0, const BlockSums<T>& b) {
    st += b.st, ss += b.ss, ct += b.ct, cs += b.cs, m1 += b.m1, m2 += b.m2, lin += b.lin;
    dpos = std::max(dpos, b.dpos), dneg = std::max(dneg, b.dneg);
    if constexpr (Plan::stash != Stash::None)
      stash.ref[j0 / kBlock] = finite_floor(Plan::stash == Stash::Teacher ? mt : ms);
  };

  // A later block's exponents may exceed 0 by up to kHeadroom (base 2), which keeps its float sums
  // far from overflow; a block whose maxima rise further (the first rows' blocks after masked
  // ones, or a jump of 44 nats at tau = 1) is swept again relative to its own maxima.
  constexpr double kHeadroom = 64;
  const double kb2 = kd * 1.4426950408889634;
  auto too_high = [&](T block_max, T m) {
    return kb2 * (static_cast<double>(block_max) - static_cast<double>(finite_floor(m))) > kHeadroom;
  };
  for (Index j0 = 0; j0 < n; j0 += kBlock) {
    const Index j1 = std::min(n, j0 + kBlock);
    if (j0 == 0) {
      add(j0, sweep_block(j0, j1, std::false_type{}));
      continue;
    }
    const BlockSums<T> block = sweep_block(j0, j1, std::true_type{});
    const T nmt = std::max(mt, block.max_t), nms = std::max(ms, block.max_s);
    if (too_high(block.max_t, mt) || too_high(block.max_s, ms)) {
      move_to(nmt, nms);
      add(j0, sweep_block(j0, j1, std::false_type{}));
    } else {
      add(j0, block);
      move_to(nmt, nms);
    }
  }
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
  if constexpr (Plan::cross_t) r.teacher_uncovered = dpos == kInf;
  if constexpr (Plan::cross_s) r.student_uncovered = dneg == kInf;
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
