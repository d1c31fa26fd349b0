// Naive double-precision reference of SinKD's Sinkhorn loss, written independently of
// include/kdloss: plain loops, the multiplicative (non-log-domain) iterations exactly as SinKD writes
// them (K = exp(-W/eps); K /= rowsum; K /= colsum), every intermediate matrix kept, and the
// gradient by reverse mode through those stored matrices (the derivative of x / rowsum(x) applied
// step by step, as autograd would). Valid while exp(-W/eps) does not underflow (eps >~ 0.005).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <vector>

#include "reference.hpp"

namespace kdtest::ref {

using Mat = std::vector<std::vector<double>>;

inline Mat zeros(long r, long c) { return Mat(static_cast<size_t>(r), std::vector<double>(static_cast<size_t>(c), 0.0)); }

/// What the reference computes (unreduced: L = sum_ij Pi_ij W_ij, gradient of that L).
struct SinkhornRef {
  double loss = 0;
  Mat ps, pt;        ///< softmax rows
  Mat cost;          ///< W
  Mat plan;          ///< Pi after the last column step
  Mat dcost;         ///< dL/dW (exact, or Pi for the envelope)
  Mat grad;          ///< dL/dS (n x v)
  double row_error = 0;  ///< max_i |sum_j Pi_ij - 1|
};

/// SinKD's loss for student logits s and teacher logits t (n x v, row-major), temperature tau.
/// \param l1       W = L1 distance (else squared Euclidean)
/// \param envelope dL/dW = Pi instead of the exact reverse-mode derivative
inline SinkhornRef sinkhorn(const double* s, const double* t, long n, long v, double tau, double eps, int iters,
                            bool l1, bool envelope) {
  SinkhornRef r;
  const size_t N = static_cast<size_t>(n), V = static_cast<size_t>(v);
  r.ps = zeros(n, v);
  r.pt = zeros(n, v);
  for (size_t i = 0; i < N; ++i) {
    const auto lq = log_softmax(s + i * V, v, tau), lp = log_softmax(t + i * V, v, tau);
    for (size_t k = 0; k < V; ++k) r.ps[i][k] = std::exp(lq[k]), r.pt[i][k] = std::exp(lp[k]);
  }
  r.cost = zeros(n, n);
  for (size_t i = 0; i < N; ++i)
    for (size_t j = 0; j < N; ++j) {
      long double acc = 0;
      for (size_t k = 0; k < V; ++k) {
        const long double diff = static_cast<long double>(r.ps[i][k]) - r.pt[j][k];
        acc += l1 ? std::fabs(diff) : diff * diff;
      }
      r.cost[i][j] = static_cast<double>(acc);
    }
  // Forward: X_0 = K; X_{2k-1} = X_{2k-2} / rowsum; X_{2k} = X_{2k-1} / colsum. Keep every X and sum.
  std::vector<Mat> x(static_cast<size_t>(2 * iters + 1), zeros(n, n));
  std::vector<std::vector<double>> sums(static_cast<size_t>(2 * iters), std::vector<double>(N));
  for (size_t i = 0; i < N; ++i)
    for (size_t j = 0; j < N; ++j) x[0][i][j] = std::exp(-r.cost[i][j] / eps);
  for (int k = 0; k < 2 * iters; ++k) {
    const Mat& a = x[static_cast<size_t>(k)];
    Mat& b = x[static_cast<size_t>(k + 1)];
    std::vector<double>& sm = sums[static_cast<size_t>(k)];
    const bool rows = k % 2 == 0;
    for (size_t p = 0; p < N; ++p) {
      double acc = 0;
      for (size_t q = 0; q < N; ++q) acc += rows ? a[p][q] : a[q][p];
      sm[p] = acc;
    }
    for (size_t i = 0; i < N; ++i)
      for (size_t j = 0; j < N; ++j) b[i][j] = a[i][j] / sm[rows ? i : j];
  }
  r.plan = x.back();
  for (size_t i = 0; i < N; ++i) {
    double rs = 0;
    for (size_t j = 0; j < N; ++j) r.loss += r.plan[i][j] * r.cost[i][j], rs += r.plan[i][j];
    r.row_error = std::max(r.row_error, std::fabs(rs - 1));
  }
  // Backward.
  r.dcost = r.plan;  // the explicit W in sum(Pi * W)
  if (!envelope) {
    Mat dy = r.cost;  // dL/dPi
    for (int k = 2 * iters - 1; k >= 0; --k) {
      // y = a / s, s = row (or column) sums of a: da = (dy - sum(dy * y) along the same axis) / s
      const Mat& y = x[static_cast<size_t>(k + 1)];
      const std::vector<double>& sm = sums[static_cast<size_t>(k)];
      const bool rows = k % 2 == 0;
      std::vector<double> dot(N, 0.0);
      for (size_t i = 0; i < N; ++i)
        for (size_t j = 0; j < N; ++j) dot[rows ? i : j] += dy[i][j] * y[i][j];
      Mat da = zeros(n, n);
      for (size_t i = 0; i < N; ++i)
        for (size_t j = 0; j < N; ++j) {
          const size_t p = rows ? i : j;
          da[i][j] = (dy[i][j] - dot[p]) / sm[p];
        }
      dy = da;
    }
    // K = exp(-W/eps): dW += dK * K * (-1/eps)
    for (size_t i = 0; i < N; ++i)
      for (size_t j = 0; j < N; ++j) r.dcost[i][j] += dy[i][j] * x[0][i][j] * (-1.0 / eps);
  }
  // dL/dP_s, then through the softmax.
  r.grad = zeros(n, v);
  for (size_t i = 0; i < N; ++i) {
    std::vector<double> gp(V, 0.0);
    for (size_t j = 0; j < N; ++j)
      for (size_t k = 0; k < V; ++k) {
        const double diff = r.ps[i][k] - r.pt[j][k];
        const double dw = l1 ? (diff > 0 ? 1.0 : diff < 0 ? -1.0 : 0.0) : 2 * diff;
        gp[k] += r.dcost[i][j] * dw;
      }
    double dot = 0;
    for (size_t k = 0; k < V; ++k) dot += r.ps[i][k] * gp[k];
    for (size_t k = 0; k < V; ++k) r.grad[i][k] = r.ps[i][k] * (gp[k] - dot) / tau;
  }
  return r;
}

}  // namespace kdtest::ref
