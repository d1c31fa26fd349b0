// AlphaBeta (ABKD): value and value+gradient beside its naive Eigen version and ForwardKL.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/alpha_beta.hpp>
#include <kdloss/forward_kl.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  using A = NaiveRows<float>::Row;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::AlphaBeta<float> ab({}, 0.2, 0.7);
  static NaiveRows<float> naive;
  add_family("ForwardKL", fkl, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A&, const A& lp, const A& lq) { return p * (lp - lq); },
                 [](const A& p, const A& q, const A&, const A&) { return A(-p / q); });
  });
  add_family("AlphaBeta", ab, [](Data& d, RowMatrix<float>* g) {
    const float a = 0.2f, b = 0.7f, l = a + b;
    return naive(d.S, d.T, g, 1.0f,
                 [a, b, l](const A&, const A&, const A& lp, const A& lq) {
                   return A(-((a * lp + b * lq).exp() - a / l * (l * lp).exp() - b / l * (l * lq).exp()) / (a * b));
                 },
                 [a, b](const A&, const A&, const A& lp, const A& lq) {
                   return A(((b - 1) * lq).exp() * ((a * lq).exp() - (a * lp).exp()) / a);
                 });
  });
  return run(argc, argv);
}
