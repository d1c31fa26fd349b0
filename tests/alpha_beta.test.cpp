// Tests of kdloss::AlphaBeta (ABKD).
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/alpha_beta.hpp>
#include <kdloss/forward_kl.hpp>
#include <kdloss/reverse_kl.hpp>

#include "support/suite.hpp"

using namespace kdtest::specs;

KDTEST_PAIR_LOSS_SUITE(Ab, "AlphaBeta 0.2 0.7", "[alpha_beta]")
KDTEST_PAIR_LOSS_SUITE(AbNeg, "AlphaBeta 1.5 -0.4", "[alpha_beta]")
KDTEST_PAIR_LOSS_SUITE(AbBeta0, "AlphaBeta 0.6 0", "[alpha_beta]")
KDTEST_PAIR_LOSS_SUITE(AbAlpha0, "AlphaBeta 0 0.8", "[alpha_beta]")
KDTEST_PAIR_LOSS_SUITE(AbSum0, "AlphaBeta 0.5 -0.5", "[alpha_beta]")
KDTEST_PAIR_LOSS_SUITE(AbZero, "AlphaBeta 0 0", "[alpha_beta]")

TEMPLATE_TEST_CASE("AlphaBeta 1 0 is ForwardKL and 0 1 is ReverseKL and 0.5 0.5 is four squared Hellinger", "[alpha_beta]", float, double) {
  using T = TestType;
  const long n = 4, v = 1031;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(760));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(761));
  kdloss::RowMatrix<T> G(n, v), Gk(n, v);
  const double ab10 = static_cast<double>(kdloss::AlphaBeta<T>({}, 1, 0)(S, Tt, G));
  const double fkl = static_cast<double>(kdloss::ForwardKL<T>()(S, Tt, Gk));
  CHECK(std::fabs(ab10 - fkl) <= 256 * kdtest::eps<T>() * fkl);
  CHECK((G - Gk).cwiseAbs().maxCoeff() <= T(64 * kdtest::eps<T>()));
  const double ab01 = static_cast<double>(kdloss::AlphaBeta<T>({}, 0, 1)(S, Tt, G));
  const double rkl = static_cast<double>(kdloss::ReverseKL<T>()(S, Tt, Gk));
  CHECK(std::fabs(ab01 - rkl) <= 256 * kdtest::eps<T>() * rkl);
  CHECK((G - Gk).cwiseAbs().maxCoeff() <= T(256 * kdtest::eps<T>()));
  const double ab55 = static_cast<double>(kdloss::AlphaBeta<T>({}, 0.5, 0.5)(S, Tt));
  const double hel = static_cast<double>(kdloss::FDivergence<kdloss::generators::SquaredHellinger, T>()(S, Tt));
  CHECK(std::fabs(ab55 - 4 * hel) <= 256 * kdtest::eps<T>() * ab55);
}

TEST_CASE("AlphaBeta is continuous around its special cases", "[alpha_beta]") {
  // Approaching a special case in either parameter from either side, the distance to its value
  // and gradient shrinks linearly: 100 times closer at d = 1e-5 than at d = 1e-3.
  const long n = 3, v = 129;
  const kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, kdtest::seed(770));
  const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, kdtest::seed(771));
  kdloss::RowMatrix<double> G(n, v), G0(n, v);
  const double cases[][2] = {{0.7, 0.0}, {0.0, 0.6}, {0.4, -0.4}, {0.0, 0.0}, {1.0, 0.0}, {0.0, 1.0}};
  for (const auto& c : cases) {
    const double v0 = kdloss::AlphaBeta<double>({}, c[0], c[1])(S, Tt, G0);
    for (int which = 0; which < 2; ++which) {
      for (const double sign : {1.0, -1.0}) {
        double dv[2], dg[2];
        for (int k = 0; k < 2; ++k) {
          const double d = sign * (k == 0 ? 1e-3 : 1e-5);
          const double a = c[0] + (which == 0 ? d : 0), b = c[1] + (which == 1 ? d : 0);
          dv[k] = std::fabs(kdloss::AlphaBeta<double>({}, a, b)(S, Tt, G) - v0);
          dg[k] = (G - G0).cwiseAbs().maxCoeff();
        }
        INFO("special case (" << c[0] << ", " << c[1] << "), parameter " << which << ", side " << sign
                              << ": |dL| " << dv[0] << " -> " << dv[1] << ", |dG| " << dg[0] << " -> " << dg[1]);
        CHECK(dv[1] <= 0.03 * dv[0] + 1e-12 * (std::fabs(v0) + 1));
        CHECK(dg[1] <= 0.03 * dg[0] + 1e-12);
      }
    }
  }
}

TEST_CASE("AlphaBeta rejects non-finite parameters", "[alpha_beta]") {
  CHECK_THROWS_AS(kdloss::AlphaBeta<float>({}, std::numeric_limits<double>::infinity(), 0.5), std::invalid_argument);
  CHECK_THROWS_WITH(kdloss::AlphaBeta<float>({}, 0.5, std::numeric_limits<double>::quiet_NaN()), Catch::Contains("alpha and beta"));
}
