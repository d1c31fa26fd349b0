// TotalVariation: value and value+gradient beside its naive Eigen version and ForwardKL.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/total_variation.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  using A = NaiveRows<float>::Row;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::TotalVariation<float> tvd;
  static NaiveRows<float> naive;
  add_family("ForwardKL", fkl, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A&, const A& lp, const A& lq) { return p * (lp - lq); },
                 [](const A& p, const A& q, const A&, const A&) { return A(-p / q); });
  });
  add_family("TotalVariation", tvd, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A& q, const A&, const A&) { return A(0.5f * (p - q).abs()); },
                 [](const A& p, const A& q, const A&, const A&) { return A(0.5f * (q - p).sign()); });
  });
  return run(argc, argv);
}
