// log_softmax and logsumexp rows beside Eigen (whole-matrix and row-at-a-time) and the roofline.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/log_softmax.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  static kdloss::Vector<float> lse;
  static Eigen::Array<float, 1, Eigen::Dynamic> buf;
  // "grad" mode = write the N x V log-softmax; "value" mode = the N log-sum-exps only.
  add("log_softmax", "grad", "kdloss", [](Data& d, RowMatrix<float>* g) {
    kdloss::log_softmax(d.S, *g);
    return (*g)(0, 0);
  });
  add("log_softmax", "grad", "eigen_whole", [](Data& d, RowMatrix<float>* g) {
    RowArray<float> a = d.S.array();
    a.colwise() -= a.rowwise().maxCoeff();
    a.colwise() -= a.exp().rowwise().sum().log();
    g->array() = a;
    return (*g)(0, 0);
  });
  add("log_softmax", "grad", "eigen_rows", [](Data& d, RowMatrix<float>* g) {
    for (Eigen::Index i = 0; i < d.S.rows(); ++i) {
      const auto s = d.S.row(i).array();
      const float m = s.maxCoeff();
      const float l = std::log((s - m).exp().sum());
      g->row(i).array() = s - m - l;
    }
    return (*g)(0, 0);
  });
  add("log_softmax", "grad", "roofline", [](Data& d, RowMatrix<float>* g) {
    g->noalias() = d.S;
    return (*g)(0, 0);
  });
  add("log_softmax", "value", "kdloss", [](Data& d, RowMatrix<float>*) {
    lse.resize(d.S.rows());
    kdloss::logsumexp(d.S, lse);
    return lse[0];
  });
  add("log_softmax", "value", "eigen_rows", [](Data& d, RowMatrix<float>*) {
    lse.resize(d.S.rows());
    for (Eigen::Index i = 0; i < d.S.rows(); ++i) {
      const auto s = d.S.row(i).array();
      const float m = s.maxCoeff();
      lse[i] = m + std::log((s - m).exp().sum());
    }
    return lse[0];
  });
  add("log_softmax", "value", "roofline", [](Data& d, RowMatrix<float>*) { return d.S.sum(); });
  return run(argc, argv);
}
