// ReverseKL: value-only and value+gradient beside the Eigen baselines, the streaming roofline and
// ForwardKL (issue 2 bounds ReverseKL's time by 1.5x ForwardKL's).
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/reverse_kl.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ReverseKL<float> rkl;
  static const kdloss::ForwardKL<float> fkl;
  static EigenRows<Div::Reverse, float> rows;
  for (const char* mode : {"value", "grad"}) {
    add("ReverseKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? rkl(d.S, d.T, *g) : rkl(d.S, d.T); });
    add("ReverseKL", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) { return rows(d.S, d.T, g, 1.0f); });
    add("ReverseKL", mode, "eigen_whole", [](Data& d, RowMatrix<float>* g) { return eigen_whole<Div::Reverse>(d.S, d.T, g, 1.0f); });
    add("ReverseKL", mode, "roofline", [](Data& d, RowMatrix<float>* g) { return roofline(d.S, d.T, g); });
    add("ForwardKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? fkl(d.S, d.T, *g) : fkl(d.S, d.T); });
  }
  return run(argc, argv);
}
