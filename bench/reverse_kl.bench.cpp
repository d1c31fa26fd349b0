// ReverseKL: value-only and value+gradient beside the Eigen baselines and the streaming roofline.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/reverse_kl.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ReverseKL<float> rkl;
  static EigenRows<Div::Reverse, float> rows;
  for (const char* mode : {"value", "grad"}) {
    add("ReverseKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? rkl(d.S, d.T, *g) : rkl(d.S, d.T); });
    add("ReverseKL", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) { return rows(d.S, d.T, g, 1.0f); });
    add("ReverseKL", mode, "eigen_whole", [](Data& d, RowMatrix<float>* g) { return eigen_whole<Div::Reverse>(d.S, d.T, g, 1.0f); });
    add("ReverseKL", mode, "roofline", [](Data& d, RowMatrix<float>* g) { return roofline(d.S, d.T, g); });
  }
  return run(argc, argv);
}
