// The straightforward Eigen implementation of SinKD's Sinkhorn loss that the Sinkhorn benchmark
// runs beside kdloss: what a user porting SinKD's PyTorch code writes. Softmax matrices as array
// expressions; W by explicit pairs of rows with Eigen row operations (cdist p=1); the plain
// multiplicative iterations (K / rowsum, K / colsum) in T, every intermediate matrix kept; the
// backward as autograd would run it, step by step through the stored matrices, then
// sum_j dW_ij sign(P_s[i] - P_t[j]) with Eigen row operations and the softmax backward.
// Buffers are members (allocated once per shape), BatchMean reduction (L / N), no temperature
// scaling.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <vector>

#include "baselines.hpp"

namespace kdbench {

template <class T>
struct NaiveSinkhorn {
  using Mat = RowMatrix<T>;
  Mat ps, pt, w, gp;
  std::vector<Mat> k;          // K_0, then the plan after every row and column step
  std::vector<Eigen::Matrix<T, Eigen::Dynamic, 1>> sums;

  static void softmax(const Mat& x, Mat& p, T tau) {
    p = x / tau;
    p.colwise() -= p.rowwise().maxCoeff();
    p = p.array().exp().matrix();
    p.array().colwise() /= p.array().rowwise().sum();
  }

  T operator()(const Mat& S, const Mat& Tm, Mat* G, T tau, T eps, int iters) {
    const Eigen::Index n = S.rows();
    softmax(S, ps, tau);
    softmax(Tm, pt, tau);
    w.resize(n, n);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j) w(i, j) = (ps.row(i) - pt.row(j)).cwiseAbs().sum();
    k.resize(static_cast<size_t>(2 * iters + 1));
    sums.resize(static_cast<size_t>(2 * iters));
    k[0] = (-w / eps).array().exp().matrix();
    for (int s = 0; s < 2 * iters; ++s) {
      const size_t a = static_cast<size_t>(s);
      if (s % 2 == 0) {
        sums[a] = k[a].rowwise().sum();
        k[a + 1] = k[a].array().colwise() / sums[a].array();
      } else {
        sums[a] = k[a].colwise().sum().transpose();
        k[a + 1] = k[a].array().rowwise() / sums[a].transpose().array();
      }
    }
    const Mat& plan = k.back();
    const T loss = (plan.array() * w.array()).sum() / T(n);
    if (!G) return loss;
    // Backward: dL/dPlan = W / n, through every normalisation, then K = exp(-W/eps).
    Mat dy = w / T(n);
    for (int s = 2 * iters - 1; s >= 0; --s) {
      const size_t a = static_cast<size_t>(s);
      const Mat& y = k[a + 1];
      if (s % 2 == 0) {
        const Eigen::Matrix<T, Eigen::Dynamic, 1> dot = (dy.array() * y.array()).rowwise().sum();
        dy = ((dy.array().colwise() - dot.array()).colwise() / sums[a].array()).matrix();
      } else {
        const Eigen::Matrix<T, 1, Eigen::Dynamic> dot = (dy.array() * y.array()).colwise().sum();
        dy = ((dy.array().rowwise() - dot.array()).rowwise() / sums[a].transpose().array()).matrix();
      }
    }
    const Mat dw = plan / T(n) - (dy.array() * k[0].array()).matrix() / eps;
    gp.setZero(n, S.cols());
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j) gp.row(i) += dw(i, j) * (ps.row(i) - pt.row(j)).array().sign().matrix();
    const Eigen::Matrix<T, Eigen::Dynamic, 1> dot = (ps.array() * gp.array()).rowwise().sum();
    G->array() = ps.array() * (gp.array().colwise() - dot.array()) / tau;
    return loss;
  }
};

}  // namespace kdbench
