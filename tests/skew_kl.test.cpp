// Tests of kdloss::SkewKL and kdloss::SkewReverseKL.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/reverse_kl.hpp>
#include <kdloss/skew_kl.hpp>

#include "support/suite.hpp"

using kdtest::specs::Skl;
using kdtest::specs::SklNearOne;
using kdtest::specs::Srkl;
using kdtest::specs::SrklSmall;

KDTEST_PAIR_LOSS_SUITE(Skl, "SkewKL", "[skew_kl]")
KDTEST_PAIR_LOSS_SUITE(Srkl, "SkewReverseKL", "[skew_kl]")

TEMPLATE_TEST_CASE("SkewKL and SkewReverseKL at alpha = 0 are ForwardKL and ReverseKL", "[skew_kl]", float, double) {
  using T = TestType;
  const long n = 4, v = 777;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(710));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(711));
  kdloss::RowMatrix<T> G1(n, v), G2(n, v);
  // Exactly: at alpha = 0 the skew divergences run forward and reverse KL's own generators.
  const double f1 = static_cast<double>(kdloss::SkewKL<T>({}, 0.0)(S, Tt, G1));
  const double f2 = static_cast<double>(kdloss::ForwardKL<T>()(S, Tt, G2));
  CHECK(f1 == f2);
  CHECK(G1 == G2);
  const double r1 = static_cast<double>(kdloss::SkewReverseKL<T>({}, 0.0)(S, Tt, G1));
  const double r2 = static_cast<double>(kdloss::ReverseKL<T>()(S, Tt, G2));
  CHECK(r1 == r2);
  CHECK(G1 == G2);
  // A small alpha stays the skew divergence: by convexity, KL(p || a p + (1 - a) q) <= (1 - a) KL(p || q)
  // (and the same for the reverse pair), and the log ratios it caps at log(1/a) make it smaller.
  const double f3 = static_cast<double>(kdloss::SkewKL<T>({}, 1e-6)(S, Tt, G1));
  CHECK(f3 > 0);
  CHECK(f3 < (1 - 1e-6) * f2);
  const double r3 = static_cast<double>(kdloss::SkewReverseKL<T>({}, 1e-6)(S, Tt, G1));
  CHECK(r3 > 0);
  CHECK(r3 < (1 - 1e-6) * r2);
}

TEST_CASE("Skew divergences reject alpha outside the half-open unit interval", "[skew_kl]") {
  CHECK_THROWS_AS(kdloss::SkewKL<float>({}, 1.0), std::invalid_argument);
  CHECK_THROWS_WITH(kdloss::SkewReverseKL<float>({}, -0.1), Catch::Contains("alpha"));
  CHECK(kdloss::SkewKL<double>().alpha() == 0.1);
}

TEMPLATE_TEST_CASE("Skew divergences with the mixture mostly one side match the reference", "[skew_kl]", float, double) {
  // SkewKL at alpha near 1 and SkewReverseKL at alpha near 0: the mixture is mostly p, and where
  // p << alpha q it is alpha q, which a mixture formed as q + w (p - q) would lose to cancellation.
  for (const double tau : {1.0, 2.0}) {
    kdloss::Options<TestType> o;
    o.temperature = static_cast<TestType>(tau);
    kdtest::check_reference<SklNearOne, TestType>(4, 1271, o, kdtest::seed(720), 6.0);
    kdtest::check_reference<SrklSmall, TestType>(4, 1271, o, kdtest::seed(721), 6.0);
  }
}
