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

/// Independent scan chains (segments of the ranking scanned at once, to hide the add latency).
constexpr int kPldChains = 4;

/// Per-thread scratch of the PLD row kernel, for rows of up to `capacity()` classes.
template <class T>
struct PldScratch {
  RadixScratch<T> sort;
  std::vector<std::uint32_t> index;  ///< the class at each ranked position
  std::vector<T> e;                  ///< \f$e^{s - \max s}\f$ in ranked order
  std::vector<T> alpha;              ///< teacher weights in ranked order
  std::vector<T> c;                  ///< suffix sums of e, then \f$\alpha / c\f$
  std::vector<T> prefix;             ///< \f$P\f$ in class order
  std::vector<double> lse;           ///< suffix log-sum-exps of the exact (slow) path
  Index capacity() const { return static_cast<Index>(e.size()); }
  void reserve(Index v) {
    sort.reserve(v);
    if (capacity() < v) {
      const auto n = static_cast<size_t>(v);
      index.resize(n);
      e.resize(n);
      alpha.resize(n);
      c.resize(n);
      prefix.resize(n);
      lse.resize(n);
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

/// A compensated running sum (double rows: a scan of V/4 terms keeps a few ulp, not V/4).
struct CompensatedSum {
  double s = 0, comp = 0;
  KDLOSS_INLINE void add(double x) {
    const double t = s + x, bp = t - s;
    comp += (s - (t - bp)) + (x - bp);
    s = t;
  }
  KDLOSS_INLINE double value() const { return s + comp; }
};

template <class T>
using ScanSum = std::conditional_t<std::is_same<T, float>::value, PlainSum, CompensatedSum>;

/// A vector sum flushed to double every 8 vectors (each lane rounds at most 8 partial sums).
template <class B>
struct ShortSum {
  B acc = B::splat(0);
  int count = 0;
  double total = 0;
  KDLOSS_INLINE void add(B x) {
    acc = acc + x;
    if (++count == 8) flush();
  }
  KDLOSS_INLINE void flush() {
    total += hsum_wide(acc);
    acc = B::splat(0);
    count = 0;
  }
  double value() {
    flush();
    return total;
  }
};

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
/// Passes: row statistics (teacher max and sum at k, student max, the finite checks); the radix
/// sort; the ranked gather (blocks of 256: e and alpha by the vector exp, the linear part of L);
/// the suffix sums c (4 chains); log c, alpha / c and their per-chain totals (vector); the prefix
/// sums P with the gradient scattered back through pi (4 chains; gradient calls only). A row
/// whose weighted suffix sums fall below `min_suffix` (a student logit spread of more than about
/// 40 (float) or 620 (double) nats around a weighted stage) takes the exact double path instead.
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
  constexpr double kLog2e = 1.4426950408889634;

  const PairStats<T> st =
      row_stats<Arch, StatsPlan<true, true, false, false>>(PlainRow<T>{teacher}, student, n, k);
  if (RowError e = st.s.check(false); e != RowError::None) return {0, e};
  if (RowError e = st.t.check(true); e != RowError::None) return {0, e};
  const double kd = static_cast<double>(k), lst = st.t.log_sum();

  // The ranking, laid out as it is placed: position 0 is the label, position r + 1 the class of
  // sort rank r; e and alpha first hold the ranked student and teacher logits.
  std::uint32_t* const idx = ws.index.data();
  T* const ev = ws.e.data();
  T* const av = ws.alpha.data();
  T* const cv = ws.c.data();
  idx[0] = static_cast<std::uint32_t>(label);
  ev[0] = student[label];
  av[0] = teacher[label];
  sort_descending(teacher, n, label, ws.sort, [&](Index r, const typename R::Item& it) {
    const std::uint32_t i = R::index(it);
    idx[r + 1] = i;
    ev[r + 1] = student[i];
    av[r + 1] = descending_key_value<T>(R::key(it));
  });

  // e = exp(z - max s) and alpha, in place; the linear part of L; -inf student logits.
  const B zero = B::splat(T(0)), ninf = B::splat(kNegInf);
  const B msb = B::splat(st.s.max), mtb = B::splat(st.t.max);
  const B log2e = B::splat(static_cast<T>(kLog2e)), k2 = B::splat(static_cast<T>(kd * kLog2e));
  const B l2 = B::splat(static_cast<T>(lst * kLog2e));
  detail_pld::ShortSum<B> linear;  // sum_k alpha_k (z_k - max s) over finite z_k
  auto uncovered_mask = zero != zero;
  sweep<W>(0, n, [&](Index m, auto lanes) {
    const B z = load<B>(ev + m, lanes, kNegInf), t = load<B>(av + m, lanes, kNegInf);
    const B d = z - msb;
    const B a = simd::exp2_nonpositive(fms(t - mtb, k2, l2));
    store(ev + m, simd::exp2_nonpositive(d * log2e), lanes);
    store(av + m, a, lanes);
    const auto finite = z > ninf;
    linear.add(select(finite, a * d, zero));
    uncovered_mask = uncovered_mask | (~finite & (t > ninf));
  });
  const bool uncovered = any(uncovered_mask);

  // Suffix sums of e, local to each of C segments of the ranking (C chains at once), then the
  // carries: the totals of the segments after each.
  const Index seg = n / C;
  auto seg_begin = [&](int c) { return c * seg; };
  auto seg_end = [&](int c) { return c + 1 < C ? (c + 1) * seg : n; };
  double carry[C], rcarry[C];
  {
    Sum acc[C];
    for (Index i = 1; i <= seg; ++i) {
      for (int c = 0; c < C; ++c) {
        const Index m = seg_end(c) - i;
        acc[c].add(static_cast<double>(ev[m]));
        cv[m] = static_cast<T>(acc[c].value());
      }
    }
    for (Index m = n - seg - 1; m >= seg_begin(C - 1); --m) {
      acc[C - 1].add(static_cast<double>(ev[m]));
      cv[m] = static_cast<T>(acc[C - 1].value());
    }
    carry[C - 1] = 0;
    for (int c = C - 2; c >= 0; --c) carry[c] = carry[c + 1] + acc[c + 1].value();
  }

  // c = local + carry; sum_k alpha_k log c_k; alpha / c (kept for the gradient) and its totals.
  const bool grad = out.row != nullptr;
  detail_pld::ShortSum<B> logs;
  auto small_mask = zero != zero;
  const B cmin = B::splat(detail_pld::min_suffix<T>());
  for (int c = 0; c < C; ++c) {
    const B carry_b = B::splat(static_cast<T>(carry[c]));
    detail_pld::ShortSum<B> rsum;
    sweep<W>(seg_begin(c), seg_end(c), [&](Index m, auto lanes) {
      const B cs = load<B>(cv + m, lanes, T(1)) + carry_b;
      const B a = load<B>(av + m, lanes, T(0));
      const auto weighted = a > zero;
      logs.add(select(weighted, a * simd::log(cs), zero));
      small_mask = small_mask | (weighted & (cs < cmin));
      if (grad) {
        const B r = select(weighted, a / cs, zero);
        store(cv + m, r, lanes);
        rsum.add(r);
      }
    });
    rcarry[c] = rsum.value();
  }
  const double scale = static_cast<double>(out.scale) * grad_factor;
  if (any(small_mask))
    return detail_pld::exact_row(teacher, student, n, kd, static_cast<double>(st.t.max), lst, uncovered, scale,
                                 out, ws);
  const double value = uncovered ? std::numeric_limits<double>::infinity()
                                 : std::max(0.0, logs.value() - linear.value());
  if (!grad) return {value, RowError::None};

  // Prefix sums P of alpha / c (C chains, each started at the totals before its segment),
  // scattered back to class order.
  for (int c = C - 1; c >= 0; --c) {
    double before = 0;
    for (int b = 0; b < c; ++b) before += rcarry[b];
    rcarry[c] = before;
  }
  T* const pc = ws.prefix.data();
  {
    Sum acc[C];
    for (int c = 0; c < C; ++c) acc[c].add(rcarry[c]);
    for (Index i = 0; i < seg; ++i) {
      for (int c = 0; c < C; ++c) {
        const Index m = seg_begin(c) + i;
        acc[c].add(static_cast<double>(cv[m]));
        pc[idx[m]] = static_cast<T>(acc[c].value());
      }
    }
    for (Index m = C * seg; m < n; ++m) {
      acc[C - 1].add(static_cast<double>(cv[m]));
      pc[idx[m]] = static_cast<T>(acc[C - 1].value());
    }
  }

  // The gradient in class order: e P - alpha, times the scale.
  const B sc = B::splat(static_cast<T>(scale));
  auto entry = [&](Index j, auto lanes) {
    const B e = simd::exp2_nonpositive((load<B>(student + j, lanes, kNegInf) - msb) * log2e);
    const B a = simd::exp2_nonpositive(fms(load<B>(teacher + j, lanes, kNegInf) - mtb, k2, l2));
    return sc * fms(e, load<B>(pc + j, lanes, T(0)), a);
  };
  T* const g = out.row;
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
