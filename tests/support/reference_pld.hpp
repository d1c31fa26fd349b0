// Long-double reference of Plackett-Luce distillation (PLD), from the definition and written
// independently of include/kdloss: the ranking by a std::stable_sort of the teacher row, the
// log-sum-exp of every suffix, and the gradient as the sum over stages of alpha_k times the
// stage's softmax. Also the plain ListMLE of a given order, for the special-case tests.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "reference.hpp"

namespace kdtest::ref {

/// PLD's ranking: the label, then every other class by teacher logit descending, ties by lower
/// class index first (a stable sort).
inline std::vector<long> pld_ranking(const double* t, long v, long label) {
  std::vector<long> order;
  order.reserve(static_cast<size_t>(v));
  for (long j = 0; j < v; ++j)
    if (j != label) order.push_back(j);
  std::stable_sort(order.begin(), order.end(), [&](long a, long b) { return t[a] > t[b]; });
  order.insert(order.begin(), label);
  return order;
}

/// The weighted Plackett-Luce loss of the student logits s for a given order and given stage
/// weights w (w[k] weighs stage k, the choice of order[k] among order[k..]):
/// sum_k w_k (log sum_{l >= k} exp(s[order[l]]) - s[order[k]]), each suffix log-sum-exp computed
/// on its own (O(V^2)); stages with w_k = 0 add nothing.
inline double weighted_plackett_luce(const double* s, const std::vector<long>& order, const std::vector<long double>& w) {
  const size_t v = order.size();
  long double value = 0;
  for (size_t k = 0; k < v; ++k) {
    if (w[k] == 0) continue;
    long double mx = -kInf;
    for (size_t l = k; l < v; ++l) mx = std::max(mx, static_cast<long double>(s[order[l]]));
    long double sum = 0;
    for (size_t l = k; l < v; ++l) sum += std::exp(static_cast<long double>(s[order[l]]) - mx);
    value += w[k] * (mx + std::log(sum) - static_cast<long double>(s[order[k]]));
  }
  return static_cast<double>(value);
}

/// One PLD row (label `label`, teacher temperature tau): value, gradient (no 1/tau: the student
/// is not softened) and error scales.
///
/// `direct`: every suffix log-sum-exp and every gradient entry from its definition, O(V^2).
/// Otherwise the suffix sums c_k = sum_{l >= k} exp(z_l - max s) accumulate from the back in long
/// double, and dL/dz_m = exp(z_m - max s) * sum_{k <= m} alpha_k / c_k - alpha_m (O(V)); the two
/// agree (tested).
///
/// Conventions (the documented ones): alpha = 0 for a -inf teacher logit; a stage whose remaining
/// student logits are all -inf adds nothing to the gradient; a finite teacher logit on a -inf
/// student logit makes the value +inf.
///
/// Error scales, in units of eps of the computation type: a float exp(x) carries a relative error
/// of about eps (|x| + a few) from the rounding of x, so alpha_k is off by eps (|log-ratio| +
/// log S_t + 4), e_m = exp(z_m - max s) by eps (|z_m - max s| + 4), a suffix sum by the
/// e-weighted mean of those plus its own roundings; the value rounds alpha_k times its term, the
/// log of c_k and z_k - max s; a gradient entry rounds every stage's alpha_k e_m / c_k with all of
/// their factors' errors, and alpha_m.
inline Row plackett_luce(const double* s, const double* t, long v, long label, double tau, bool direct = false) {
  const std::vector<long> order = pld_ranking(t, v, label);
  const size_t n = static_cast<size_t>(v);
  LD mt = -kInf, ms = -kInf;
  for (long j = 0; j < v; ++j) mt = std::max(mt, static_cast<LD>(t[j])), ms = std::max(ms, static_cast<LD>(s[j]));
  LD st = 0;
  for (long j = 0; j < v; ++j) st += std::exp((static_cast<LD>(t[j]) - mt) / tau);
  const LD lst = std::log(st);
  std::vector<LD> a(n), z(n), e(n), da(n), de(n);
  bool uncovered = false;
  for (size_t k = 0; k < n; ++k) {
    const double tk = t[order[k]];
    z[k] = s[order[k]];
    a[k] = tk == -kInf ? 0 : std::exp((static_cast<LD>(tk) - mt) / tau - lst);
    da[k] = tk == -kInf ? 0 : std::fabs((static_cast<LD>(tk) - mt) / tau) + lst + 4;
    e[k] = z[k] == -kInf ? 0 : std::exp(z[k] - ms);
    de[k] = z[k] == -kInf ? 0 : std::fabs(z[k] - ms) + 4;
    if (tk != -kInf && z[k] == -kInf) uncovered = true;
  }
  // Suffix sums c_k, their error sums, and log-sum-exps (relative to max s).
  std::vector<LD> c(n), ce(n);
  {
    LD sum = 0, err = 0;
    for (size_t k = n; k-- > 0;) {
      sum += e[k];
      err += e[k] * de[k];
      c[k] = sum;
      ce[k] = err;
    }
  }
  if (direct) {
    for (size_t k = 0; k < n; ++k) {
      LD mx = -kInf;
      for (size_t l = k; l < n; ++l) mx = std::max(mx, z[l]);
      if (mx == -kInf) {
        c[k] = 0;
        continue;
      }
      LD sum = 0;
      for (size_t l = k; l < n; ++l) sum += std::exp(z[l] - mx);
      c[k] = std::exp(mx - ms) * sum;  // the same quantity, from the definition
    }
  }
  Row r;
  r.grad.assign(n, 0.0);
  r.grad_scale.assign(n, 0.0);
  LD value = 0, vscale = 0;
  for (size_t k = 0; k < n; ++k) {
    if (a[k] == 0 || c[k] == 0) continue;
    const LD lse = std::log(c[k]);  // LSE_k - max s
    const LD dc = ce[k] / c[k] + 2;
    if (z[k] != -kInf) {
      value += a[k] * (lse - (z[k] - ms));
      vscale += a[k] * (da[k] * (lse - (z[k] - ms)) + std::fabs(lse) + std::fabs(z[k] - ms) + dc + 2);
    }
  }
  r.value = uncovered ? kInf : static_cast<double>(value);
  r.value_scale = static_cast<double>(vscale);
  // Gradient: dL/dz_m = sum_{k <= m} alpha_k e_m / c_k - alpha_m.
  if (direct) {
    for (size_t m = 0; m < n; ++m) {
      LD g = -a[m], gs = a[m] * (da[m] + 1);
      for (size_t k = 0; k <= m; ++k) {
        if (a[k] == 0 || c[k] == 0) continue;
        const LD share = e[m] / c[k];
        g += a[k] * share;
        gs += a[k] * share * (da[k] + ce[k] / c[k] + 2 + de[m] + 4);
      }
      r.grad[static_cast<size_t>(order[m])] = static_cast<double>(g);
      r.grad_scale[static_cast<size_t>(order[m])] = static_cast<double>(gs);
    }
  } else {
    LD q = 0, w = 0;
    for (size_t m = 0; m < n; ++m) {
      if (a[m] != 0 && c[m] != 0) {
        q += a[m] / c[m];
        w += a[m] / c[m] * (da[m] + ce[m] / c[m] + 2 + 4);
      }
      r.grad[static_cast<size_t>(order[m])] = static_cast<double>(e[m] * q - a[m]);
      r.grad_scale[static_cast<size_t>(order[m])] = static_cast<double>(e[m] * (w + q * de[m]) + a[m] * (da[m] + 1));
    }
  }
  return r;
}

}  // namespace kdtest::ref
