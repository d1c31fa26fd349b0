// The seed papers' losses — Decoupled (DKD), NormalizedKD (NKD), SoftTargetCrossEntropy (PS-KD),
// DeltaKL (Delta-KD), SymmetricKL — value and value+gradient beside ForwardKL and a row-at-a-time
// Eigen version of each, in one binary (they share inputs: labels, a probability matrix, base
// logits).
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/decoupled.hpp>
#include <kdloss/delta_kl.hpp>
#include <kdloss/forward_kl.hpp>
#include <kdloss/log_softmax.hpp>
#include <kdloss/normalized_kd.hpp>
#include <kdloss/soft_target_cross_entropy.hpp>
#include <kdloss/symmetric_kl.hpp>

#include "bench_main.hpp"

namespace {
using kdbench::Data;
using kdbench::RowMatrix;
using A = Eigen::Array<float, 1, Eigen::Dynamic>;

/// Extra inputs for the current shape: labels, a probability matrix, two base logit matrices.
struct Extra {
  Eigen::VectorXi y;
  RowMatrix<float> P, SB, TB;
};
Extra& extra(Data& d) {
  static Extra e;
  static const float* key = nullptr;
  if (key != d.S.data() || e.P.rows() != d.S.rows() || e.P.cols() != d.S.cols()) {
    const Eigen::Index n = d.S.rows(), v = d.S.cols();
    e.y.resize(n);
    for (Eigen::Index i = 0; i < n; ++i) e.y[i] = static_cast<int>((i * 7919) % v);
    e.SB = d.T * 0.5f + d.S * 0.25f;
    e.TB = d.T * 0.75f;
    e.P.resize(n, v);
    kdloss::log_softmax(d.T, e.P, 1.0f);
    e.P = e.P.array().exp().matrix();
    key = d.S.data();
  }
  return e;
}

/// log softmax of a row at inverse temperature k (Eigen arrays).
void log_softmax_row(const A& x, float k, A& out) {
  out = (x - x.maxCoeff()) * k;
  out -= std::log(out.exp().sum());
}

struct SeedRows {
  A lp, lq, lpn, lqn, p, q, z;
  // DKD at T = 4 with T^2, alpha 1, beta 8: hats by zeroing the label and renormalising.
  float dkd(const RowMatrix<float>& S, const RowMatrix<float>& T, const Eigen::VectorXi& y, RowMatrix<float>* g) {
    const float tau = 4, k = 1 / tau, a = 1, b = 8;
    double total = 0;
    const Eigen::Index n = S.rows();
    for (Eigen::Index i = 0; i < n; ++i) {
      log_softmax_row(S.row(i).array(), k, lq);
      log_softmax_row(T.row(i).array(), k, lp);
      p = lp.exp(), q = lq.exp();
      const int l = y[i];
      const float py = p[l], qy = q[l];
      A ph = p / (1 - py), qh = q / (1 - qy);
      ph[l] = 0, qh[l] = 0;
      const float tckd = py * std::log(py / qy) + (1 - py) * std::log((1 - py) / (1 - qy));
      const float nckd = (ph * ((ph + 1e-30f).log() - (qh + 1e-30f).log())).sum();
      total += static_cast<double>(a * tckd + b * nckd);
      if (g) {
        g->row(i).array() = tau * (-a * (qy - py) * qh + b * (qh - ph)) / static_cast<float>(n);
        (*g)(i, l) = tau * a * (qy - py) / static_cast<float>(n);
      }
    }
    return static_cast<float>(total * 16 / static_cast<double>(n));
  }
  // NKD, lambda 1, gamma 1.5.
  float nkd(const RowMatrix<float>& S, const RowMatrix<float>& T, const Eigen::VectorXi& y, RowMatrix<float>* g) {
    double total = 0;
    const Eigen::Index n = S.rows();
    for (Eigen::Index i = 0; i < n; ++i) {
      log_softmax_row(S.row(i).array(), 1, lq);
      log_softmax_row(T.row(i).array(), 1, lp);
      p = lp.exp(), q = lq.exp();
      const int l = y[i];
      const float py = p[l], qy = q[l];
      A ph = p / (1 - py), qh = q / (1 - qy);
      ph[l] = 0, qh[l] = 0;
      total += static_cast<double>(-py * lq[l] - 1.5f * (ph * (qh + 1e-30f).log()).sum());
      if (g) {
        g->row(i).array() = (py * q + 1.5f * (qh - ph)) / static_cast<float>(n);
        (*g)(i, l) = py * (qy - 1) / static_cast<float>(n);
      }
    }
    return static_cast<float>(total / static_cast<double>(n));
  }
  // PS-KD soft-target CE, alpha 0.5.
  float soft(const RowMatrix<float>& S, const Eigen::VectorXi& y, const RowMatrix<float>& P, RowMatrix<float>* g) {
    double total = 0;
    const Eigen::Index n = S.rows();
    for (Eigen::Index i = 0; i < n; ++i) {
      log_softmax_row(S.row(i).array(), 1, lq);
      z = 0.5f * P.row(i).array();
      z[y[i]] += 0.5f;
      total -= static_cast<double>((z * lq).sum());
      if (g) g->row(i).array() = (lq.exp() - z) / static_cast<float>(n);
    }
    return static_cast<float>(total / static_cast<double>(n));
  }
  // Delta-KD, alpha 1: the target row, then forward KL.
  float delta(const RowMatrix<float>& S, const RowMatrix<float>& T, const RowMatrix<float>& SB, const RowMatrix<float>& TB,
              RowMatrix<float>* g) {
    double total = 0;
    const Eigen::Index n = S.rows();
    for (Eigen::Index i = 0; i < n; ++i) {
      z = T.row(i).array() + (SB.row(i).array() - TB.row(i).array());
      log_softmax_row(S.row(i).array(), 1, lq);
      log_softmax_row(z, 1, lp);
      p = lp.exp();
      total += static_cast<double>((p * (lp - lq)).sum());
      if (g) g->row(i).array() = (lq.exp() - p) / static_cast<float>(n);
    }
    return static_cast<float>(total / static_cast<double>(n));
  }
  // 0.5 FKL + 0.5 RKL.
  float sym(const RowMatrix<float>& S, const RowMatrix<float>& T, RowMatrix<float>* g) {
    double total = 0;
    const Eigen::Index n = S.rows();
    for (Eigen::Index i = 0; i < n; ++i) {
      log_softmax_row(S.row(i).array(), 1, lq);
      log_softmax_row(T.row(i).array(), 1, lp);
      p = lp.exp(), q = lq.exp();
      const float rkl = (q * (lq - lp)).sum();
      total += static_cast<double>(0.5f * (p * (lp - lq)).sum() + 0.5f * rkl);
      if (g) g->row(i).array() = (0.5f * (q - p) + 0.5f * q * (lq - lp - rkl)) / static_cast<float>(n);
    }
    return static_cast<float>(total / static_cast<double>(n));
  }
};
}  // namespace

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::Decoupled<float> dkd;
  static const kdloss::NormalizedKD<float> nkd;
  static const kdloss::SoftTargetCrossEntropy<float> soft({}, 0.5);
  static const kdloss::DeltaKL<float> delta({}, 1.0);
  static const kdloss::SymmetricKL<float> sym;
  static SeedRows naive;
  for (const char* mode : {"value", "grad"}) {
    add("ForwardKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? fkl(d.S, d.T, *g) : fkl(d.S, d.T); },
        family_shapes());
    add("Decoupled", mode, "kdloss", [](Data& d, RowMatrix<float>* g) {
      const Extra& e = extra(d);
      return g ? dkd(d.S, d.T, e.y, *g) : dkd(d.S, d.T, e.y);
    }, family_shapes());
    add("Decoupled", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) { return naive.dkd(d.S, d.T, extra(d).y, g); },
        family_shapes());
    add("NormalizedKD", mode, "kdloss", [](Data& d, RowMatrix<float>* g) {
      const Extra& e = extra(d);
      return g ? nkd(d.S, d.T, e.y, *g) : nkd(d.S, d.T, e.y);
    }, family_shapes());
    add("NormalizedKD", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) { return naive.nkd(d.S, d.T, extra(d).y, g); },
        family_shapes());
    add("SoftTargetCE", mode, "kdloss", [](Data& d, RowMatrix<float>* g) {
      const Extra& e = extra(d);
      return g ? soft(d.S, e.y, e.P, *g) : soft(d.S, e.y, e.P);
    }, family_shapes());
    add("SoftTargetCE", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) {
      const Extra& e = extra(d);
      return naive.soft(d.S, e.y, e.P, g);
    }, family_shapes());
    add("DeltaKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) {
      const Extra& e = extra(d);
      return g ? delta(d.S, d.T, e.SB, e.TB, *g) : delta(d.S, d.T, e.SB, e.TB);
    }, family_shapes());
    add("DeltaKL", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) {
      const Extra& e = extra(d);
      return naive.delta(d.S, d.T, e.SB, e.TB, g);
    }, family_shapes());
    add("SymmetricKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? sym(d.S, d.T, *g) : sym(d.S, d.T); },
        family_shapes());
    add("SymmetricKL", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) { return naive.sym(d.S, d.T, g); },
        family_shapes());
  }
  return run(argc, argv);
}
