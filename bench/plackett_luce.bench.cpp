// PlackettLuce (PLD): value and value+gradient beside ForwardKL and a row-at-a-time version as a
// competent user writes it with Eigen and std::stable_sort (the paper's reference sorts each row
// with torch.sort; the stable sort gives kdloss's tie rule), on the shared uniform [-8, 8) logits
// with labels (i * 7919) mod V.
// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>
#include <kdloss/forward_kl.hpp>
#include <kdloss/plackett_luce.hpp>

#include "bench_main.hpp"

namespace {
using kdbench::Data;
using kdbench::RowMatrix;

/// PLD one row at a time: the ranking by std::stable_sort of an index vector, the teacher softmax
/// with Eigen array expressions, the reverse cumulative log-sum-exp by an online loop, the loss,
/// and the gradient by the paper's recurrence (App. A), BatchMean over the rows.
struct NaivePld {
  using A = Eigen::Array<float, 1, Eigen::Dynamic>;
  std::vector<Eigen::Index> order;
  A p, z, a, lse;
  float operator()(const RowMatrix<float>& S, const RowMatrix<float>& T, const Eigen::VectorXi& labels,
                   RowMatrix<float>* grad) {
    const Eigen::Index n = S.rows(), v = S.cols();
    order.resize(static_cast<size_t>(v));
    z.resize(v);
    a.resize(v);
    lse.resize(v);
    double total = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const Eigen::Index y = labels[i];
      p = (T.row(i).array() - T.row(i).maxCoeff()).exp();
      p /= p.sum();
      order[0] = y;
      std::iota(order.begin() + 1, order.begin() + y + 1, Eigen::Index{0});
      std::iota(order.begin() + y + 1, order.end(), y + 1);
      std::stable_sort(order.begin() + 1, order.end(), [&](Eigen::Index l, Eigen::Index r) { return T(i, l) > T(i, r); });
      for (Eigen::Index m = 0; m < v; ++m) {
        z[m] = S(i, order[static_cast<size_t>(m)]);
        a[m] = p[order[static_cast<size_t>(m)]];
      }
      float mx = -std::numeric_limits<float>::infinity(), sum = 0;
      for (Eigen::Index m = v - 1; m >= 0; --m) {
        if (z[m] > mx) {
          sum = sum * std::exp(mx - z[m]) + 1;
          mx = z[m];
        } else {
          sum += std::exp(z[m] - mx);
        }
        lse[m] = mx + std::log(sum);
      }
      total += static_cast<double>((a * (lse - z)).sum());
      if (grad) {
        float acc = 0;
        for (Eigen::Index m = 0; m < v; ++m) {
          acc = (m == 0 ? 0.0f : acc * std::exp(lse[m] - lse[m - 1])) + a[m];
          (*grad)(i, order[static_cast<size_t>(m)]) = (std::exp(z[m] - lse[m]) * acc - a[m]) / static_cast<float>(n);
        }
      }
    }
    return static_cast<float>(total / static_cast<double>(n));
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::PlackettLuce<float> pld;
  static NaivePld naive;
  static Eigen::VectorXi labels;
  pld.reserve(256, 128256);
  auto labels_for = [](const Data& d) -> const Eigen::VectorXi& {
    if (labels.size() != d.S.rows() || (labels.size() > 0 && labels.maxCoeff() >= d.S.cols())) {
      labels.resize(d.S.rows());
      for (Eigen::Index i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>((i * 7919) % d.S.cols());
    }
    return labels;
  };
  for (const char* mode : {"value", "grad"}) {
    add("ForwardKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? fkl(d.S, d.T, *g) : fkl(d.S, d.T); },
        family_shapes());
    add("PlackettLuce", mode, "kdloss", [labels_for](Data& d, RowMatrix<float>* g) {
      const auto& y = labels_for(d);
      return g ? pld(d.S, d.T, y, *g) : pld(d.S, d.T, y);
    }, family_shapes());
    add("PlackettLuce", mode, "eigen_rows", [labels_for](Data& d, RowMatrix<float>* g) {
      return naive(d.S, d.T, labels_for(d), g);
    }, family_shapes());
  }
  return run(argc, argv);
}
