// CrossEntropy (hard labels): value and value+gradient beside the naive Eigen version, ForwardKL
// and its own streaming roofline.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/cross_entropy.hpp>
#include <kdloss/forward_kl.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::CrossEntropy<float> ce({}, 0.1);
  static Eigen::VectorXi labels;
  static Eigen::Array<float, 1, Eigen::Dynamic> lq;
  auto labels_for = [](const Data& d) -> const Eigen::VectorXi& {
    if (labels.size() != d.S.rows()) {
      labels.resize(d.S.rows());
      for (Eigen::Index i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>((i * 7919) % d.S.cols());
    }
    return labels;
  };
  for (const char* mode : {"value", "grad"}) {
    add("ForwardKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? fkl(d.S, d.T, *g) : fkl(d.S, d.T); },
        family_shapes());
    add("CrossEntropy", mode, "kdloss", [labels_for](Data& d, RowMatrix<float>* g) {
      const auto& y = labels_for(d);
      return g ? ce(d.S, y, *g) : ce(d.S, y);
    }, family_shapes());
    add("CrossEntropy", mode, "eigen_rows", [labels_for](Data& d, RowMatrix<float>* g) {
      const auto& y = labels_for(d);
      const float eps = 0.1f;
      const Eigen::Index n = d.S.rows(), v = d.S.cols();
      double total = 0;
      for (Eigen::Index i = 0; i < n; ++i) {
        lq = d.S.row(i).array();
        lq -= lq.maxCoeff();
        lq -= std::log(lq.exp().sum());
        total -= (1 - eps) * lq[y[i]] + eps / static_cast<float>(v) * lq.sum();
        if (g) {
          g->row(i).array() = (lq.exp() - eps / static_cast<float>(v)) / static_cast<float>(n);
          (*g)(i, y[i]) -= (1 - eps) / static_cast<float>(n);
        }
      }
      return static_cast<float>(total / static_cast<double>(n));
    }, family_shapes());
    // What any implementation must stream: read S (and, with the gradient, write dS), 8 bytes
    // per element with the gradient. CrossEntropy reads no teacher, so ForwardKL's roofline (12
    // bytes) is not its floor.
    add("CrossEntropy", mode, "roofline", [](Data& d, RowMatrix<float>* g) {
      if (!g) return d.S.sum();
      g->noalias() = d.S;
      return (*g)(0, 0);
    }, family_shapes());
  }
  return run(argc, argv);
}
