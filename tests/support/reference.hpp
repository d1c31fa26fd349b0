// Naive double-precision reference formulas, written independently of include/kdloss (plain loops,
// std::exp/std::log, no SIMD, no online tricks). The tests' oracle.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace kdtest::ref {

/// The oracle's extended precision (80-bit on x86-64), where a sum needs more than double.
using LD = long double;
constexpr double kInf = std::numeric_limits<double>::infinity();

/// One row's reference result: value, gradient wrt s, and error scales for the comparisons
/// (the size of the terms a float computation rounds: bounds are multiples of eps times these).
struct Row {
  double value = 0;
  std::vector<double> grad;
  double value_scale = 0;           ///< sum of |terms| of the value
  std::vector<double> grad_scale;   ///< per entry: |terms| of the gradient entry
};

/// log softmax(z / tau), -inf entries stay -inf; requires one finite entry. Sums in long double so
/// the reference's own rounding stays far below a double kernel's.
inline std::vector<double> log_softmax(const double* z, long v, double tau) {
  double m = -kInf;
  for (long j = 0; j < v; ++j) m = std::max(m, z[j]);
  long double s = 0;
  for (long j = 0; j < v; ++j) s += std::exp(static_cast<long double>(z[j] - m) / tau);
  const long double l = std::log(s);
  std::vector<double> out(static_cast<size_t>(v));
  for (long j = 0; j < v; ++j)
    out[static_cast<size_t>(j)] = static_cast<double>(static_cast<long double>(z[j] - m) / tau - l);
  return out;
}

/// KL(a || b) from log-probabilities, with 0 log 0 = 0 and a > 0 = b giving +inf.
inline double kl(const std::vector<double>& la, const std::vector<double>& lb) {
  long double r = 0;
  for (size_t j = 0; j < la.size(); ++j) {
    if (la[j] == -kInf) continue;
    if (lb[j] == -kInf) return kInf;
    r += std::exp(static_cast<long double>(la[j])) * (static_cast<long double>(la[j]) - lb[j]);
  }
  return static_cast<double>(r);
}

/// Forward KL row: KL(p||q), gradient (q - p) / tau.
inline Row forward_kl(const double* s, const double* t, long v, double tau) {
  const auto lq = log_softmax(s, v, tau), lp = log_softmax(t, v, tau);
  Row r;
  r.value = kl(lp, lq);
  r.grad.resize(lq.size());
  r.grad_scale.resize(lq.size());
  for (size_t j = 0; j < lq.size(); ++j) {
    const double p = std::exp(lp[j]), q = std::exp(lq[j]);
    r.grad[j] = (q - p) / tau;
    // A float exp(x) carries a relative error of about eps*|x| from the rounding of x itself:
    // entry errors scale with p|log p| and q|log q|.
    const double ap = lp[j] == -kInf ? 0 : p * (std::fabs(lp[j]) + 1);
    const double aq = lq[j] == -kInf ? 0 : q * (std::fabs(lq[j]) + 1);
    r.grad_scale[j] = (ap + aq) / tau;
    if (lp[j] != -kInf)
      r.value_scale += p * ((std::fabs(lp[j]) + 1) * (std::fabs(lp[j] - lq[j]) + 1) +
                            std::fabs(lp[j]) + std::fabs(lq[j]) + 1);
  }
  return r;
}

/// Reverse KL row: KL(q||p), gradient q (log q - log p - L) / tau.
inline Row reverse_kl(const double* s, const double* t, long v, double tau) {
  const auto lq = log_softmax(s, v, tau), lp = log_softmax(t, v, tau);
  Row r;
  r.value = kl(lq, lp);
  r.grad.resize(lq.size());
  r.grad_scale.resize(lq.size());
  for (size_t j = 0; j < lq.size(); ++j) {
    const double q = std::exp(lq[j]);
    if (lq[j] == -kInf) continue;  // q = 0: gradient 0
    const double x = lq[j] - lp[j] - r.value;
    r.grad[j] = q * x / tau;
    // q's own relative error (eps*|log q|) times |x|, plus the rounding of x's terms.
    r.grad_scale[j] =
        q * ((std::fabs(lq[j]) + 1) * std::fabs(x) + std::fabs(lq[j]) + std::fabs(lp[j]) +
             std::fabs(r.value) + 1) / tau;
    r.value_scale += q * ((std::fabs(lq[j]) + 1) * (std::fabs(lq[j] - lp[j]) + 1) +
                          std::fabs(lp[j]) + std::fabs(lq[j]) + 1);
  }
  return r;
}

/// How the reference reduces rows (mirrors the documented semantics, written separately).
struct Reduce {
  enum Kind { Sum, BatchMean } kind = BatchMean;
  double temperature = 1;
  bool t2 = false;
  double denominator = 0;  ///< > 0 overrides sum of weights
};

/// Whole-matrix reference: value and gradient of sum_i w_i L_i scaled as `red` says.
struct Matrix {
  double value = 0, value_scale = 0;
  std::vector<std::vector<double>> grad, grad_scale;
};

template <class RowFn>
Matrix reduce(RowFn row, const double* s, const double* t, long n, long v, const double* w,
              const Reduce& red) {
  double wsum = 0;
  for (long i = 0; i < n; ++i) wsum += w ? w[i] : 1.0;
  double d = 1;
  if (red.kind == Reduce::BatchMean) d = red.denominator > 0 ? red.denominator : wsum;
  Matrix m;
  m.grad.assign(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(v), 0.0));
  m.grad_scale = m.grad;
  if (!(wsum > 0)) return m;
  const double c = (red.t2 ? red.temperature * red.temperature : 1.0) / d;
  for (long i = 0; i < n; ++i) {
    const double wi = w ? w[i] : 1.0;
    if (wi == 0) continue;
    const Row r = row(s + i * v, t + i * v, v, red.temperature);
    m.value += wi * c * r.value;
    m.value_scale += wi * c * r.value_scale;
    for (long j = 0; j < v; ++j) {
      m.grad[static_cast<size_t>(i)][static_cast<size_t>(j)] = wi * c * r.grad[static_cast<size_t>(j)];
      m.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] =
          wi * c * r.grad_scale[static_cast<size_t>(j)];
    }
  }
  return m;
}

}  // namespace kdtest::ref
