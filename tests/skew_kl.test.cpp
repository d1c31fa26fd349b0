// Tests of kdloss::SkewKL and kdloss::SkewReverseKL.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/reverse_kl.hpp>
#include <kdloss/skew_kl.hpp>

#include "support/suite.hpp"

using kdtest::specs::Skl;
using kdtest::specs::Srkl;

KDTEST_PAIR_LOSS_SUITE(Skl, "SkewKL", "[skew_kl]")
KDTEST_PAIR_LOSS_SUITE(Srkl, "SkewReverseKL", "[skew_kl]")

TEMPLATE_TEST_CASE("SkewKL and SkewReverseKL at alpha = 0 are ForwardKL and ReverseKL", "[skew_kl]", float, double) {
  using T = TestType;
  const long n = 4, v = 777;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(710));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(711));
  kdloss::RowMatrix<T> G1(n, v), G2(n, v);
  const double f1 = static_cast<double>(kdloss::SkewKL<T>({}, 0.0)(S, Tt, G1));
  const double f2 = static_cast<double>(kdloss::ForwardKL<T>()(S, Tt, G2));
  CHECK(std::fabs(f1 - f2) <= 1e3 * kdtest::eps<T>() * f2);
  CHECK((G1 - G2).cwiseAbs().maxCoeff() <= T(64 * kdtest::eps<T>()));
  const double r1 = static_cast<double>(kdloss::SkewReverseKL<T>({}, 0.0)(S, Tt, G1));
  const double r2 = static_cast<double>(kdloss::ReverseKL<T>()(S, Tt, G2));
  CHECK(std::fabs(r1 - r2) <= 1e3 * kdtest::eps<T>() * r2);
  CHECK((G1 - G2).cwiseAbs().maxCoeff() <= T(1e3 * kdtest::eps<T>()));
}

TEST_CASE("Skew divergences reject alpha outside the half-open unit interval", "[skew_kl]") {
  CHECK_THROWS_AS(kdloss::SkewKL<float>({}, 1.0), std::invalid_argument);
  CHECK_THROWS_WITH(kdloss::SkewReverseKL<float>({}, -0.1), Catch::Contains("alpha"));
  CHECK(kdloss::SkewKL<double>().alpha() == 0.1);
}
