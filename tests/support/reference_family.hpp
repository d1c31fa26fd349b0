// Double/long-double references for the divergence family, from each divergence's definition in
// probabilities (not the library's log-ratio forms), with the conventions 0 log 0 = 0 and
// x log(x/0) = +inf. Written independently of include/kdloss.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "reference.hpp"

namespace kdtest::ref {

constexpr LD kInfL = std::numeric_limits<LD>::infinity();

/// One entry of a divergence: its share of the value and h = q dD/dq (the gradient before
/// centring), for probabilities p, q in [0, 1] that are never both 0.
struct Entry {
  LD term = 0, h = 0;
  LD term_scale = -1, h_scale = -1;  ///< size of the rounded terms (default: |term|, |h|)
};
using EntryFn = std::function<Entry(LD p, LD q)>;

/// x log(x / y) with 0 log 0 = 0 and x log(x/0) = +inf.
inline LD xlogxy(LD x, LD y) {
  if (x == 0) return 0;
  if (y == 0) return kInfL;
  return x * (std::log(x) - std::log(y));
}

/// A row of an f-divergence from its entries: value = sum of terms, gradient
/// q_j (g_j - sum_v q_v g_v) / tau written as (h_j - q_j sum_v h_v) / tau, and error scales: the
/// size of every rounded term times the relative error of p and q, eps (|log p| + |log q| + 2).
/// In entry j's gradient, q_j times the centre c = sum_v h_v carries q_j's own error (that factor
/// for entry j, times sum_v |h_v|) and c's: each h_v errs by its own factor for entry v, so c errs
/// by up to sum_v |h_v| (|log p_v| + |log q_v| + 2), which an entry with small logs of its own (the
/// row's peak) does not bound.
inline Row f_divergence(const double* s, const double* t, long v, double tau, const EntryFn& f) {
  const auto lq = log_softmax(s, v, tau), lp = log_softmax(t, v, tau);
  Row r;
  r.grad.assign(static_cast<size_t>(v), 0.0);
  r.grad_scale.assign(static_cast<size_t>(v), 0.0);
  std::vector<Entry> e(static_cast<size_t>(v));
  std::vector<LD> q(static_cast<size_t>(v));
  LD value = 0, centre = 0, abs_centre = 0, centre_err = 0;
  for (size_t j = 0; j < e.size(); ++j) {
    const LD pj = lp[j] == -kInf ? 0 : std::exp(static_cast<LD>(lp[j]));
    q[j] = lq[j] == -kInf ? 0 : std::exp(static_cast<LD>(lq[j]));
    if (pj == 0 && q[j] == 0) continue;
    e[j] = f(pj, q[j]);
    value += e[j].term;
    centre += e[j].h;
    if (e[j].term_scale < 0) e[j].term_scale = std::fabs(e[j].term);
    if (e[j].h_scale < 0) e[j].h_scale = std::fabs(e[j].h);
    abs_centre += e[j].h_scale;
    const double logs = (lp[j] == -kInf ? 0 : std::fabs(lp[j])) + (lq[j] == -kInf ? 0 : std::fabs(lq[j])) + 2;
    centre_err += e[j].h_scale * logs;
    r.value_scale += static_cast<double>(e[j].term_scale + pj + q[j]) * logs;
  }
  r.value = static_cast<double>(value);
  for (size_t j = 0; j < e.size(); ++j) {
    const double logs = (lp[j] == -kInf ? 0 : std::fabs(lp[j])) + (lq[j] == -kInf ? 0 : std::fabs(lq[j])) + 2;
    const LD pj = lp[j] == -kInf ? 0 : std::exp(static_cast<LD>(lp[j]));
    r.grad[j] = static_cast<double>((e[j].h - q[j] * centre) / tau);
    r.grad_scale[j] = static_cast<double>(
        ((e[j].h_scale + q[j] * abs_centre + pj + q[j]) * logs + q[j] * centre_err) / tau);
  }
  return r;
}

inline EntryFn js(double beta) {
  return [beta](LD p, LD q) {
    const LD m = beta * p + (1 - beta) * q;
    Entry e;
    e.term = beta * xlogxy(p, m) + (1 - beta) * xlogxy(q, m);
    e.h = q == 0 ? 0 : (1 - beta) * q * std::log(q / m);
    return e;
  };
}
inline EntryFn skew_kl(double alpha) {
  return [alpha](LD p, LD q) {
    const LD m = alpha * p + (1 - alpha) * q;
    Entry e;
    e.term = xlogxy(p, m);
    e.h = m == 0 ? 0 : -(1 - alpha) * p * q / m;
    return e;
  };
}
inline EntryFn skew_rkl(double alpha) {
  return [alpha](LD p, LD q) {
    const LD m = (1 - alpha) * p + alpha * q;
    Entry e;
    e.term = xlogxy(q, m);
    e.h = q == 0 ? 0 : q * (std::log(q / m) + 1) - alpha * q * q / m;
    return e;
  };
}
inline Entry tvd(LD p, LD q) {
  return {std::fabs(p - q) / 2, q > p ? q / 2 : (q < p ? -q / 2 : 0)};
}
inline Entry hellinger(LD p, LD q) {
  const LD d = std::sqrt(p) - std::sqrt(q);
  return {d * d / 2, (q - std::sqrt(p * q)) / 2};
}
inline Entry pearson(LD p, LD q) {
  if (q == 0) return {kInfL, -kInfL};
  return {(p - q) * (p - q) / q, q - p * p / q};
}
inline Entry neyman(LD p, LD q) {
  if (p == 0) return {kInfL, kInfL};
  return {(p - q) * (p - q) / p, 2 * (q * q / p - q)};
}
inline Entry jeffreys(LD p, LD q) {
  if (p == 0 || q == 0) return {kInfL, q == 0 ? -p : kInfL};
  const LD u = std::log(p) - std::log(q);
  return {(p - q) * u, q * (1 - u) - p};
}

/// Alpha-beta divergence from the ABKD paper's formulas (power form and its special cases, with
/// the continuity-correct 1/alpha^2 or 1/beta^2 factors), in long double. An entry with one side 0
/// is evaluated at 1e-1000 and 1e-2000 instead: a limit that keeps growing between the two
/// (power-law or logarithmic divergence) is reported as +inf, a converged one is kept. Growth is
/// judged relative to the term itself (with a floor of 1e-300, below which a term counts as 0):
/// a logarithmic divergence weighted by a small power (alpha = 0, p = 0 < q with q^beta ~ 1e-8:
/// a growth of 1e-5 between the two points) is still a divergence.
inline EntryFn alpha_beta(double alpha, double beta) {
  auto at = [alpha, beta](LD p, LD q) {
    const LD a = alpha, b = beta, l = a + b;
    const LD u = std::log(p) - std::log(q);
    Entry e;
    if (a == 0 && b == 0) {
      e.term = u * u / 2;
      e.h = -u;
      e.term_scale = u * u / 2 + std::fabs(u);
      e.h_scale = 1;
    } else if (a == 0) {
      const LD qb = std::pow(q, b), pb = std::pow(p, b);
      e.term = (qb * std::log(qb / pb) - qb + pb) / (b * b);
      e.h = -qb * u;
      e.term_scale = (qb * (std::fabs(b * u) + 1) + pb) / (b * b);
      e.h_scale = qb * (std::fabs(u) + 1);
    } else if (b == 0) {
      const LD pa = std::pow(p, a), qa = std::pow(q, a);
      e.term = (pa * std::log(pa / qa) - pa + qa) / (a * a);
      e.h = (qa - pa) / a;
      e.term_scale = (pa * (std::fabs(a * u) + 1) + qa) / (a * a);
      e.h_scale = (qa + pa) / std::fabs(a);
    } else if (l == 0) {
      const LD qa = std::pow(q, a), pa = std::pow(p, a);
      e.term = (std::log(qa / pa) + pa / qa - 1) / (a * a);
      e.h = (1 - std::pow(p / q, a)) / a;
      e.term_scale = (std::fabs(a * u) + pa / qa + 1) / (a * a);
      e.h_scale = (1 + std::pow(p / q, a)) / std::fabs(a);
    } else {
      const LD m = std::pow(p, a) * std::pow(q, b), pl = std::pow(p, l), ql = std::pow(q, l);
      e.term = -(m - a / l * pl - b / l * ql) / (a * b);
      e.h = (ql - m) / a;
      e.term_scale = (m + std::fabs(a / l) * pl + std::fabs(b / l) * ql) / std::fabs(a * b);
      e.h_scale = (ql + m) / std::fabs(a);
    }
    return e;
  };
  return [at](LD p, LD q) {
    if (p != 0 && q != 0) return at(p, q);
    const Entry e1 = p == 0 ? at(1e-1000L, q) : at(p, 1e-1000L);
    const Entry e2 = p == 0 ? at(1e-2000L, q) : at(p, 1e-2000L);
    auto limit = [](LD x1, LD x2) {
      if (!(std::fabs(x2) < 1e100L) || std::fabs(x2 - x1) > 1e-3L * (1e-300L + std::fabs(x1))) return kInfL;
      return std::fabs(x2) < 1e-300L ? 0 : x2;
    };
    Entry e;
    e.term = limit(e1.term, e2.term);
    e.h = limit(e1.h, e2.h);
    return e;
  };
}

/// Cross-entropy row against label y with smoothing eps: value and gradient (q - target)/tau.
inline Row cross_entropy(const double* s, long v, double tau, long y, double eps) {
  const auto lq = log_softmax(s, v, tau);
  Row r;
  r.grad.assign(static_cast<size_t>(v), 0.0);
  r.grad_scale.assign(static_cast<size_t>(v), 0.0);
  LD value = -(1 - eps) * static_cast<LD>(lq[static_cast<size_t>(y)]);
  LD sum = 0;
  for (long j = 0; j < v; ++j) sum += lq[static_cast<size_t>(j)];
  if (eps > 0) value -= eps / static_cast<LD>(v) * sum;
  r.value = static_cast<double>(value);
  for (long j = 0; j < v; ++j) {
    const size_t k = static_cast<size_t>(j);
    const double q = lq[k] == -kInf ? 0 : std::exp(lq[k]);
    const double target = (j == y ? 1 - eps : 0) + eps / static_cast<double>(v);
    r.grad[k] = (q - target) / tau;
    r.grad_scale[k] = (q * (std::fabs(lq[k] == -kInf ? 0 : lq[k]) + 2) + target) / tau;
    r.value_scale += (lq[k] == -kInf ? 0 : std::fabs(lq[k])) * (target + q);
  }
  r.value_scale += std::fabs(r.value) + 1;
  return r;
}

}  // namespace kdtest::ref
