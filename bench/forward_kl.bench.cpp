// ForwardKL: value-only and value+gradient beside the Eigen baselines and the streaming roofline.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ForwardKL<float> fkl;
  static EigenRows<Div::Forward, float> rows;
  for (const char* mode : {"value", "grad"}) {
    add("ForwardKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? fkl(d.S, d.T, *g) : fkl(d.S, d.T); });
    add("ForwardKL", mode, "eigen_rows", [](Data& d, RowMatrix<float>* g) { return rows(d.S, d.T, g, 1.0f); });
    add("ForwardKL", mode, "eigen_whole", [](Data& d, RowMatrix<float>* g) { return eigen_whole<Div::Forward>(d.S, d.T, g, 1.0f); });
    add("ForwardKL", mode, "roofline", [](Data& d, RowMatrix<float>* g) { return roofline(d.S, d.T, g); });
  }
  return run(argc, argv);
}
