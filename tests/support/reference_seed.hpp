// Double references of the seed papers' losses (DKD, NKD, PS-KD soft-target CE, Delta-KD,
// weighted forward+reverse KL), from the formulas of their reference code as transcribed in
// shared/reference/seed-losses.md, written independently of include/kdloss: whole-row softmaxes
// in long double, the non-target distributions by renormalising the probabilities (the way the
// papers write them, not the library's log-sum-exp form).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <vector>

#include "reference.hpp"

namespace kdtest::ref {

namespace seed {
using LD = long double;
inline std::vector<LD> softmax(const double* z, long v, double tau) {
  const std::vector<double> l = log_softmax(z, v, tau);
  std::vector<LD> p(l.size());
  for (size_t j = 0; j < l.size(); ++j) p[j] = l[j] == -kInf ? 0 : std::exp(static_cast<LD>(l[j]));
  return p;
}
/// a log(a / b) with 0 log 0 = 0, a > 0 = b: +inf.
inline LD xlog(LD a, LD b) {
  if (a == 0) return 0;
  if (b == 0) return std::numeric_limits<LD>::infinity();
  return a * std::log(a / b);
}
/// Relative error of a float probability computed from logit z at temperature tau (plus one for
/// the rounding of the final operations): eps * (|log p| + 1) in the library's terms.
inline double rel(LD p) { return p > 0 ? std::fabs(std::log(static_cast<double>(p))) + 2 : 0; }
}  // namespace seed

/// DKD row (before the T^2 factor): alpha KL(b_p || b_q) + beta KL(p^ || q^), gradient
/// (1/tau) [alpha (q_y - p_y) at y; -alpha (q_y - p_y) q^_i + beta (q^_i - p^_i) elsewhere].
inline Row dkd(const double* s, const double* t, long v, double tau, long y, double alpha, double beta) {
  using seed::LD;
  const auto p = seed::softmax(t, v, tau), q = seed::softmax(s, v, tau);
  const LD py = p[static_cast<size_t>(y)], qy = q[static_cast<size_t>(y)];
  LD pn = 0, qn = 0;  // 1 - x_y as the sum of the other classes
  for (long j = 0; j < v; ++j)
    if (j != y) pn += p[static_cast<size_t>(j)], qn += q[static_cast<size_t>(j)];
  Row r;
  LD tckd = seed::xlog(py, qy) + seed::xlog(pn, qn), nckd = 0;
  for (long j = 0; j < v; ++j) {
    if (j == y) continue;
    nckd += seed::xlog(p[static_cast<size_t>(j)] / pn, qn > 0 ? q[static_cast<size_t>(j)] / qn : 0);
  }
  r.value = static_cast<double>((alpha != 0 ? alpha * tckd : 0) + (beta != 0 ? beta * nckd : 0));
  r.grad.assign(static_cast<size_t>(v), 0.0);
  r.grad_scale.assign(static_cast<size_t>(v), 0.0);
  const LD d = qy - py;
  double vs = 0;
  for (long j = 0; j < v; ++j) {
    const size_t jj = static_cast<size_t>(j);
    if (j == y) {
      r.grad[jj] = static_cast<double>(alpha * d / tau);
      r.grad_scale[jj] = static_cast<double>(alpha * (qy * seed::rel(qy) + py * seed::rel(py)) / tau);
      continue;
    }
    const LD ph = p[jj] / pn, qh = qn > 0 ? q[jj] / qn : 0;
    r.grad[jj] = static_cast<double>((-alpha * d * qh + beta * (qh - ph)) / tau);
    r.grad_scale[jj] = static_cast<double>((alpha * std::fabs(static_cast<double>(d)) * qh * (seed::rel(qh) + 2) +
                                            alpha * qh * (qy * seed::rel(qy) + py * seed::rel(py)) +
                                            beta * (qh * seed::rel(qh) + ph * seed::rel(ph))) / tau);
    vs += static_cast<double>(beta * ph * (seed::rel(ph) + seed::rel(qh)) * (std::fabs(std::log(static_cast<double>(ph > 0 ? ph : 1))) + 1));
  }
  r.value_scale = vs + alpha * static_cast<double>((py + pn) * (seed::rel(py) + seed::rel(qy) + seed::rel(pn) + seed::rel(qn)) * 4) +
                  std::fabs(r.value);
  return r;
}

/// NKD row: -p_y log q_y - gamma lambda^2 sum_{i != y} p^_i log q^_i (p, q at temperature 1, hats
/// at lambda); gradient p_y (q_y - 1) at y, p_y q_i + gamma lambda (q^_i - p^_i) elsewhere.
inline Row nkd(const double* s, const double* t, long v, double lambda, long y, double gamma) {
  using seed::LD;
  const auto p1 = seed::softmax(t, v, 1.0), q1 = seed::softmax(s, v, 1.0);
  const auto pl = seed::softmax(t, v, lambda), ql = seed::softmax(s, v, lambda);
  const size_t yy = static_cast<size_t>(y);
  LD pn = 0, qn = 0;
  for (long j = 0; j < v; ++j)
    if (j != y) pn += pl[static_cast<size_t>(j)], qn += ql[static_cast<size_t>(j)];
  const LD py = p1[yy], qy = q1[yy];
  LD target = py > 0 ? (qy > 0 ? -py * std::log(qy) : std::numeric_limits<LD>::infinity()) : 0;
  LD non = 0;
  for (long j = 0; j < v; ++j) {
    if (j == y) continue;
    const LD ph = pl[static_cast<size_t>(j)] / pn, qh = qn > 0 ? ql[static_cast<size_t>(j)] / qn : 0;
    if (ph > 0) non += qh > 0 ? ph * std::log(qh) : -std::numeric_limits<LD>::infinity();
  }
  Row r;
  r.value = static_cast<double>(target - gamma * lambda * lambda * non);
  r.grad.assign(static_cast<size_t>(v), 0.0);
  r.grad_scale.assign(static_cast<size_t>(v), 0.0);
  double vs = static_cast<double>(py) * (std::fabs(std::log(static_cast<double>(qy > 0 ? qy : 1))) + 2) * 2;
  for (long j = 0; j < v; ++j) {
    const size_t jj = static_cast<size_t>(j);
    if (j == y) {
      r.grad[jj] = static_cast<double>(py * (qy - 1));
      r.grad_scale[jj] = static_cast<double>(py * (qy * seed::rel(qy) + 1 + seed::rel(py)));
      continue;
    }
    const LD ph = pl[jj] / pn, qh = qn > 0 ? ql[jj] / qn : 0;
    r.grad[jj] = static_cast<double>(py * q1[jj] + gamma * lambda * (qh - ph));
    r.grad_scale[jj] = static_cast<double>(py * q1[jj] * (seed::rel(q1[jj]) + seed::rel(py)) +
                                           gamma * lambda * (qh * seed::rel(qh) + ph * seed::rel(ph)));
    vs += static_cast<double>(gamma * lambda * lambda * ph *
                              (seed::rel(ph) + (qh > 0 ? std::fabs(std::log(static_cast<double>(qh))) + 2 : 0)) * 2);
  }
  r.value_scale = vs;
  return r;
}

/// Soft-target CE row: -sum_v ((1 - a) e_y + a P)_v log q_v, gradient (q - y~)/tau.
inline Row soft_target_ce(const double* s, const double* target, long v, double tau, long y, double a) {
  const std::vector<double> lq = log_softmax(s, v, tau);
  Row r;
  r.grad.assign(static_cast<size_t>(v), 0.0);
  r.grad_scale.assign(static_cast<size_t>(v), 0.0);
  seed::LD value = 0;
  for (long j = 0; j < v; ++j) {
    const size_t jj = static_cast<size_t>(j);
    const double yt = (j == y ? 1 - a : 0.0) + a * target[j];
    const double q = lq[jj] == -kInf ? 0 : std::exp(lq[jj]);
    if (yt > 0) value += lq[jj] == -kInf ? std::numeric_limits<seed::LD>::infinity() : -yt * static_cast<seed::LD>(lq[jj]);
    r.grad[jj] = (q - yt) / tau;
    r.grad_scale[jj] = (q * (std::fabs(lq[jj] == -kInf ? 0 : lq[jj]) + 2) + std::fabs(yt)) / tau;
    if (yt > 0 && lq[jj] != -kInf) r.value_scale += yt * (std::fabs(lq[jj]) + 2) * 2;
  }
  r.value = static_cast<double>(value);
  return r;
}

/// Weighted forward + reverse KL row.
inline Row weighted_kl(const double* s, const double* t, long v, double tau, double wf, double wr) {
  const Row f = forward_kl(s, t, v, tau), b = reverse_kl(s, t, v, tau);
  Row r;
  r.value = (wf > 0 ? wf * f.value : 0) + (wr > 0 ? wr * b.value : 0);
  r.value_scale = wf * f.value_scale + wr * b.value_scale;
  r.grad.resize(f.grad.size());
  r.grad_scale.resize(f.grad.size());
  for (size_t j = 0; j < f.grad.size(); ++j) {
    r.grad[j] = (wf > 0 ? wf * f.grad[j] : 0) + (wr > 0 ? wr * b.grad[j] : 0);
    r.grad_scale[j] = wf * f.grad_scale[j] + wr * b.grad_scale[j];
  }
  return r;
}

/// Delta-KD's target logits in double: t_sft + alpha (s_base - t_base); -inf where t_sft is, or
/// where both bases are.
inline std::vector<double> delta_target(const double* t_sft, const double* s_base, const double* t_base, long v,
                                        double alpha) {
  std::vector<double> z(static_cast<size_t>(v));
  for (long j = 0; j < v; ++j) {
    if (alpha == 0 || t_sft[j] == -kInf) z[static_cast<size_t>(j)] = t_sft[j];
    else if (s_base[j] == -kInf && t_base[j] == -kInf) z[static_cast<size_t>(j)] = -kInf;
    else z[static_cast<size_t>(j)] = t_sft[j] + alpha * (s_base[j] - t_base[j]);
  }
  return z;
}

}  // namespace kdtest::ref
