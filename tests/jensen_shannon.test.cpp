// Tests of kdloss::JensenShannon.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/jensen_shannon.hpp>

#include "support/suite.hpp"

using kdtest::specs::Js;
using kdtest::specs::Js01;

KDTEST_PAIR_LOSS_SUITE(Js, "JensenShannon", "[jensen_shannon]")
KDTEST_PAIR_LOSS_SUITE(Js01, "JensenShannon beta 0.1", "[jensen_shannon]")

TEMPLATE_TEST_CASE("JensenShannon is symmetric at beta = 1/2 and bounded by the binary entropy", "[jensen_shannon]", float, double) {
  using T = TestType;
  const long n = 5, v = 300;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(700), 4.0);
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(701), 4.0);
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::None;
  const kdloss::JensenShannon<T> js(o);
  kdloss::Vector<T> a(n), b(n);
  js.per_row(S, Tt, a);
  js.per_row(Tt, S, b);
  for (long i = 0; i < n; ++i) {
    CHECK(std::fabs(static_cast<double>(a[i] - b[i])) <= 64 * kdtest::eps<T>() * static_cast<double>(a[i]));
    CHECK(static_cast<double>(a[i]) <= std::log(2.0) + 8 * kdtest::eps<T>());
  }
  // Disjoint supports: exactly the binary entropy of beta (log 2 at 1/2), and a finite gradient.
  const T ninf = -std::numeric_limits<T>::infinity();
  kdloss::RowMatrix<T> P(1, 4), Q(1, 4), G(1, 4);
  P << T(0), T(1), ninf, ninf;
  Q << ninf, ninf, T(2), T(0);
  for (const double beta : {0.5, 0.1, 0.9}) {
    INFO("beta " << beta);
    const kdloss::JensenShannon<T> j({}, beta);
    const double h = -beta * std::log(beta) - (1 - beta) * std::log(1 - beta);
    CHECK(std::fabs(static_cast<double>(j(Q, P, G)) - h) <= 16 * kdtest::eps<T>());
    CHECK(G.allFinite());
  }
}

TEST_CASE("JensenShannon rejects beta outside the open unit interval and says which loss to use", "[jensen_shannon]") {
  using Catch::Contains;
  for (const double beta : {0.0, 1.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    INFO("beta " << beta);
    CHECK_THROWS_AS(kdloss::JensenShannon<float>({}, beta), std::invalid_argument);
  }
  CHECK_THROWS_WITH(kdloss::JensenShannon<float>({}, 0.0), Contains("beta") && Contains("ForwardKL"));
  CHECK_THROWS_WITH(kdloss::JensenShannon<float>({}, 1.0), Contains("ReverseKL"));
  CHECK(kdloss::JensenShannon<float>({}, 0.25).beta() == 0.25);
}
