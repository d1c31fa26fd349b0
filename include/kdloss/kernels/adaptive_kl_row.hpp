// kdloss kernels: the fused row of AdaptiveKL (AKL): head/tail gaps, detached weights, and the
// mixed forward/reverse KL gradient.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "head_select.hpp"
#include "row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// What AdaptiveKL decided for one row (for logging): the head's and the tail's weights and the
/// number of tokens in the head.
struct AklRowInfo {
  double w_head = 0;
  double w_tail = 0;
  long head_size = 0;
};

/// How many entries above the lowest threshold pass 2 of AdaptiveKL keeps for the head's cut in a row
/// of n (a peaked teacher keeps a handful, a typical one about a tenth of the row); a row with more
/// gathers its bracket in one more pass instead.
inline Index keep_limit(Index n) { return std::max<Index>(512, n / 8); }

/// Per-thread scratch of the AdaptiveKL row kernel.
template <class T>
struct AklScratch {
  std::vector<T> a;  ///< pass 1's teacher exponentials, then q - p, when the gradient row cannot hold them (value-only and accumulate calls)
  std::vector<T> r;  ///< the reverse-KL gradient q (log q - log p - KL(q||p))
  std::vector<T> set_t, set_a;  ///< the entries above the lowest threshold (logit, |q - p|)
  std::vector<T> br_t, br_p, br_a;     ///< the bracket where the head ends
  std::vector<T> refs;                 ///< pass 1's stash references, one per block (>= 64 entries)
  SelectScratch<T> select;
  void reserve(Index v) {
    if (static_cast<Index>(a.size()) < v + 64) {
      for (auto* x : {&a, &r, &br_t, &br_p, &br_a}) x->resize(static_cast<size_t>(v) + 64);
      refs.resize(static_cast<size_t>(v) / 64 + 2);
      // Room for one chunk of pass 2 (at most 1024 entries) past the keep limit.
      for (auto* x : {&set_t, &set_a}) x->resize(static_cast<size_t>(keep_limit(v)) + 1024 + 64);
      select.reserve(v);
    }
  }
};

namespace detail_akl {
/// \f$\Phi^{-1}(x)\f$ roughly (the logistic approximation): where the head of mass mu ends, in
/// standard deviations of the teacher logits under p above their mean.
inline double probit(double x) { return std::log(x / (1 - x)) / 1.702; }

}  // namespace detail_akl

/// One row of AdaptiveKL:
/// - pass 1: maxima, sums of exponentials, KL(p||q), KL(q||p), and the mean and spread of the
///   teacher logits under p; leaves the teacher's exponentials in the row pass 2 writes A to;
/// - pass 2: p (from those exponentials) and q; stores A = q - p (in the gradient row when it may,
///   else in scratch) and, for the gradient, the reverse-KL gradient R; sums |p - q|; keeps the
///   entries above the lowest of six thresholds placed around where a normal approximation of the
///   teacher logits under p puts the end of the head (a peaked teacher: a handful): their logits
///   and |A| (two compressed stores per vector that keeps any; p is taken again from the logits
///   after the pass, which measured 5-6 % faster for a typical teacher than a third store), from
///   which the teacher mass above each threshold is summed after the pass (a row that has kept
///   more than `keep_limit` by the end of a chunk sums the rest of its masses in the pass);
/// - the head (top tokens, logit descending and index ascending, while the inclusive cumulative
///   p stays <= mu; at least one): the masses say between which two thresholds it ends; an exact
///   selection inside that bracket (or, if it ends below every threshold, inside the rest of the
///   row, gathered by one more pass) cuts it. gap_head = sum over the head of |p - q|;
/// - pass 3 (gradient only): \f$w_h A + w_t R\f$.
/// The gaps come from the stored A, so the head and tail gaps add up to the row's gap as summed;
/// the value-only call takes the same steps, so it returns the same value.
template <class Arch, class T>
RowResult adaptive_kl_row(const T* teacher, const T* student, Index n, T k, double mu, const GradOut<T>& out,
                          AklScratch<T>& ws, AklRowInfo& info) {
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  constexpr int M = 6;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity(), kPosInf = std::numeric_limits<T>::infinity();
  // Pass 2 stores A = q - p in the gradient row when it overwrites it, else in the scratch row.
  const bool want_grad = out.row != nullptr;
  T* const a_buf = want_grad && out.beta == T(0) ? out.row : ws.a.data();
  // Pass 1 leaves the teacher's exponentials in that row, so pass 2 takes p with a multiply
  // instead of an exponential. Every call does, the value-only one too, so all calls take the same
  // p and return the same value.
  using Plan = StatsPlan<true, true, true, true, false, true, Stash::Teacher>;
  constexpr Index kBlock = stats_block<B, Plan>();
  T* const refs = ws.refs.data();
  const PairStats<T> st = row_stats<Arch, Plan>(PlainRow<T>{teacher}, student, n, k, ExpStash<T>{a_buf, refs});
  if (RowError e = st.s.check(false); e != RowError::None) return {0, e};
  if (RowError e = st.t.check(true); e != RowError::None) return {0, e};
  const double lst = st.t.log_sum(), lss = st.s.log_sum(), kd = static_cast<double>(k);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const double fkl = st.teacher_uncovered ? kInf : std::max(0.0, kd * st.cross_t / st.t.sum - lst + lss);
  const double rkl = st.student_uncovered ? kInf : std::max(0.0, -kd * st.cross_s / st.s.sum + lst - lss);

  // Thresholds x[0] > ... > x[M-1] around the (1 - mu) quantile of the teacher logits under p.
  T x[M];
  {
    const double mean = st.teacher_m1 / st.t.sum;
    const double sd = std::sqrt(std::max(0.0, st.teacher_m2 / st.t.sum - mean * mean));
    const double centre = static_cast<double>(st.t.max) + mean + sd * detail_akl::probit(1 - mu);
    const double offs[M] = {0.8, 0.3, 0.1, -0.1, -0.3, -0.8};
    for (int i = 0; i < M; ++i) {
      const double xi = centre + sd * offs[i];
      // No estimate (not expected for a valid row): no thresholds, the bracket is the whole row.
      x[i] = std::isfinite(xi) ? static_cast<T>(xi) : kPosInf;
    }
  }

  // Pass 2.
  const double kappa = exp2_scale(k);  // pass 1's base-2 multiplier, which the stash is made with
  const B k2 = B::splat(static_cast<T>(kappa)), kb = B::splat(k);
  const B mtb = B::splat(st.t.max), msb = B::splat(st.s.max);
  const B lst2 = B::splat(static_cast<T>(lst * kLog2e)), lss2 = B::splat(static_cast<T>(lss * kLog2e));
  // R = q (log q - log p - KL(q||p)) = q (c - k (D_t - D_s)), D the logits less their maxima.
  const B cr = B::splat(static_cast<T>(lst - lss - (std::isfinite(rkl) ? rkl : 0.0)));
  const B nbig = B::splat(-std::numeric_limits<T>::max());
  T* const r_buf = ws.r.data();
  T* const set_t = ws.set_t.data();
  T* const set_a = ws.set_a.data();
  Index nk = 0;  // the kept entries are [0, nk), in index order
  bool keeping = true;
  const Index keep_max = keep_limit(n);
  B xb[M];
  for (int i = 0; i < M; ++i) xb[i] = B::splat(x[i]);
  double gap_all = 0, mass_above[M] = {};
  // Float lanes over chunks of pass 1's blocks (64 vectors), double across them. The chunk's
  // accumulators are its own locals, so the loop keeps them in registers (with a flush inside the
  // loop, g++ kept them in memory, a store and a reload per vector).
  constexpr Index kChunk = kBlock;
  static_assert(kChunk == 64 * W, "pass 2's chunks are pass 1's blocks");
  static_assert(kChunk <= 1024, "the kept entries' scratch has room for one chunk past keep_max");
  // Every entry above a threshold is above the lowest one, so while the kept entries are complete
  // the masses above the thresholds are summed from them after the pass (a tenth of the row or
  // less), not per entry of the row. Once the keep overflows, the rest of the row sums its masses
  // as it goes, and the kept entries give those of the part before.
  auto add_mass = [&](B(&mass)[M], B t, B p) {
    for (int i = 0; i < M; ++i) mass[i] = mass[i] + select(t > xb[i], p, B::splat(0));
  };
  auto add_masses = [&](Index j0, Index j1, auto&& p_of) {
    for (Index c0 = j0; c0 < j1; c0 += kChunk) {
      B mass[M];
      for (int i = 0; i < M; ++i) mass[i] = B::splat(0);
      sweep<W>(c0, std::min(j1, c0 + kChunk), [&](Index j, auto lanes) {
        B t, p;
        p_of(j, lanes, t, p);
        add_mass(mass, t, p);
      });
      for (int i = 0; i < M; ++i) mass_above[i] += hsum_wide(mass[i]);
    }
  };
  // p by the exponential, from a teacher logit (where the stash does not give it).
  auto p_of = [&](B t) { return simd::exp2_nonpositive(fms(t - mtb, k2, lst2)); };
  // p where exact values decide the weights: a teacher row with the student's statistics takes p
  // as it takes q, so p = q gives A = 0; a teacher row that sums to 1 (one token, or one that holds
  // all the mass) gets p = 1 exactly at its top, so a student that agrees leaves both gaps 0
  // (weights 1/2 each), not a rounding residue. Such a row (and one whose stash mixes kinds of
  // reference, see `PairStats::stash_complete`) has its p written over the stash by the
  // exponential, and pass 2 multiplies it by 1.
  const bool exact_p = !st.stash_complete || st.t.sum == 1.0 || st.same_statistics();
  if (exact_p)
    sweep<W>(0, n, [&](Index j, auto lanes) {
      store(a_buf + j, p_of(load<B>(teacher + j, lanes, kNegInf)), lanes);
    });
  // The kept entries' p, and the bracket's, come from their logits by the exponential (`p_of`); a
  // chunk that sums its masses in pass 2 takes p from the stash (the two differ by a rounding, which
  // may move a cumulative mass within float rounding of mu either side, as the reference's cumsum).
  // Pass 2 prefetches the next row (`out.next`) where it is bound by its arithmetic: at the vectors
  // it keeps and those that sum masses, one vector of each side per vector, so that the next row's
  // pass 1 waits less on memory. (At every vector, the peaked teacher's light pass 2, which keeps
  // almost nothing, ran 5-9 % slower at V = 32000: the prefetches then outrun the memory.)
  const NextRow<T> next = out.next;
  // Pass 2, chunk by chunk: p is the chunk's stashed exponential times its factor (the chunk is a
  // pass-1 block).
  for (Index c0 = 0; c0 < n; c0 += kChunk) {
    const Index c1 = std::min(n, c0 + kChunk);
    const auto f = exact_p ? StashFactor<T>{} : StashFactor<T>::of(refs[c0 / kChunk], st.t.max, st.stash_offsets, kappa, lst);
    const B f1b = B::splat(f.f1), f2b = B::splat(f.f2);
    // The entry's p, and its part of the gap and the gradient's rows.
    auto entry = [&](Index j, auto lanes, B& gap, B& t, B& p, B& aa) {
      t = load<B>(teacher + j, lanes, kNegInf);
      const B s = load<B>(student + j, lanes, kNegInf);
      const B dt = t - mtb, ds = s - msb;
      p = load<B>(a_buf + j, lanes, T(0)) * f1b * f2b;
      const B q = simd::exp2_nonpositive(fms(ds, k2, lss2));
      const B a = q - p;
      aa = abs(a);
      gap = gap + aa;
      store(a_buf + j, a, lanes);
      if (want_grad) {
        // q = 0 makes R = 0 whatever the log ratio is; max() keeps it finite for that product
        // (NaN -> -big).
        store(r_buf + j, q * max(fnma(dt - ds, kb, cr), nbig), lanes);
      }
    };
    B gap = B::splat(0);
    // Too many kept: the head is cut from the row after the pass, and the rest of the row sums its
    // masses as it goes.
    if (nk > keep_max) keeping = false;
    if (keeping) {
      // The chunk fits in the room past keep_max.
      // (Forward: the kept entries come out in index order, stored a full vector at a time.)
      sweep<W>(c0, c1, [&](Index j, auto lanes) {
        B t, p, aa;
        entry(j, lanes, gap, t, p, aa);
        const auto keep = t > xb[M - 1];
        if (any(keep)) {
          next.prefetch(j);
          compress_store(set_t + nk, keep, t);
          nk += compress_store(set_a + nk, keep, aa);
        }
      });
    } else {
      B mass[M];
      for (int i = 0; i < M; ++i) mass[i] = B::splat(0);
      sweep<W>(c0, c1, [&](Index j, auto lanes) {
        B t, p, aa;
        next.prefetch(j);
        entry(j, lanes, gap, t, p, aa);
        add_mass(mass, t, p);
      });
      for (int i = 0; i < M; ++i) mass_above[i] += hsum_wide(mass[i]);
    }
    gap_all += hsum_wide(gap);
  }
  // The masses of the kept entries (tail lanes read as NaN, which compares false everywhere).
  add_masses(0, nk, [&](Index j, auto lanes, B& t, B& p) {
    t = load<B>(set_t + j, lanes, std::numeric_limits<T>::quiet_NaN());
    p = p_of(t);
  });

  // The head ends among the entries (lo, hi]: every entry above hi is in it (their mass fits).
  int i = 0;
  while (i < M && mass_above[i] <= mu) ++i;
  const T hi = i == 0 ? kPosInf : x[i - 1];
  const bool to_bottom = i == M;  // the bracket reaches down to the masked (-inf) entries
  const T lo = to_bottom ? kNegInf : x[i];
  const double budget = mu - (i == 0 ? 0.0 : mass_above[i - 1]);
  T* const bt = ws.br_t.data();
  T* const bp = ws.br_p.data();
  T* const ba = ws.br_a.data();
  const B hib = B::splat(hi), lob = B::splat(lo);
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  // The head's gap: float lanes over chunks of 64 vectors (as pass 2, each chunk's accumulator a
  // local of its own), double across them. `gap_of(j, lanes)` gives a vector's share.
  double gap_head = 0;
  auto gap_sweep = [&](Index m, auto&& gap_of) {
    for (Index c0 = 0; c0 < m; c0 += kChunk) {
      B g = B::splat(0);
      sweep<W>(c0, std::min(m, c0 + kChunk), [&](Index j, auto lanes) { g = g + gap_of(j, lanes); });
      gap_head += hsum_wide(g);
    }
  };
  Index above = 0, nb = 0;
  // Above hi: |A| summed and counted; in the bracket: gathered in index order. Tail lanes read as
  // NaN, which compares false everywhere.
  auto classify = [&](B t) {
    const auto up = t > hib;
    const auto in = (to_bottom ? t >= lob : t > lob) & ~up;
    return std::make_pair(up, in);
  };
  if (keeping && !to_bottom) {
    gap_sweep(nk, [&](Index j, auto lanes) {
      const B t = load<B>(set_t + j, lanes, kNaN);
      const auto [up, in] = classify(t);
      above += count(up);
      if (any(in)) {
        compress_store(bt + nb, in, t);
        nb += compress_store(ba + nb, in, load<B>(set_a + j, lanes, T(0)));
      }
      return select(up, load<B>(set_a + j, lanes, T(0)), B::splat(0));
    });
  } else {
    // One branch-free pass over the row: logits and |A|.
    gap_sweep(n, [&](Index j, auto lanes) {
      const B t = load<B>(teacher + j, lanes, kNaN);
      const auto [up, in] = classify(t);
      const B a = abs(load<B>(a_buf + j, lanes, T(0)));
      above += count(up);
      compress_store(bt + nb, in, t);
      nb += compress_store(ba + nb, in, a);
      return select(up, a, B::splat(0));
    });
  }
  // p of the bracket, from its logits (as the masses above took it).
  sweep<W>(0, nb, [&](Index j, auto lanes) { store(bp + j, p_of(load<B>(bt + j, lanes, kNegInf)), lanes); });
  // The exact cut inside the bracket (in index order, so ties go to the lower index first).
  const HeadCut<T> cut = select_head<Arch>(bt, bp, nb, budget, ws.select);
  long head = static_cast<long>(above + cut.size());
  if (head == 0) {
    // The top token alone holds more than mu: it is the head (the bracket holds the maximum).
    for (Index j = 0; j < nb; ++j)
      if (bt[j] == st.t.max) {
        gap_head = static_cast<double>(ba[j]);
        break;
      }
    head = 1;
  } else {
    const B key = B::splat(cut.key);
    Index ties = cut.ties;
    gap_sweep(nb, [&](Index j, auto lanes) {
      const B t = load<B>(bt + j, lanes, kNaN);
      const B av = load<B>(ba + j, lanes, T(0));
      if (ties > 0 && any(t == key)) {  // ties at the cut, in index order
        alignas(64) T tl[W], al[W];
        t.store(tl);
        av.store(al);
        for (int l = 0; l < W && ties > 0; ++l)
          if (tl[l] == cut.key) gap_head += static_cast<double>(al[l]), --ties;
      }
      return select(t > key, av, B::splat(0));
    });
  }
  const double gap_tail = std::max(0.0, gap_all - gap_head);
  const double total = gap_head + gap_tail;
  info.w_head = total > 0 ? gap_head / total : 0.5;
  info.w_tail = 1 - info.w_head;
  info.head_size = head;
  // A zero weight switches its term off entirely (0 * inf is not a loss).
  double value = 0;
  if (info.w_head > 0) value += info.w_head * fkl;
  if (info.w_tail > 0) value += info.w_tail * rkl;
  if (!want_grad) return {value, RowError::None};
  if (info.w_tail > 0 && !std::isfinite(rkl)) return {value, RowError::UnboundedGradient};

  // Pass 3: scale (w_h A + w_t R) (+ beta G). R may hold infinities a zero weight must not see.
  const B wh = B::splat(static_cast<T>(info.w_head)), wt = B::splat(static_cast<T>(info.w_tail));
  const B gb = B::splat(out.scale), bb = B::splat(out.beta);
  const bool use_r = info.w_tail > 0;
  // The rows by value: a store to the gradient row may alias anything reached by reference, which
  // the loop would otherwise load again at every vector.
  const T* const av_row = a_buf;
  const T* const r_row = r_buf;
  T* const g_row = out.row;
  auto entry = [=](Index j, auto lanes) {
    const B av = load<B>(av_row + j, lanes, T(0));
    return gb * (use_r ? fma(wh, av, wt * load<B>(r_row + j, lanes, T(0))) : wh * av);
  };
  if (out.beta == T(0)) {
    sweep<W>(0, n, [=](Index j, auto lanes) { store(g_row + j, entry(j, lanes), lanes); });
  } else {
    sweep<W>(0, n, [=](Index j, auto lanes) {
      store(g_row + j, fma(load<B>(g_row + j, lanes, T(0)), bb, entry(j, lanes)), lanes);
    });
  }
  return {value, RowError::None};
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
