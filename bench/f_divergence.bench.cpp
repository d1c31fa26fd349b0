// FDivergence generators without a named functor (squared Hellinger, Pearson and Neyman chi-squared,
// Jeffreys, Amari alpha): value and value+gradient beside their naive Eigen versions and ForwardKL.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/f_divergence.hpp>
#include <kdloss/forward_kl.hpp>

#include "bench_main.hpp"

int main(int argc, char** argv) {
  using namespace kdbench;
  using A = NaiveRows<float>::Row;
  namespace gen = kdloss::generators;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::FDivergence<gen::SquaredHellinger, float> hel;
  static const kdloss::FDivergence<gen::PearsonChi2, float> pearson;
  static const kdloss::FDivergence<gen::NeymanChi2, float> neyman;
  static const kdloss::FDivergence<gen::Jeffreys, float> jeffreys;
  static const kdloss::FDivergence<gen::Amari, float> amari({}, gen::Amari(0.3));
  static NaiveRows<float> naive;
  add_family("ForwardKL", fkl, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A&, const A& lp, const A& lq) { return p * (lp - lq); },
                 [](const A& p, const A& q, const A&, const A&) { return A(-p / q); });
  });
  add_family("Hellinger", hel, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A& q, const A&, const A&) { return A(0.5f * (p.sqrt() - q.sqrt()).square()); },
                 [](const A& p, const A& q, const A&, const A&) { return A(0.5f * (1 - (p / q).sqrt())); });
  });
  add_family("PearsonChi2", pearson, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A& q, const A&, const A&) { return A((p - q).square() / q); },
                 [](const A& p, const A& q, const A&, const A&) { return A(1 - (p / q).square()); });
  });
  add_family("NeymanChi2", neyman, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A& q, const A&, const A&) { return A((p - q).square() / p); },
                 [](const A& p, const A& q, const A&, const A&) { return A(2 * (q / p - 1)); });
  });
  add_family("Jeffreys", jeffreys, [](Data& d, RowMatrix<float>* g) {
    return naive(d.S, d.T, g, 1.0f, [](const A& p, const A& q, const A& lp, const A& lq) { return A((p - q) * (lp - lq)); },
                 [](const A& p, const A& q, const A& lp, const A& lq) { return A(1 - (lp - lq) - p / q); });
  });
  add_family("Amari", amari, [](Data& d, RowMatrix<float>* g) {
    const float a = 0.3f;
    return naive(d.S, d.T, g, 1.0f,
                 [a](const A& p, const A& q, const A& lp, const A& lq) {
                   return A(((a * lp + (1 - a) * lq).exp() - a * p - (1 - a) * q) / (a * (a - 1)));
                 },
                 [a](const A& p, const A& q, const A&, const A&) { return A((1 - (p / q).pow(a)) / a); });
  });
  return run(argc, argv);
}
