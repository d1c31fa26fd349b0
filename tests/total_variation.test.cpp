// Tests of kdloss::TotalVariation.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/total_variation.hpp>

#include "support/suite.hpp"

using kdtest::specs::Tvd;

KDTEST_PAIR_LOSS_SUITE(Tvd, "TotalVariation", "[total_variation]")

TEMPLATE_TEST_CASE("TotalVariation is between 0 and 1 and 1 for disjoint supports", "[total_variation]", float, double) {
  using T = TestType;
  const long n = 6, v = 200;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(720), 6.0);
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(721), 6.0);
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::None;
  kdloss::Vector<T> r(n);
  kdloss::TotalVariation<T>(o).per_row(S, Tt, r);
  CHECK(r.minCoeff() >= T(0));
  CHECK(r.maxCoeff() <= T(1));
  const T ninf = -std::numeric_limits<T>::infinity();
  kdloss::RowMatrix<T> P(1, 3), Q(1, 3), G(1, 3);
  P << T(0), ninf, ninf;
  Q << ninf, T(1), T(3);
  CHECK(kdloss::TotalVariation<T>()(Q, P, G) == T(1));
  CHECK(G.allFinite());
}
