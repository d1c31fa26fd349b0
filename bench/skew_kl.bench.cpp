// SkewKL and SkewReverseKL: value and value+gradient beside their naive Eigen versions and ForwardKL.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/skew_kl.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  using A = NaiveRows<float>::Row;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::SkewKL<float> skl;
  static const kdloss::SkewReverseKL<float> srkl;
  static NaiveRows<float> naive;
  const float a = 0.1f;
  add_family("ForwardKL", fkl, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A&, const A& lp, const A& lq) { return p * (lp - lq); },
                 [](const A& p, const A& q, const A&, const A&) { return A(-p / q); });
  });
  add_family("SkewKL", skl, [a](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f,
                 [a](const A& p, const A& q, const A& lp, const A&) { return A(p * (lp - (a * p + (1 - a) * q).log())); },
                 [a](const A& p, const A& q, const A&, const A&) { return A(-(1 - a) * p / (a * p + (1 - a) * q)); });
  });
  add_family("SkewReverseKL", srkl, [a](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f,
                 [a](const A& p, const A& q, const A&, const A& lq) { return A(q * (lq - ((1 - a) * p + a * q).log())); },
                 [a](const A& p, const A& q, const A&, const A& lq) {
                   const A m = (1 - a) * p + a * q;
                   return A(lq + 1 - m.log() - a * q / m);
                 });
  });
  return run(argc, argv);
}
