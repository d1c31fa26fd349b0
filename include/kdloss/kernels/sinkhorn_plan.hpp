// kdloss kernels: the N x N part of Sinkhorn in double — log-domain row and column normalisations,
// the plan and its loss, and the analytic adjoint of the unrolled iterations.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "sweep.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

// Notation (n points, log-kernel M = -C/eps, all n x n row-major double):
//   f_k[i] = log sum_j exp(M_ij - g_{k-1}[j])     (row step k; g_0 = 0)
//   g_k[j] = log sum_i exp(M_ij - f_k[i])         (column step k)
// The plan after row step k is alpha^k_ij = exp(M_ij - g_{k-1}[j] - f_k[i]) (rows sum to 1) and after
// column step k it is beta^k_ij = exp(M_ij - f_k[i] - g_k[j]) (columns sum to 1): exactly SinKD's
// "K / rowsum(K), then K / colsum(K)" with K = exp(M), every intermediate kept in log form, so no
// exp(-C/eps) ever underflows. Every exponent taken below is <= 0 up to rounding (entries of
// normalised plans, or terms shifted by their maximum).

/// Row step: \f$f_i = \log\sum_j e^{M_{ij} - g_j}\f$ (two passes over each row: max, then the sum).
template <class Arch>
void sinkhorn_row_step(const double* m, Index n, const double* g, double* f) {
  using B = simd::batch<double, Arch>;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (Index i = 0; i < n; ++i) {
    const double* mi = m + i * n;
    B mx = B::splat(-kInf);
    sweep<B::size>(0, n, [&](Index j, auto lanes) {
      mx = max(load<B>(mi + j, lanes, -kInf) - load<B>(g + j, lanes, 0.0), mx);
    });
    const double top = hmax(mx);
    const B topb = B::splat(top);
    B s = B::splat(0.0);
    sweep<B::size>(0, n, [&](Index j, auto lanes) {
      s = s + simd::exp(load<B>(mi + j, lanes, -kInf) - load<B>(g + j, lanes, 0.0) - topb);
    });
    f[i] = top + std::log(hsum(s));
  }
}

/// Column step: \f$g_j = \log\sum_i e^{M_{ij} - f_i}\f$, vectorised across j (rows are swept twice:
/// column maxima, then the shifted sums). `cmax` and `csum` are n doubles of scratch; they are left
/// holding the column maxima and the shifted sums (for `sinkhorn_plan`).
template <class Arch>
void sinkhorn_col_step(const double* m, Index n, const double* f, double* g, double* cmax, double* csum) {
  using B = simd::batch<double, Arch>;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::fill(cmax, cmax + n, -kInf);
  std::fill(csum, csum + n, 0.0);
  for (Index i = 0; i < n; ++i) {
    const double* mi = m + i * n;
    const B fi = B::splat(f[i]);
    sweep<B::size>(0, n, [&](Index j, auto lanes) {
      store(cmax + j, max(load<B>(mi + j, lanes, -kInf) - fi, load<B>(cmax + j, lanes, -kInf)), lanes);
    });
  }
  for (Index i = 0; i < n; ++i) {
    const double* mi = m + i * n;
    const B fi = B::splat(f[i]);
    sweep<B::size>(0, n, [&](Index j, auto lanes) {
      const B e = simd::exp(load<B>(mi + j, lanes, -kInf) - fi - load<B>(cmax + j, lanes, 0.0));
      store(csum + j, load<B>(csum + j, lanes, 0.0) + e, lanes);
    });
  }
  for (Index j = 0; j < n; ++j) g[j] = cmax[j] + std::log(csum[j]);
}

/// Largest \f$|e^{f^{new}_i - f^{old}_i} - 1|\f$: the row-marginal error of the plan after the
/// column step that `f_old` belongs to (its row sums are exactly \f$e^{f^{new} - f^{old}}\f$, where
/// f_new is the next row step). Lets an early stop cost nothing extra.
inline double sinkhorn_row_error(const double* f_new, const double* f_old, Index n) {
  double e = 0;
  for (Index i = 0; i < n; ++i) e = std::max(e, std::fabs(std::expm1(f_new[i] - f_old[i])));
  return e;
}

/// What the plan pass returns.
struct PlanResult {
  double loss = 0;          ///< \f$\sum_{ij}\Pi_{ij} C_{ij}\f$
  double row_error = 0;     ///< \f$\max_i |\sum_j \Pi_{ij} - 1|\f$
};

/// The final plan \f$\Pi_{ij} = e^{M_{ij} - f_i - g_j}\f$ (written to `plan`) and the loss
/// \f$\sum_{ij}\Pi_{ij}C_{ij}\f$ (rows summed in order, in double), from the last column step's
/// parts of \f$g_j\f$: its column maxima `cmax` and the logs of its shifted sums `log_csum`
/// (\f$g_j\f$ = cmax + log_csum). The exponent \f$(M_{ij} - f_i - \mathrm{cmax}_j) -
/// \mathrm{log\_csum}_j\f$ repeats the column step's own (its first part is the very value that step
/// exponentiated), so every column of the plan sums to 1 within a few ulp of 1 per entry. With
/// \f$g_j\f$ itself it would not: where \f$|M| \sim C/\varepsilon\f$ is large (a small epsilon),
/// the rounding of \f$g_j\f$ (about an ulp of \f$|g_j|\f$) moves a whole column's sum by as much.
template <class Arch>
PlanResult sinkhorn_plan(const double* m, const double* c, Index n, const double* f, const double* cmax,
                         const double* log_csum, double* plan) {
  using B = simd::batch<double, Arch>;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  PlanResult r;
  for (Index i = 0; i < n; ++i) {
    const double* mi = m + i * n;
    const double* ci = c + i * n;
    double* pi = plan + i * n;
    const B fi = B::splat(f[i]);
    B rs = B::splat(0.0), ls = B::splat(0.0);
    sweep<B::size>(0, n, [&](Index j, auto lanes) {
      const B p = simd::exp(load<B>(mi + j, lanes, -kInf) - fi - load<B>(cmax + j, lanes, 0.0) -
                            load<B>(log_csum + j, lanes, 0.0));
      store(pi + j, p, lanes);
      rs = rs + p;
      ls = fma(p, load<B>(ci + j, lanes, 0.0), ls);
    });
    r.loss += hsum(ls);
    r.row_error = std::max(r.row_error, std::fabs(hsum(rs) - 1.0));
  }
  return r;
}

/// Scratch of the adjoint: five vectors of n doubles.
struct AdjointScratch {
  double *fbar, *gbar, *gnext, *u, *row;
};

/// The exact gradient \f$D = \partial L/\partial C\f$ of \f$L = \sum_{ij}\Pi_{ij}C_{ij}\f$ through
/// the `iters` unrolled row/column steps (reverse mode, written out by hand), into `d` (n x n).
///
/// With \f$\bar M\f$, \f$\bar f_k\f$, \f$\bar g_k\f$ the adjoints of M, f_k, g_k:
/// start \f$\bar M = \Pi \odot C\f$, \f$\bar f_K = -\mathrm{rowsum}(\Pi\odot C)\f$,
/// \f$\bar g_K = -\mathrm{colsum}(\Pi\odot C)\f$; then for k = K..1,
/// column step: \f$\bar M \mathrel{+}= \beta^k \mathrm{diag}(\bar g_k)\f$,
/// \f$\bar f_k \mathrel{-}= \beta^k \bar g_k\f$; row step: \f$\bar M \mathrel{+}= \mathrm{diag}(\bar f_k)
/// \alpha^k\f$, \f$\bar g_{k-1} = -(\alpha^k)^\top \bar f_k\f$. Finally
/// \f$D = \Pi + \bar M\,\partial M/\partial C = \Pi - \bar M/\varepsilon\f$.
/// \f$\alpha^k = \beta^k \mathrm{diag}(u)\f$ with \f$u_j = e^{g_k[j] - g_{k-1}[j]}\f$ (the column sums of
/// \f$\alpha^k\f$, so \f$0 < u_j \le n\f$): one exp per entry and iteration. Only f_k and g_k are
/// stored, O(K n) memory; the plans are recomputed. Each adjoint map is a product with a
/// row- or column-stochastic matrix, so \f$\|\bar f\|_1\f$ and \f$\|\bar g\|_1\f$ never grow.
///
/// \param f      f_1..f_K, f_k at `f + (k-1)*n`
/// \param g      g_0..g_K, g_k at `g + k*n` (g_0 = 0)
/// \param mbar   n x n scratch
template <class Arch>
void sinkhorn_adjoint(const double* m, const double* c, const double* plan, Index n, const double* f,
                      const double* g, int iters, double inv_eps, double* mbar, AdjointScratch s, double* d) {
  using B = simd::batch<double, Arch>;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::fill(s.gbar, s.gbar + n, 0.0);
  for (Index i = 0; i < n; ++i) {
    const double* ci = c + i * n;
    const double* pi = plan + i * n;
    double* mb = mbar + i * n;
    B rs = B::splat(0.0);
    sweep<B::size>(0, n, [&](Index j, auto lanes) {
      const B pc = load<B>(pi + j, lanes, 0.0) * load<B>(ci + j, lanes, 0.0);
      store(mb + j, pc, lanes);
      rs = rs + pc;
      store(s.gbar + j, load<B>(s.gbar + j, lanes, 0.0) - pc, lanes);
    });
    s.fbar[i] = -hsum(rs);
  }
  for (int k = iters; k >= 1; --k) {
    const double* fk = f + static_cast<Index>(k - 1) * n;
    const double* gk = g + static_cast<Index>(k) * n;
    const double* gk1 = g + static_cast<Index>(k - 1) * n;
    for (Index j = 0; j < n; ++j) s.u[j] = std::exp(gk[j] - gk1[j]);
    std::fill(s.gnext, s.gnext + n, 0.0);
    for (Index i = 0; i < n; ++i) {
      const double* mi = m + i * n;
      double* mb = mbar + i * n;
      const B fi = B::splat(fk[i]);
      // column step k: beta row, and fbar_k[i] -= sum_j beta_ij gbar_k[j]
      B acc = B::splat(0.0);
      sweep<B::size>(0, n, [&](Index j, auto lanes) {
        const B beta = simd::exp(load<B>(mi + j, lanes, -kInf) - fi - load<B>(gk + j, lanes, 0.0));
        store(s.row + j, beta, lanes);
        acc = fma(beta, load<B>(s.gbar + j, lanes, 0.0), acc);
      });
      const double fb = (k == iters ? s.fbar[i] : 0.0) - hsum(acc);
      const B fbb = B::splat(fb);
      // row step k: alpha = beta * u; mbar += beta gbar + alpha fbar; gbar_{k-1} -= alpha^T fbar
      sweep<B::size>(0, n, [&](Index j, auto lanes) {
        const B beta = load<B>(s.row + j, lanes, 0.0);
        const B af = beta * load<B>(s.u + j, lanes, 0.0) * fbb;
        const B bg = beta * load<B>(s.gbar + j, lanes, 0.0);
        store(mb + j, load<B>(mb + j, lanes, 0.0) + bg + af, lanes);
        store(s.gnext + j, load<B>(s.gnext + j, lanes, 0.0) - af, lanes);
      });
    }
    std::swap(s.gbar, s.gnext);
  }
  const B ie = B::splat(inv_eps);
  for (Index i = 0; i < n; ++i) {
    const double* pi = plan + i * n;
    const double* mb = mbar + i * n;
    double* di = d + i * n;
    sweep<B::size>(0, n, [&](Index j, auto lanes) {
      store(di + j, fnma(load<B>(mb + j, lanes, 0.0), ie, load<B>(pi + j, lanes, 0.0)), lanes);
    });
  }
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
