// Baselines every kdloss benchmark runs beside, in the same binary:
//  - whole-matrix Eigen: log-softmax of both N x V matrices as array expressions, then the loss and
//    softmax(S) - softmax(T) (what a user writes first);
//  - row-at-a-time Eigen: one row in cache at a time (max, exp-sum, then loss and gradient with
//    Eigen array ops, row buffers allocated once) — what a performance-aware user writes;
//  - a memory-streaming roofline of the same bytes: read S and T (and write dS).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <kdloss/types.hpp>

namespace kdbench {

template <class T>
using RowMatrix = kdloss::RowMatrix<T>;
template <class T>
using RowArray = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

enum class Div { Forward, Reverse };

/// Whole-matrix Eigen: materialises log-softmax of both sides (N x V temporaries).
template <Div D, class T>
T eigen_whole(const RowMatrix<T>& S, const RowMatrix<T>& Tm, RowMatrix<T>* G, T tau) {
  const Eigen::Index n = S.rows();
  RowArray<T> ls = S.array() / tau, lt = Tm.array() / tau;
  ls.colwise() -= ls.rowwise().maxCoeff();
  lt.colwise() -= lt.rowwise().maxCoeff();
  ls.colwise() -= ls.exp().rowwise().sum().log();
  lt.colwise() -= lt.exp().rowwise().sum().log();
  if (D == Div::Forward) {
    const T loss = (lt.exp() * (lt - ls)).sum() / T(n);
    if (G) G->array() = (ls.exp() - lt.exp()) / (tau * T(n));
    return loss;
  }
  const RowArray<T> kl_rows = (ls.exp() * (ls - lt)).rowwise().sum();
  const T loss = kl_rows.sum() / T(n);
  if (G) G->array() = ls.exp() * ((ls - lt).colwise() - kl_rows.col(0)) / (tau * T(n));
  return loss;
}

/// Row-at-a-time Eigen with row buffers allocated once.
template <Div D, class T>
struct EigenRows {
  Eigen::Array<T, 1, Eigen::Dynamic> es, et;
  T operator()(const RowMatrix<T>& S, const RowMatrix<T>& Tm, RowMatrix<T>* G, T tau) {
    const Eigen::Index n = S.rows(), v = S.cols();
    es.resize(v);
    et.resize(v);
    double total = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto s = S.row(i).array();
      const auto t = Tm.row(i).array();
      const T ms = s.maxCoeff(), mt = t.maxCoeff();
      es = ((s - ms) / tau).exp();
      et = ((t - mt) / tau).exp();
      const T ls = std::log(es.sum()), lt = std::log(et.sum());
      // log p - log q, entry by entry
      const auto d = (t - mt) / tau - lt - ((s - ms) / tau - ls);
      if (D == Div::Forward) {
        total += static_cast<double>((et * d).sum() / std::exp(lt));
        if (G) G->row(i).array() = (es / std::exp(ls) - et / std::exp(lt)) / (tau * T(n));
      } else {
        const T kl = (es * -d).sum() / std::exp(ls);
        total += static_cast<double>(kl);
        if (G) G->row(i).array() = es / std::exp(ls) * (-d - kl) / (tau * T(n));
      }
    }
    return static_cast<T>(total / static_cast<double>(n));
  }
};

/// Memory-streaming roofline: reads S and T, and writes G when given (12 bytes per float element).
template <class T>
T roofline(const RowMatrix<T>& S, const RowMatrix<T>& Tm, RowMatrix<T>* G) {
  if (G) {
    G->noalias() = S - Tm;
    return (*G)(0, 0);
  }
  return (S.array() + Tm.array()).sum();
}

}  // namespace kdbench

namespace kdbench {

/// The naive row-at-a-time Eigen version of any f-divergence a competent user writes: per row,
/// log-softmax of both sides with Eigen array ops, the value from `term(p, q, lp, lq)` and the
/// gradient q (g - sum q g) / tau with g = `g(p, q, lp, lq)` = dD/dq (row buffers allocated once).
template <class T>
struct NaiveRows {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  Row lp, lq, p, q, g;
  template <class Term, class G>
  T operator()(const RowMatrix<T>& S, const RowMatrix<T>& Tm, RowMatrix<T>* grad, T tau, Term term, G gfun) {
    const Eigen::Index n = S.rows();
    double total = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      lq = S.row(i).array() / tau;
      lp = Tm.row(i).array() / tau;
      lq -= lq.maxCoeff();
      lp -= lp.maxCoeff();
      lq -= std::log(lq.exp().sum());
      lp -= std::log(lp.exp().sum());
      p = lp.exp();
      q = lq.exp();
      total += static_cast<double>(term(p, q, lp, lq).sum());
      if (grad) {
        g = gfun(p, q, lp, lq);
        grad->row(i).array() = q * (g - (q * g).sum()) / (tau * T(n));
      }
    }
    return static_cast<T>(total / static_cast<double>(n));
  }
};

}  // namespace kdbench
