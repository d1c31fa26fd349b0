// Tests of kdloss::SoftTargetCrossEntropy (PS-KD) and kdloss::pskd_alpha.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/cross_entropy.hpp>
#include <kdloss/soft_target_cross_entropy.hpp>

#include "support/labeled_contract.hpp"
#include "support/reference_seed.hpp"

namespace {
/// Rows of a probability matrix (softmax of random logits), optionally with exact zeros.
template <class T>
kdloss::RowMatrix<T> probabilities(long n, long v, std::uint32_t s, bool zeros = false) {
  kdloss::RowMatrix<T> z = kdtest::random_logits<T>(n, v, s, 2.0);
  if (zeros) kdtest::mask_random(z, 0.3, s + 1);
  kdloss::RowMatrix<T> p(n, v);
  kdloss::log_softmax(z, p, T(1));
  return p.array().exp().matrix();
}

/// Value and gradient against the reference for one configuration.
template <class T>
void check_stce(long n, long v, double a, double tau, std::uint32_t s, bool zeros = false) {
  INFO("N=" << n << " V=" << v << " alpha=" << a << " tau=" << tau);
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s);
  const kdloss::RowMatrix<T> P = probabilities<T>(n, v, s + 1, zeros);
  const Eigen::VectorXi y = kdtest::random_labels(n, v, s + 2);
  kdloss::Options<T> o;
  o.temperature = static_cast<T>(tau);
  o.reduction = kdloss::Reduction::Sum;
  const kdloss::SoftTargetCrossEntropy<T> ce(o, a);
  kdloss::RowMatrix<T> G(n, v);
  const double value = static_cast<double>(ce(S, y, P, G));
  CHECK(value == static_cast<double>(ce(S, y, P)));
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Pd = kdtest::to_double(P);
  double rv = 0, rs = 0;
  const double e = kdtest::eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  for (long i = 0; i < n; ++i) {
    if (y[i] == -100) {
      CHECK(G.row(i).cwiseAbs().maxCoeff() == T(0));
      continue;
    }
    const auto r = kdtest::ref::soft_target_ce(Sd.row(i).data(), Pd.row(i).data(), v, tau, y[i], a);
    rv += r.value, rs += r.value_scale;
    for (long j = 0; j < v; ++j)
      CHECK(std::fabs(static_cast<double>(G(i, j)) - r.grad[static_cast<size_t>(j)]) <=
            kdtest::kUlpFactor * e * r.grad_scale[static_cast<size_t>(j)] + tiny);
  }
  CHECK(std::fabs(value - rv) <= kdtest::kUlpFactor * e * rs + tiny);
}
}  // namespace

TEMPLATE_TEST_CASE("SoftTargetCrossEntropy matches the double reference", "[soft_target]", float, double) {
  std::uint32_t s = kdtest::seed(4000);
  for (const long v : {1L, 3L, 17L, 1271L, 65537L})
    for (const double a : {0.0, 0.3, 0.8, 1.0})
      for (const double tau : {1.0, 2.0}) check_stce<TestType>(v > 2000 ? 3 : 5, v, a, tau, s++ * 3);
  check_stce<TestType>(5, 301, 0.5, 1.0, s * 3 + 7, true);  // targets with exact zeros
}

TEMPLATE_TEST_CASE("SoftTargetCrossEntropy at alpha 0 is CrossEntropy", "[soft_target]", float, double) {
  using T = TestType;
  const long n = 6, v = 777;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(4100));
  const kdloss::RowMatrix<T> P = probabilities<T>(n, v, kdtest::seed(4101));
  const Eigen::VectorXi y = kdtest::random_labels(n, v, kdtest::seed(4102));
  kdloss::RowMatrix<T> G1(n, v), G2(n, v);
  const double a = static_cast<double>(kdloss::SoftTargetCrossEntropy<T>({}, 0.0)(S, y, P, G1));
  const double b = static_cast<double>(kdloss::CrossEntropy<T>()(S, y, G2));
  CHECK(std::fabs(a - b) <= 16 * kdtest::eps<T>() * (b + 1));
  CHECK((G1 - G2).cwiseAbs().maxCoeff() <= T(16 * kdtest::eps<T>()));
}

TEST_CASE("SoftTargetCrossEntropy gradient equals central finite differences", "[soft_target]") {
  const long n = 3, v = 13;
  kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, kdtest::seed(4200), 2.0);
  const kdloss::RowMatrix<double> P = probabilities<double>(n, v, kdtest::seed(4201));
  const Eigen::VectorXi y = kdtest::random_labels(n, v, kdtest::seed(4202));
  kdloss::Options<double> o;
  o.temperature = 1.7;
  const kdloss::SoftTargetCrossEntropy<double> ce(o, 0.6);
  kdloss::RowMatrix<double> G(n, v);
  ce(S, y, P, G);
  double worst = 0;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < v; ++j) {
      const double x0 = S(i, j), h = 1e-5 * std::max(1.0, std::fabs(x0));
      S(i, j) = x0 + h;
      const double fp = ce(S, y, P);
      S(i, j) = x0 - h;
      const double fm = ce(S, y, P);
      S(i, j) = x0;
      const double fd = (fp - fm) / (2 * h);
      CHECK(std::fabs(G(i, j) - fd) <= 1e-8 + 1e-6 * std::fabs(fd));
      worst = std::max(worst, std::fabs(G(i, j) - fd));
    }
  kdtest::report("kdloss::SoftTargetCrossEntropy finite-difference max abs error", worst);
}

TEMPLATE_TEST_CASE("SoftTargetCrossEntropy calls errors and allocation", "[soft_target]", float, double) {
  using T = TestType;
  using Catch::Contains;
  const long n = 4, v = 50;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(4300));
  kdloss::RowMatrix<T> P = probabilities<T>(n, v, kdtest::seed(4301));
  Eigen::VectorXi y = kdtest::random_labels(n, v, kdtest::seed(4302));
  kdloss::SoftTargetCrossEntropy<T> ce({}, 0.5);
  kdloss::RowMatrix<T> G(n, v);
  // accumulate and per_row agree with the plain call
  const T value = ce(S, y, P, G);
  kdloss::RowMatrix<T> G2 = G;
  CHECK(ce.accumulate(S, y, P, G2, T(2), T(1)) == 2 * value);
  CHECK((G2 - 3 * G).cwiseAbs().maxCoeff() <= T(8 * kdtest::eps<T>()));
  kdloss::Options<T> on;
  on.reduction = kdloss::Reduction::None;
  kdloss::Vector<T> rows(n);
  kdloss::SoftTargetCrossEntropy<T>(on, 0.5).per_row(S, y, P, rows);
  CHECK(std::fabs(static_cast<double>(rows.sum()) / 3 - static_cast<double>(value)) <= 16 * kdtest::eps<T>() * static_cast<double>(value));
  // bad alpha, labels, target entries, shapes
  CHECK_THROWS_WITH(ce.set_alpha(1.5), Contains("alpha"));
  y[0] = v;
  CHECK_THROWS_WITH(ce(S, y, P), Contains("row 0") && Contains("label"));
  y[0] = 1;
  for (const T bad : {T(-0.1), std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity()}) {
    kdloss::RowMatrix<T> Pb = P;
    Pb(2, 7) = bad;
    CHECK_THROWS_AS(ce(S, y, Pb, G), std::invalid_argument);
    CHECK_THROWS_WITH(ce(S, y, Pb, G), Contains("row 2") && Contains("soft target"));
  }
  kdloss::RowMatrix<T> Pn = P;
  Pn.row(3) *= T(1.01);  // not a probability row
  CHECK_THROWS_WITH(ce(S, y, Pn), Contains("row 3") && Contains("sum"));
  const kdloss::RowMatrix<T> Pw(n, v + 1);
  CHECK_THROWS_WITH(ce(S, y, Pw), Contains("target is 4x51"));
  // a target row with mass where the student logit is -inf: +inf, finite gradient
  kdloss::RowMatrix<T> Sm = S;
  Sm(0, 3) = -std::numeric_limits<T>::infinity();
  CHECK(ce(Sm, y, P, G) == std::numeric_limits<T>::infinity());
  CHECK(G.allFinite());
  // no allocation
  T sink = 0;
  {
    kdtest::NoAllocScope scope;
    sink += ce(S, y, P);
    sink += ce(S, y, P, G);
    sink += ce.accumulate(S, y, P, G, T(1), T(1));
    CHECK(scope.count() == 0);
  }
  CHECK(std::isfinite(static_cast<double>(sink)));
}

TEST_CASE("pskd_alpha is the reference's linear ramp", "[soft_target]") {
  CHECK(kdloss::pskd_alpha(0, 300) == Approx(0.8 / 300));
  CHECK(kdloss::pskd_alpha(149, 300) == Approx(0.4));
  CHECK(kdloss::pskd_alpha(299, 300) == Approx(0.8));
  CHECK(kdloss::pskd_alpha(4, 10, 0.5) == Approx(0.25));
  CHECK_THROWS_AS(kdloss::pskd_alpha(10, 10), std::invalid_argument);
  CHECK_THROWS_AS(kdloss::pskd_alpha(-1, 10), std::invalid_argument);
  CHECK_THROWS_AS(kdloss::pskd_alpha(0, 10, 1.5), std::invalid_argument);
}
