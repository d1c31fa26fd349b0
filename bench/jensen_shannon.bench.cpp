// JensenShannon: value and value+gradient beside its naive Eigen version and ForwardKL.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/jensen_shannon.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  using A = NaiveRows<float>::Row;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::JensenShannon<float> js;
  static NaiveRows<float> naive;
  const float beta = 0.5f;
  auto lm = [beta](const A& p, const A& q) { return (beta * p + (1 - beta) * q).log(); };
  add_family("ForwardKL", fkl, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A&, const A& lp, const A& lq) { return p * (lp - lq); },
                 [](const A& p, const A& q, const A&, const A&) { return A(-p / q); });
  });
  add_family("JensenShannon", js, [lm, beta](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f,
                 [lm, beta](const A& p, const A& q, const A& lp, const A& lq) {
                   const A m = lm(p, q);
                   return A(beta * p * (lp - m) + (1 - beta) * q * (lq - m));
                 },
                 [lm, beta](const A& p, const A& q, const A&, const A& lq) { return A((1 - beta) * (lq - lm(p, q))); });
  });
  return run(argc, argv);
}
