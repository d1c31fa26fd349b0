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
/// Otherwise the suffix log-sum-exps L_k = log sum_{l >= k} exp(z_l - max s) accumulate from the
/// back in long double (a running maximum, so no suffix underflows), and dL/dz_m =
/// exp(z_m - max s + log sum_{k <= m} alpha_k exp(-L_k)) - alpha_m (O(V), the sum kept in log
/// form); the two agree (tested).
///
/// Conventions (the documented ones): alpha = 0 for a -inf teacher logit; a stage whose remaining
/// student logits are all -inf adds nothing to the gradient; a finite teacher logit on a -inf
/// student logit makes the value +inf.
///
/// Error scales, in units of eps of the computation type: a float exp(x) carries a relative error
/// of about eps (|x| + a few) from the rounding of x, so alpha_k is off by eps (|log-ratio| +
/// log S_t + 4), e_m = exp(z_m - max s) by eps (|z_m - max s| + 4), a suffix sum by the
/// e-weighted mean of those plus its own roundings; the value rounds alpha_k times its term, L_k
/// and z_k - max s; a gradient entry rounds every stage's alpha_k exp(z_m - max s - L_k) with all
/// of their factors' errors, and alpha_m.
inline Row plackett_luce(const double* s, const double* t, long v, long label, double tau, bool direct = false) {
  const std::vector<long> order = pld_ranking(t, v, label);
  const size_t n = static_cast<size_t>(v);
  LD mt = -kInf, ms = -kInf;
  for (long j = 0; j < v; ++j) mt = std::max(mt, static_cast<LD>(t[j])), ms = std::max(ms, static_cast<LD>(s[j]));
  LD st = 0;
  for (long j = 0; j < v; ++j) st += std::exp((static_cast<LD>(t[j]) - mt) / tau);
  const LD lst = std::log(st);
  std::vector<LD> a(n), z(n), da(n), de(n);
  bool uncovered = false;
  for (size_t k = 0; k < n; ++k) {
    const double tk = t[order[k]];
    z[k] = static_cast<LD>(s[order[k]]) - ms;  // the student logit relative to max s
    a[k] = tk == -kInf ? 0 : std::exp((static_cast<LD>(tk) - mt) / tau - lst);
    da[k] = tk == -kInf ? 0 : std::fabs((static_cast<LD>(tk) - mt) / tau) + lst + 4;
    de[k] = z[k] == -kInf ? 0 : std::fabs(z[k]) + 4;
    if (tk != -kInf && z[k] == -kInf) uncovered = true;
  }
  // Suffix log-sum-exps L_k = log sum_{l >= k} exp(z_l) (relative to max s; -inf where every
  // remaining student logit is -inf) and the e-weighted means rel_k of their entries' error scales
  // de, each from the back with its own running maximum: a suffix whose classes all lie thousands
  // below max s (exp(z) underflows even in long double) keeps its true log-sum-exp, so its stage's
  // softmax is still exact (a last class alone: a share of exactly 1).
  std::vector<LD> L(n), rel(n);
  {
    LD mx = -kInf, sum = 0, err = 0;
    for (size_t k = n; k-- > 0;) {
      if (z[k] != -kInf) {
        if (z[k] > mx) {
          const LD r = mx == -kInf ? 0 : std::exp(mx - z[k]);
          sum *= r;
          err *= r;
          mx = z[k];
        }
        const LD e = std::exp(z[k] - mx);
        sum += e;
        err += e * de[k];
      }
      L[k] = mx == -kInf ? -kInf : mx + std::log(sum);
      rel[k] = mx == -kInf ? 0 : err / sum;
    }
  }
  if (direct) {
    for (size_t k = 0; k < n; ++k) {
      LD mx = -kInf;
      for (size_t l = k; l < n; ++l) mx = std::max(mx, z[l]);
      if (mx == -kInf) {
        L[k] = -kInf;
        continue;
      }
      LD sum = 0;
      for (size_t l = k; l < n; ++l) sum += std::exp(z[l] - mx);
      L[k] = mx + std::log(sum);  // the same quantity, from the definition
    }
  }
  Row r;
  r.grad.assign(n, 0.0);
  r.grad_scale.assign(n, 0.0);
  LD value = 0, vscale = 0;
  for (size_t k = 0; k < n; ++k) {
    if (a[k] == 0 || L[k] == -kInf) continue;
    const LD dc = rel[k] + 2;
    if (z[k] != -kInf) {
      value += a[k] * (L[k] - z[k]);
      vscale += a[k] * (da[k] * (L[k] - z[k]) + std::fabs(L[k]) + std::fabs(z[k]) + dc + 2);
    }
  }
  r.value = uncovered ? kInf : static_cast<double>(value);
  r.value_scale = static_cast<double>(vscale);
  // Gradient: dL/dz_m = sum_{k <= m} alpha_k exp(z_m - L_k) - alpha_m, each stage's softmax share
  // exp(z_m - L_k) taken in log form.
  if (direct) {
    for (size_t m = 0; m < n; ++m) {
      LD g = -a[m], gs = a[m] * (da[m] + 1);
      for (size_t k = 0; k <= m; ++k) {
        if (a[k] == 0 || L[k] == -kInf) continue;
        const LD share = std::exp(z[m] - L[k]);
        g += a[k] * share;
        gs += a[k] * share * (da[k] + rel[k] + 2 + de[m] + 4);
      }
      r.grad[static_cast<size_t>(order[m])] = static_cast<double>(g);
      r.grad_scale[static_cast<size_t>(order[m])] = static_cast<double>(gs);
    }
  } else {
    // O(V): log Q_m = log sum_{k <= m} alpha_k exp(-L_k) and log W_m, the same sum weighted by the
    // stages' error scales, accumulated in log form (exp(-L_k) alone may overflow).
    auto log_add = [](LD x, LD y) {
      if (x == -kInf) return y;
      if (y == -kInf) return x;
      return std::max(x, y) + std::log1p(std::exp(-std::fabs(x - y)));
    };
    LD log_q = -kInf, log_w = -kInf;
    for (size_t m = 0; m < n; ++m) {
      if (a[m] != 0 && L[m] != -kInf) {
        log_q = log_add(log_q, std::log(a[m]) - L[m]);
        log_w = log_add(log_w, std::log(a[m] * (da[m] + rel[m] + 2 + 4)) - L[m]);
      }
      const LD eq = z[m] == -kInf ? 0 : std::exp(z[m] + log_q);
      const LD ew = z[m] == -kInf ? 0 : std::exp(z[m] + log_w);
      r.grad[static_cast<size_t>(order[m])] = static_cast<double>(eq - a[m]);
      r.grad_scale[static_cast<size_t>(order[m])] = static_cast<double>(ew + eq * de[m] + a[m] * (da[m] + 1));
    }
  }
  return r;
}

}  // namespace kdtest::ref
