// kdloss kernels: the row of Plackett-Luce distillation (PLD): the teacher ranking by an O(V)
// radix sort, the weighted suffix log-sum-exps, and the gradient in O(V) after the sort.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "radix_sort.hpp"
#include "row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// Ranked positions per block of the scans (a block's data stays in L1 between its passes).
constexpr Index kPldBlock = 64;
/// Blocks scanned at once (independent chains, to hide the add latency).
constexpr int kPldChains = 4;

/// Per-thread scratch of the PLD row kernel, for rows of up to `capacity()` classes.
template <class T>
struct PldScratch {
  RadixScratch<T> sort;
  std::vector<std::uint32_t> index;  ///< the class at each ranked position
  std::vector<T> e;                  ///< ranked student logits, then e, c, and alpha / c
  std::vector<T> alpha;              ///< ranked teacher logits, then their unnormalised weights
  std::vector<T> prefix;             ///< \f$S_t P\f$ in class order
  std::vector<double> blocks;        ///< per block of the ranking: the total of a / c
  std::vector<double> lse;           ///< suffix log-sum-exps of the exact (slow) path
  Index capacity() const { return static_cast<Index>(e.size()); }
  void reserve(Index v) {
    sort.reserve(v);
    if (capacity() < v) {
      const auto n = static_cast<size_t>(v);
      index.resize(n);
      e.resize(n);
      alpha.resize(n);
      prefix.resize(n);
      lse.resize(n);
      blocks.resize((n + static_cast<size_t>(kPldBlock) - 1) / static_cast<size_t>(kPldBlock));
    }
  }
};

namespace detail_pld {

/// A running sum in double (float rows: the float terms carry far more error than the sum).
struct PlainSum {
  double s = 0;
  KDLOSS_INLINE void add(double x) { s += x; }
  KDLOSS_INLINE double value() const { return s; }
};

/// A compensated running sum (double rows: the carries across V/64 blocks keep a few ulp).
struct CompensatedSum {
  double s = 0, comp = 0;
  KDLOSS_INLINE void add(double x) { compensated_add(s, comp, x); }
  KDLOSS_INLINE double value() const { return s + comp; }
};

template <class T>
using ScanSum = std::conditional_t<std::is_same<T, float>::value, PlainSum, CompensatedSum>;


/// The smallest suffix sum \f$c_k = \sum_{l \ge k} e^{s_l - \max s}\f$ of a weighted stage the
/// fast path accepts: \f$\alpha_k / c_k\f$ and the prefix sums of it stay finite, and entries
/// whose \f$e\f$ underflowed are negligible against \f$c_k\f$.
template <class T>
constexpr T min_suffix() {
  return std::is_same<T, float>::value ? T(0x1p-60) : T(0x1p-900);
}

/// `g = scale * dL + beta * g` at one (scattered) entry.
template <class T>
KDLOSS_INLINE void put(T* g, double scale, double dl, T beta) {
  *g = beta == T(0) ? static_cast<T>(scale * dl)
                    : static_cast<T>(scale * dl + static_cast<double>(beta) * static_cast<double>(*g));
}

/// The exact path in double with the reference's recurrence (online suffix log-sum-exp, then
/// \f$A_m\f$ forward), for rows whose student logits spread so far that a weighted suffix sum
/// underflows the fast path's scale. O(V) with a libm exp and log per entry.
template <class T>
KDLOSS_NOINLINE RowResult exact_row(const T* teacher, const T* student, Index n, double kd, double mt,
                                    double lst, bool uncovered, double scale, const GradOut<T>& out,
                                    PldScratch<T>& ws) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const std::uint32_t* idx = ws.index.data();
  double* lse = ws.lse.data();
  double mx = -kInf, sum = 0;
  for (Index m = n - 1; m >= 0; --m) {
    const double z = static_cast<double>(student[idx[m]]);
    if (z > mx) {
      sum = (mx == -kInf ? 0.0 : sum * std::exp(mx - z)) + 1;
      mx = z;
    } else if (z > -kInf) {
      sum += std::exp(z - mx);
    }
    lse[m] = mx == -kInf ? -kInf : mx + std::log(sum);
  }
  double value = 0, acc = 0;
  for (Index m = 0; m < n; ++m) {
    const double t = static_cast<double>(teacher[idx[m]]), z = static_cast<double>(student[idx[m]]);
    const double a = t == -kInf ? 0.0 : std::exp(kd * (t - mt) - lst);
    double g = -a;  // a stage whose remaining classes are all -inf for the student adds nothing
    if (lse[m] > -kInf) {
      acc = (m == 0 ? 0.0 : acc * std::exp(lse[m] - lse[m - 1])) + a;
      if (a > 0 && z > -kInf) value += a * (lse[m] - z);
      g = std::exp(z - lse[m]) * acc - a;
    }
    if (out.row) put(out.row + idx[m], scale, g, out.beta);
  }
  return {uncovered ? kInf : std::max(value, 0.0), RowError::None};
}

}  // namespace detail_pld

/// One row of Plackett-Luce distillation. With the ranking \f$\pi\f$ = (label, then every other
/// class by teacher logit descending, ties by lower index), \f$\alpha_k =
/// \mathrm{softmax}(k\,t)_{\pi_k}\f$, \f$z_m = s_{\pi_m}\f$ and \f$c_m = \sum_{l \ge m}
/// e^{z_l - \max s}\f$ (so the suffix log-sum-exp is \f$\max s + \log c_m\f$):
/// \f[ L = \sum_k \alpha_k \big(\log c_k - (z_k - \max s)\big),\qquad
///     \frac{\partial L}{\partial z_m} = e^{z_m - \max s} P_m - \alpha_m,\quad
///     P_m = \sum_{k \le m} \frac{\alpha_k}{c_k}, \f]
/// which is the reference's recurrence \f$A_m = c_m P_m\f$ with every exponent relative to the
/// row's student maximum. The gradient written is `scale * dL` (no 1/tau: the student is not
/// softened; the caller passes the loop's scale times tau).
///
/// Passes: the maxima and finite checks of both rows (vector); the radix sort (a pre-pass of keys
/// and histograms, then its passes, the last of which lays out the ranked class, student logit
/// and teacher logit); one backward pass over the ranking in blocks of 64 that stay in L1: e and
/// the unnormalised weights \f$a = e^{k(t - \max t)}\f$ (vector exp; \f$\alpha = a / S_t\f$ with
/// \f$S_t = \sum a\f$), the suffix sums c (a scalar chain per block, 4 blocks' chains
/// interleaved, each started at the total of the blocks after it), \f$\sum a \log c\f$ and
/// \f$a / c\f$ (vector); for the gradient, the prefix sums \f$S_t P\f$ forward in the same
/// blocks, scattered to class order, then \f$(e\,S_t P - a) / S_t\f$ in class order (vector).
/// Sums run in double (float rows) or compensated double (double rows). A row with a weighted
/// stage whose suffix sum falls below `min_suffix` (its remaining student logits all about 40
/// (float) or 620 (double) nats below the row's maximum) takes the exact double path instead.
///
/// Masked classes: a class with a -inf teacher logit has \f$\alpha = 0\f$ (ranked last); a -inf
/// student logit gets gradient \f$-\alpha\f$ and adds nothing to any suffix; a finite teacher
/// logit on a -inf student logit makes L = +inf (the student gives the teacher's ranking
/// probability 0), the gradient staying finite (a stage with no finite student logit left adds
/// nothing).
template <class Arch, class T>
RowResult plackett_luce_row(const T* teacher, const T* student, Index n, Index label, T k, double grad_factor,
                            const GradOut<T>& out, PldScratch<T>& ws) {
  using B = simd::batch<T, Arch>;
  using R = RadixItems<T>;
  using Sum = detail_pld::ScanSum<T>;
  constexpr int W = B::size;
  constexpr int C = kPldChains;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();

  // The maxima and finite checks of both rows in one vector pass (it also brings the teacher row
  // into cache for the sort's pre-pass).
  const B ninf = B::splat(kNegInf);
  B smax = ninf, tmax = ninf;
  auto snan = ninf != ninf;
  auto tnan = snan;
  sweep<W>(0, n, [&](Index j, auto lanes) {
    const B x = load<B>(student + j, lanes, kNegInf), y = load<B>(teacher + j, lanes, kNegInf);
    snan = snan | (x != x);
    tnan = tnan | (y != y);
    smax = max(x, smax);  // max keeps its second operand on NaN: NaN is flagged apart
    tmax = max(y, tmax);
  });
  const T ms = hmax(smax), mt = hmax(tmax);
  if (any(snan)) return {0, RowError::StudentNaN};
  if (ms == std::numeric_limits<T>::infinity()) return {0, RowError::StudentPosInf};
  if (ms == kNegInf) return {0, RowError::StudentEmpty};
  if (any(tnan)) return {0, RowError::TeacherNaN};
  if (mt == std::numeric_limits<T>::infinity()) return {0, RowError::TeacherPosInf};
  if (mt == kNegInf) return {0, RowError::TeacherEmpty};
  const Index count = radix_prepare(teacher, n, label, ws.sort);

  // The ranking, laid out as it is placed: position 0 is the label, position r + 1 the class of
  // sort rank r; e and alpha first hold the ranked student and teacher logits.
  std::uint32_t* const idx = ws.index.data();
  T* const ev = ws.e.data();
  T* const av = ws.alpha.data();
  idx[0] = static_cast<std::uint32_t>(label);
  ev[0] = student[label];
  av[0] = teacher[label];
  radix_finish(ws.sort, count, [&](Index r, const typename R::Item& it) {
    const std::uint32_t i = R::index(it);
    idx[r + 1] = i;
    ev[r + 1] = student[i];
    av[r + 1] = descending_key_value<T>(R::key(it));
  });

  // One backward pass over the ranking in super-blocks of kPldChains blocks of kPldBlock
  // positions: e = exp(z - max s) and a = exp(k (t - max t)) (alpha = a / S_t), their block
  // totals; the suffix sums c of e (a chain per block, the blocks' chains interleaved, each
  // started at the total of the blocks after it); then log c and r = a / c (kept for the
  // gradient) with their block totals. S_t, the linear part of S_t L and the -inf checks ride
  // along. A weighted stage with c below min_suffix sends the row to the exact path.
  const B zero = B::splat(T(0));
  const B msb = B::splat(ms), mtb = B::splat(mt);
  const double kd = static_cast<double>(k);
  const B log2e = B::splat(static_cast<T>(kLog2e)), k2 = B::splat(static_cast<T>(exp2_scale(k)));
  const B cmin = B::splat(detail_pld::min_suffix<T>());
  const bool grad = out.row != nullptr;
  constexpr Index Q = kPldBlock;
  const Index blocks = (n + Q - 1) / Q;
  double* const rtot = ws.blocks.data();  // per block: the total of r
  BlockSum<B, 8> linear, mass, logs;  // sum a (z - max s) over finite z; sum a; sum a log c
  auto uncovered_mask = zero != zero;
  auto small_mask = zero != zero;
  Sum carry;  // total of e over the positions after the current super-block
  for (Index b1 = blocks, b0 = (blocks - 1) / C * C; b1 > 0; b1 = b0, b0 -= C) {
    const int nb = static_cast<int>(b1 - b0);
    Index lo[C], hi[C];
    double etot[C];
    for (int q = 0; q < nb; ++q) {
      lo[q] = (b0 + q) * Q;
      hi[q] = std::min(n, lo[q] + Q);
      BlockSum<B, 8> esum;
      sweep<W>(lo[q], hi[q], [&](Index m, auto lanes) {
        const B z = load<B>(ev + m, lanes, kNegInf), t = load<B>(av + m, lanes, kNegInf);
        const B d = z - msb;
        const B a = simd::exp2_nonpositive((t - mtb) * k2);
        const B e = simd::exp2_nonpositive(d * log2e);
        store(ev + m, e, lanes);
        store(av + m, a, lanes);
        esum.add(e);
        const auto finite = z > ninf;
        linear.add(select(finite, a * d, zero));
        mass.add(a);
        uncovered_mask = uncovered_mask | (~finite & (t > ninf));
      });
      etot[q] = esum.value();
    }
    Sum acc[C];
    for (int q = nb - 1; q >= 0; --q) {
      acc[q] = carry;
      carry.add(etot[q]);
    }
    if (nb == C && hi[C - 1] - lo[C - 1] == Q) {  // C full blocks: the chains stay in registers
      for (Index i = Q - 1; i >= 0; --i) {
        for (int q = 0; q < C; ++q) {
          T& x = ev[lo[q] + i];
          acc[q].add(static_cast<double>(x));
          x = static_cast<T>(acc[q].value());
        }
      }
    } else {
      for (int q = 0; q < nb; ++q) {
        for (Index m = hi[q] - 1; m >= lo[q]; --m) {
          acc[q].add(static_cast<double>(ev[m]));
          ev[m] = static_cast<T>(acc[q].value());
        }
      }
    }
    for (int q = 0; q < nb; ++q) {
      BlockSum<B, 8> rsum;
      sweep<W>(lo[q], hi[q], [&](Index m, auto lanes) {
        const B cs = load<B>(ev + m, lanes, T(1));
        const B a = load<B>(av + m, lanes, T(0));
        const auto weighted = a > zero;
        logs.add(select(weighted, a * simd::log(cs), zero));
        small_mask = small_mask | (weighted & (cs < cmin));
        if (grad) {
          const B r = select(weighted, a / cs, zero);
          store(ev + m, r, lanes);
          rsum.add(r);
        }
      });
      rtot[b0 + q] = rsum.value();
    }
  }
  const bool uncovered = any(uncovered_mask);
  const double st = mass.value(), inv_st = 1 / st, lst = std::log(st);
  const double scale = static_cast<double>(out.scale) * grad_factor;
  if (any(small_mask))
    return detail_pld::exact_row(teacher, student, n, kd, static_cast<double>(mt), lst, uncovered, scale, out, ws);
  const double value = uncovered ? std::numeric_limits<double>::infinity()
                                 : std::max(0.0, (logs.value() - linear.value()) * inv_st);
  if (!grad) return {value, RowError::None};

  // Prefix sums P of r, forward in the same super-blocks (the blocks' chains interleaved, each
  // started at the total before it), scattered to class order (scratch that stays in cache: the
  // gradient row may be cold). S_t P is the sum of alpha / c.
  T* const pc = ws.prefix.data();
  {
    Sum before;
    for (Index b0 = 0; b0 < blocks; b0 += C) {
      const int nb = static_cast<int>(std::min<Index>(C, blocks - b0));
      Sum acc[C];
      Index lo[C], hi[C];
      for (int q = 0; q < nb; ++q) {
        lo[q] = (b0 + q) * Q;
        hi[q] = std::min(n, lo[q] + Q);
        acc[q] = before;
        before.add(rtot[b0 + q]);
      }
      if (nb == C && hi[C - 1] - lo[C - 1] == Q) {
        for (Index i = 0; i < Q; ++i) {
          for (int q = 0; q < C; ++q) {
            const Index m = lo[q] + i;
            acc[q].add(static_cast<double>(ev[m]));
            pc[idx[m]] = static_cast<T>(acc[q].value());
          }
        }
      } else {
        for (int q = 0; q < nb; ++q) {
          for (Index m = lo[q]; m < hi[q]; ++m) {
            acc[q].add(static_cast<double>(ev[m]));
            pc[idx[m]] = static_cast<T>(acc[q].value());
          }
        }
      }
    }
  }

  // The gradient in class order: (e P - a) / S_t, times the scale.
  T* const g = out.row;
  const B sc = B::splat(static_cast<T>(scale * inv_st));
  auto entry = [&](Index j, auto lanes) {
    const B e = simd::exp2_nonpositive((load<B>(student + j, lanes, kNegInf) - msb) * log2e);
    const B a = simd::exp2_nonpositive((load<B>(teacher + j, lanes, kNegInf) - mtb) * k2);
    return sc * fms(e, load<B>(pc + j, lanes, T(0)), a);
  };
  if (out.beta == T(0)) {
    sweep<W>(0, n, [&](Index j, auto lanes) { store(g + j, entry(j, lanes), lanes); });
  } else {
    const B bb = B::splat(out.beta);
    sweep<W>(0, n, [&](Index j, auto lanes) { store(g + j, fma(load<B>(g + j, lanes, T(0)), bb, entry(j, lanes)), lanes); });
  }
  return {value, RowError::None};
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
