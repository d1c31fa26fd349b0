// Taid: value and value+gradient (lambda = 0.4, the schedule's start) beside ForwardKL and a
// row-at-a-time Eigen version that forms the interpolated target row first.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/taid.hpp>

#include "bench_main.hpp"

namespace {
using kdbench::RowMatrix;
/// TAID with Eigen, one row at a time: the mixed target row, then forward KL and q - p.
struct NaiveTaid {
  using A = Eigen::Array<float, 1, Eigen::Dynamic>;
  A z, lp, lq, p, q;
  float operator()(const RowMatrix<float>& S, const RowMatrix<float>& T, RowMatrix<float>* grad, float lambda) {
    const Eigen::Index n = S.rows();
    double total = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      z = (1 - lambda) * S.row(i).array() + lambda * T.row(i).array();
      lq = S.row(i).array() - S.row(i).maxCoeff();
      lp = z - z.maxCoeff();
      lq -= std::log(lq.exp().sum());
      lp -= std::log(lp.exp().sum());
      p = lp.exp();
      q = lq.exp();
      total += static_cast<double>((p * (lp - lq)).sum());
      if (grad) grad->row(i).array() = (q - p) / static_cast<float>(n);
    }
    return static_cast<float>(total / static_cast<double>(n));
  }
};
}  // namespace

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ForwardKL<float> fkl;
  static kdloss::TaidSchedule schedule;
  schedule.total_steps = 1000;
  static const kdloss::Taid<float> taid({}, schedule);  // lambda = t_start = 0.4
  static NaiveTaid naive_taid;
  for (const char* mode : {"value", "grad"}) {
    add("ForwardKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? fkl(d.S, d.T, *g) : fkl(d.S, d.T); },
        family_shapes());
    add("Taid", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? taid(d.S, d.T, *g) : taid(d.S, d.T); },
        family_shapes());
    add("Taid", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) { return naive_taid(d.S, d.T, g, 0.4f); },
        family_shapes());
  }
  return run(argc, argv);
}
