// Double references of the adaptive losses, written from the papers' reference code and
// independently of include/kdloss: AdaptiveKL sorts the whole row (std::stable_sort, as the
// reference's torch.sort), TAID mixes the logits in double.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "reference.hpp"

namespace kdtest::ref {

/// AKL's head/tail decision for one row (wutaiqiang/LLM_KD_AKL get_ratio): p sorted descending
/// (stable: ties keep index order), inclusive cumsum, head = {c_k <= mu} plus rank 1.
struct AklDecision {
  double w_head = 0.5, w_tail = 0.5;
  long head_size = 0;
  std::vector<char> in_head;  ///< per vocabulary entry
};

inline AklDecision akl_decision(const double* s, const double* t, long v, double tau, double mu) {
  const auto lq = log_softmax(s, v, tau), lp = log_softmax(t, v, tau);
  std::vector<long> order(static_cast<size_t>(v));
  std::iota(order.begin(), order.end(), 0L);
  std::stable_sort(order.begin(), order.end(), [&](long a, long b) {
    return lp[static_cast<size_t>(a)] > lp[static_cast<size_t>(b)];
  });
  AklDecision d;
  d.in_head.assign(static_cast<size_t>(v), 0);
  long double c = 0, gh = 0, gt = 0;
  for (long k = 0; k < v; ++k) {
    const size_t j = static_cast<size_t>(order[static_cast<size_t>(k)]);
    const long double p = std::exp(static_cast<long double>(lp[j])), q = std::exp(static_cast<long double>(lq[j]));
    c += p;
    const bool head = k == 0 || c <= mu;
    d.in_head[j] = head;
    d.head_size += head;
    (head ? gh : gt) += std::fabs(p - q);
  }
  if (gh + gt > 0) {
    d.w_head = static_cast<double>(gh / (gh + gt));
    d.w_tail = 1 - d.w_head;
  }
  return d;
}

/// How far rounding may move AKL's weights, relative to eps of the computation type: each gap
/// entry |p - q| errs by about eps (p (|log p| + 1) + q (|log q| + 1)), so w_h = gap_h / (gap_h +
/// gap_t) errs by up to eps times the sum of those over the row, divided by the row's gap (0 when
/// p == q). Rows whose student is close to the teacher have a small gap and ill-conditioned
/// weights: the floats of p and q near 1 already differ from the true ones by an ulp of 1.
inline double akl_weight_condition(const double* s, const double* t, long v, double tau) {
  const auto lq = log_softmax(s, v, tau), lp = log_softmax(t, v, tau);
  double gap = 0, gap_err = 0;
  for (size_t j = 0; j < lq.size(); ++j) {
    const double p = std::exp(lp[j]), q = std::exp(lq[j]);
    gap += std::fabs(p - q);
    gap_err += p * (lp[j] == -kInf ? 0 : std::fabs(lp[j]) + 1) + q * (lq[j] == -kInf ? 0 : std::fabs(lq[j]) + 1);
  }
  return gap > 0 ? gap_err / gap : 0;
}

/// AdaptiveKL row at given (detached) weights: w_h KL(p||q) + w_t KL(q||p), a zero weight dropping
/// its term; `dw` adds the weights' own error (in units of eps) to the scales.
inline Row adaptive_kl_at(const double* s, const double* t, long v, double tau, double w_head, double w_tail,
                          double dw = 0) {
  const Row f = forward_kl(s, t, v, tau), r = reverse_kl(s, t, v, tau);
  Row out;
  const bool fh = w_head > 0, ft = w_tail > 0;
  out.value = (fh ? w_head * f.value : 0) + (ft ? w_tail * r.value : 0);
  const double fv = std::isfinite(f.value) ? f.value : 0, rv = std::isfinite(r.value) ? r.value : 0;
  out.value_scale = (fh ? w_head * f.value_scale : 0) + (ft ? w_tail * r.value_scale : 0) +
                    dw * (std::fabs(fv) + std::fabs(rv));
  out.grad.resize(f.grad.size());
  out.grad_scale.resize(f.grad.size());
  for (size_t j = 0; j < f.grad.size(); ++j) {
    out.grad[j] = (fh ? w_head * f.grad[j] : 0) + (ft ? w_tail * r.grad[j] : 0);
    const double fg = std::isfinite(f.grad[j]) ? f.grad[j] : 0, rg = std::isfinite(r.grad[j]) ? r.grad[j] : 0;
    out.grad_scale[j] = (fh ? w_head * f.grad_scale[j] : 0) + (ft ? w_tail * r.grad_scale[j] : 0) +
                        dw * (std::fabs(fg) + std::fabs(rg));
  }
  return out;
}

/// AdaptiveKL row: w_h KL(p||q) + w_t KL(q||p) with detached weights (a zero weight drops its term).
/// The scales add one eps for the weights' own rounding (`min(1, akl_weight_condition)`: the
/// condition is at least 1 wherever there is a gap). That is less than the condition allows where
/// the student is close to the teacher (V = 3 rows at Catch seeds 32 and 34 exceed it); it is kept
/// as it was, not loosened. `check_rows` in adaptive_kl.test.cpp checks the weights themselves
/// against the condition, and the loss at the kernel's own weights with no such term.
inline Row adaptive_kl(const double* s, const double* t, long v, double tau, double mu) {
  const AklDecision d = akl_decision(s, t, v, tau, mu);
  const double c = akl_weight_condition(s, t, v, tau);
  return adaptive_kl_at(s, t, v, tau, d.w_head, d.w_tail, c > 0 ? std::min(1.0, c) : 0);
}

/// TAID's interpolated target logits (1 - lambda) s + lambda t in double (-inf on either side
/// gives -inf; lambda = 1 is the teacher itself, lambda = 0 the student).
inline std::vector<double> taid_target(const double* s, const double* t, long v, double lambda) {
  std::vector<double> z(static_cast<size_t>(v));
  for (long j = 0; j < v; ++j) {
    if (lambda == 1) z[static_cast<size_t>(j)] = t[j];
    else if (lambda == 0) z[static_cast<size_t>(j)] = s[j];
    else if (s[j] == -kInf || t[j] == -kInf) z[static_cast<size_t>(j)] = -kInf;
    else z[static_cast<size_t>(j)] = (1 - lambda) * s[j] + lambda * t[j];
  }
  return z;
}

/// TAID row: KL(p_lambda || q) with the target held fixed; gradient (q - p_lambda) / tau. The
/// scale adds the rounding of the float mix (eps |z| / tau in each target log-probability).
inline Row taid(const double* s, const double* t, long v, double tau, double lambda) {
  const std::vector<double> z = taid_target(s, t, v, lambda);
  Row r = forward_kl(s, z.data(), v, tau);
  const auto lp = log_softmax(z.data(), v, tau);
  for (size_t j = 0; j < z.size(); ++j) {
    if (z[j] == -kInf) continue;
    const double p = std::exp(lp[j]);
    const double mix = (std::fabs((1 - lambda) * s[j]) + std::fabs(lambda * t[j])) / tau;
    r.grad_scale[j] += p * mix / tau;
    r.value_scale += p * mix * (std::fabs(lp[j]) + 1);
  }
  return r;
}

/// TAID's schedule, transcribed from the reference's update_t (SakanaAI/TAID src/distil_losses/taid.py).
struct TaidScheduleRef {
  double t_start = 0.4, t_end = 1.0, alpha = 5e-4, beta = 0.99;
  long total_steps = 100;
  bool adaptive = true;
  double t = 0.4, m = 0, prev = 0;
  bool has_prev = false;
  void update(double loss, long global_step) {
    if (!has_prev) {
      prev = loss;
      has_prev = true;
      return;
    }
    const double delta = (prev - loss) / (prev + 1e-15);
    m = beta * m + (1 - beta) * delta;
    const double lin = t_start + (t_end - t_start) * static_cast<double>(global_step) / static_cast<double>(total_steps);
    if (adaptive) {
      const double adapt = t + alpha * (1 / (1 + std::exp(-m))) * (1 - t);
      t = std::min(t_end, std::max(lin, adapt));
    } else {
      t = lin;
    }
    prev = loss;
  }
};

}  // namespace kdtest::ref
