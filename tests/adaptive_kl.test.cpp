// Tests of kdloss::AdaptiveKL against a reference that sorts the whole row in double.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/adaptive_kl.hpp>

#include "support/suite.hpp"

using kdtest::specs::Akl;
using Akl05 = kdtest::specs::AklMu<50>;
using Akl95 = kdtest::specs::AklMu<950>;

KDTEST_PAIR_LOSS_SUITE_NO_FD(Akl, "AdaptiveKL", "[adaptive_kl]")
KDTEST_PAIR_LOSS_SUITE_NO_FD(Akl05, "AdaptiveKL mu 0.05", "[adaptive_kl]")
KDTEST_PAIR_LOSS_SUITE_NO_FD(Akl95, "AdaptiveKL mu 0.95", "[adaptive_kl]")

namespace {

/// The reference's decision for a row, at mu or, where the kernel's head differs from it, at the mu'
/// within `band` of mu that gives the kernel's head (head sizes grow with mu, so a bisection finds
/// it). A token whose cumulative probability lies within the band of mu is in or out by the
/// rounding of the kernel's T probabilities (each within a few ulp; their sum within a few eps of
/// 1), not by the inputs: either decision is right, and everything else is checked against it.
/// Outside the band the head must be the reference's exactly. Returns the mu the decision used.
inline double decision_mu(const double* s, const double* t, long v, double tau, double mu, double band,
                          long head_size) {
  if (kdtest::ref::akl_decision(s, t, v, tau, mu).head_size == head_size) return mu;
  double lo = mu - band, hi = mu + band;
  for (int k = 0; k < 60; ++k) {
    const double mid = (lo + hi) / 2;
    const long h = kdtest::ref::akl_decision(s, t, v, tau, mid).head_size;
    if (h == head_size) return mid;
    (h < head_size ? lo : hi) = mid;
  }
  return mu;  // none within the band: the checks against mu's decision fail and say so
}

/// Runs AdaptiveKL<T> on (S, Tt) and checks, row by row, the head size and weights it reports and
/// the value and gradient against the sorted double reference.
template <class T, class Arch = kdloss::simd::best_arch>
void check_rows(const kdloss::RowMatrix<T>& S, const kdloss::RowMatrix<T>& Tt, double mu, double tau = 1.0) {
  const long n = S.rows(), v = S.cols();
  kdloss::Options<T> o;
  o.temperature = static_cast<T>(tau);
  o.reduction = kdloss::Reduction::None;
  const kdloss::AdaptiveKL<T, Arch> akl(o, mu);
  kdloss::RowMatrix<T> G(n, v);
  kdloss::Vector<T> rows(n);
  akl.per_row(S, Tt, rows, G);
  REQUIRE(akl.last_rows().size() == static_cast<size_t>(n));
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
  const double e = kdtest::eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  for (long i = 0; i < n; ++i) {
    INFO("row " << i << " V=" << v << " mu=" << mu << " tau=" << tau);
    const kdloss::AdaptiveKLRow got = akl.last_rows()[static_cast<size_t>(i)];
    const double m = decision_mu(Sd.row(i).data(), Td.row(i).data(), v, tau, mu, 16 * e, got.head_size);
    INFO("reference decision at mu = " << m);
    const auto d = kdtest::ref::akl_decision(Sd.row(i).data(), Td.row(i).data(), v, tau, m);
    CHECK(got.head_size == d.head_size);
    // The weights within what the rounding of p and q in T can move them (about 2e-5 in float and
    // 4e-14 in double for a typical random row; more where the student is close to the teacher:
    // the gaps are then small, and a V = 2 row's w_head moved by 5.7e-4 in float at Catch seed 11);
    // the value and the gradient at the kernel's own weights, within the usual rounding.
    const double cond = kdtest::ref::akl_weight_condition(Sd.row(i).data(), Td.row(i).data(), v, tau);
    INFO("weights' condition " << cond);
    CHECK(std::fabs(got.w_head - d.w_head) <= kdtest::kUlpFactor * e * cond);
    CHECK(got.w_head + got.w_tail == 1.0);
    const auto r = kdtest::ref::adaptive_kl_at(Sd.row(i).data(), Td.row(i).data(), v, tau, got.w_head, got.w_tail);
    CHECK(std::fabs(static_cast<double>(rows[i]) - r.value) <= kdtest::kUlpFactor * e * r.value_scale + tiny);
    double worst = 0, bound = 0;
    for (long j = 0; j < v; ++j) {
      const double err = std::fabs(static_cast<double>(G(i, j)) - r.grad[static_cast<size_t>(j)]);
      const double b = kdtest::kUlpFactor * e * r.grad_scale[static_cast<size_t>(j)] + tiny;
      if (err - b > worst - bound) worst = err, bound = b;
    }
    CHECK(worst <= bound);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("AdaptiveKL heads and weights equal a full sort on random rows", "[adaptive_kl]", float, double) {
  using T = TestType;
  std::uint32_t s = kdtest::seed(1000);
  for (const long v : {1L, 2L, 3L, 17L, 33L, 1271L, 32000L}) {
    for (const double mu : {0.5, 0.05, 0.3, 0.8}) {
      for (const double scale : {0.3, 3.0, 8.0}) {  // flat, typical and peaked teachers
        const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(3, v, s, 3.0);
        const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(3, v, s + 1, scale);
        check_rows<T>(S, Tt, mu, scale == 3.0 ? 2.0 : 1.0);
        s += 2;
      }
    }
  }
}

TEMPLATE_TEST_CASE("AdaptiveKL breaks ties by the lower index as a stable sort", "[adaptive_kl]", float, double) {
  using T = TestType;
  for (const long v : {5L, 64L, 1271L, 20000L}) {
    for (const int levels : {2, 3, 10}) {
      for (const double mu : {0.1, 0.5, 0.9}) {
        const kdloss::RowMatrix<T> Tt = kdtest::tied_logits<T>(3, v, kdtest::seed(1100) + static_cast<std::uint32_t>(v), levels);
        const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(3, v, kdtest::seed(1101), 2.0);
        check_rows<T>(S, Tt, mu);
      }
    }
  }
}

TEMPLATE_TEST_CASE("AdaptiveKL on uniform and one-hot teachers", "[adaptive_kl]", float, double) {
  using T = TestType;
  const T ninf = -std::numeric_limits<T>::infinity();
  // Uniform teacher (every logit equal): the head is the first floor(mu V) tokens by index, 635 of
  // V = 1271 at mu = 0.5 (an odd V keeps the cumulative sums off the knife edge k/V = mu).
  {
    const long v = 1271;
    const kdloss::RowMatrix<T> Tt = kdloss::RowMatrix<T>::Constant(2, v, T(1.5));
    const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(2, v, kdtest::seed(1200), 2.0);
    check_rows<T>(S, Tt, 0.5);
    const kdloss::AdaptiveKL<T> akl;
    akl(S, Tt);
    CHECK(akl.last_rows()[0].head_size == 635);
    // Uniform on both sides: both gaps are 0, the weights are 1/2 each and the loss is 0.
    kdloss::RowMatrix<T> G(2, v);
    CHECK(akl(Tt, Tt, G) == T(0));
    CHECK(akl.last_rows()[1].w_head == 0.5);
    CHECK(G.cwiseAbs().maxCoeff() == T(0));
  }
  // A flat teacher at V = 32000 (the exact-selection path; mu 0.4999 keeps k/V off mu) and V = 1
  // (the top token is everything).
  {
    const kdloss::RowMatrix<T> Tt = kdloss::RowMatrix<T>::Zero(2, 32000);
    const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(2, 32000, kdtest::seed(1201), 1.0);
    check_rows<T>(S, Tt, 0.4999);
    const kdloss::RowMatrix<T> one_s = kdloss::RowMatrix<T>::Constant(3, 1, T(2)), one_t = kdloss::RowMatrix<T>::Zero(3, 1);
    check_rows<T>(one_s, one_t, 0.5);
  }
  // A one-hot teacher: the top token alone holds more than mu, so the head is that token; with the
  // rest masked the reverse KL is +inf (the student has mass the teacher forbids).
  {
    const long v = 4099;
    kdloss::RowMatrix<T> Tt = kdloss::RowMatrix<T>::Zero(2, v);
    Tt(0, 17) = T(30);
    Tt(1, v - 1) = T(30);
    const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(2, v, kdtest::seed(1202), 2.0);
    check_rows<T>(S, Tt, 0.5);
    const kdloss::AdaptiveKL<T> akl;
    akl(S, Tt);
    CHECK(akl.last_rows()[0].head_size == 1);
    CHECK(akl.last_rows()[1].head_size == 1);
    kdloss::RowMatrix<T> H = kdloss::RowMatrix<T>::Constant(1, v, ninf);
    H(0, 5) = T(0);
    const kdloss::RowMatrix<T> S0 = S.topRows(1);
    kdloss::RowMatrix<T> G(1, v);
    CHECK(akl(S0, H) == std::numeric_limits<T>::infinity());
    CHECK_THROWS_WITH(akl(S0, H, G), Catch::Contains("unbounded"));
  }
}

TEMPLATE_TEST_CASE("AdaptiveKL with mu near 0 and near 1", "[adaptive_kl]", float, double) {
  using T = TestType;
  const long v = 5000;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(3, v, kdtest::seed(1300), 2.0);
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(3, v, kdtest::seed(1301), 2.0);
  // mu near 0: only the forced top-1 token.
  check_rows<T>(S, Tt, 1e-9);
  const kdloss::AdaptiveKL<T> tiny({}, 1e-9);
  tiny(S, Tt);
  for (const auto& r : tiny.last_rows()) CHECK(r.head_size == 1);
  // mu near 1: almost the whole row.
  check_rows<T>(S, Tt, 1 - 1e-3);
  check_rows<T>(S, Tt, 1 - 1e-4);
  // Within float rounding of 1 the last tokens' cumulative sums are indistinguishable from mu (as
  // in the reference's float cumsum): the head then holds at least what it holds at 1 - 1e-4.
  const kdloss::AdaptiveKL<T> near({}, 1 - 1e-4), nearer({}, 1 - 1e-9);
  near(S, Tt);
  nearer(S, Tt);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(nearer.last_rows()[i].head_size >= near.last_rows()[i].head_size);
    CHECK(nearer.last_rows()[i].head_size <= v);
  }
}

TEMPLATE_TEST_CASE("AdaptiveKL on teachers that defeat its estimate of where the head ends", "[adaptive_kl]", float, double) {
  // The kernel brackets the end of the head with thresholds from a normal approximation of the
  // teacher logits under p; these rows put the end above every threshold, below every threshold,
  // and far from the estimate, on rows with few and with many entries above the thresholds.
  using T = TestType;
  const long v = 20000;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(6, v, kdtest::seed(1400), 2.0);
  kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(6, v, kdtest::seed(1401), 0.5);
  Tt(0, 123) += T(12);                     // one token with ~0.4 of the mass, a flat bulk
  Tt(1, 5) += T(14), Tt(1, 9) += T(14);    // two spikes sharing most of the mass
  for (long j = 0; j < v; ++j) {
    Tt(2, j) = static_cast<T>(-1.1 * std::log1p(static_cast<double>(j)));         // Zipf, index order
    Tt(3, j) = static_cast<T>(-1.1 * std::log1p(static_cast<double>(v - 1 - j)));  // Zipf, reversed
    Tt(4, j) = static_cast<T>(j % 2 == 0 ? 3.0 : 0.0) + T(0.001) * Tt(4, j);      // two levels
  }
  Tt.row(5) *= T(0.001);                   // nearly uniform
  for (const double mu : {0.01, 0.2, 0.5, 0.7, 0.9, 0.99}) check_rows<T>(S, Tt, mu);
  for (const double tau : {0.5, 3.0}) check_rows<T>(S, Tt, 0.5, tau);
}

TEMPLATE_TEST_CASE("AdaptiveKL: scalar path heads equal the SIMD path heads", "[adaptive_kl]", float, double) {
  using T = TestType;
  for (const long v : {7L, 100L, 1271L, 32000L}) {
    const kdloss::RowMatrix<T> Tt = kdtest::tied_logits<T>(3, v, kdtest::seed(1500), 7);
    const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(3, v, kdtest::seed(1501), 2.0);
    check_rows<T, kdloss::simd::scalar>(S, Tt, 0.5);
    check_rows<T, kdloss::simd::scalar>(S, kdtest::random_logits<T>(3, v, kdtest::seed(1502), 0.2), 0.4);
  }
}

TEST_CASE("AdaptiveKL gradient equals finite differences with the weights held fixed", "[adaptive_kl]") {
  // The weights are detached (as in the reference), so the gradient is that of
  // w_h KL(p||q) + w_t KL(q||p) at the weights the call chose: differentiate that by central
  // differences of the double reference KLs.
  for (const double tau : {1.0, 2.0}) {
    for (const long v : {3L, 17L, 40L}) {
      const long n = 3;
      kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, kdtest::seed(1600) + static_cast<std::uint32_t>(v), 2.0);
      const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, kdtest::seed(1601), 2.0);
      kdloss::Vector<double> w(n);
      w << 0.5, 0.0, 2.0;
      kdloss::Options<double> o;
      o.temperature = tau;
      o.scale_by_t2 = tau != 1.0;
      const kdloss::AdaptiveKL<double> akl(o);
      kdloss::RowMatrix<double> G(n, v);
      akl(S, Tt, G, w);
      const std::vector<kdloss::AdaptiveKLRow> chosen = akl.last_rows();
      const double c = (o.scale_by_t2 ? tau * tau : 1.0) / w.sum();
      auto fixed = [&](const kdloss::RowMatrix<double>& x) {
        double total = 0;
        for (long i = 0; i < n; ++i) {
          if (w[i] == 0) continue;
          const auto& cw = chosen[static_cast<size_t>(i)];
          const double f = kdtest::ref::forward_kl(x.row(i).data(), Tt.row(i).data(), v, tau).value;
          const double r = kdtest::ref::reverse_kl(x.row(i).data(), Tt.row(i).data(), v, tau).value;
          total += w[i] * c * (cw.w_head * f + cw.w_tail * r);
        }
        return total;
      };
      double worst = 0;
      for (long i = 0; i < n; ++i) {
        for (long j = 0; j < v; ++j) {
          const double x0 = S(i, j), h = 1e-5 * std::max(1.0, std::fabs(x0));
          S(i, j) = x0 + h;
          const double fp = fixed(S);
          S(i, j) = x0 - h;
          const double fm = fixed(S);
          S(i, j) = x0;
          const double fd = (fp - fm) / (2 * h);
          INFO("tau " << tau << " entry (" << i << "," << j << "): analytic " << G(i, j) << " fd " << fd);
          CHECK(std::fabs(G(i, j) - fd) <= 1e-8 + 1e-6 * std::fabs(fd));
          worst = std::max(worst, std::fabs(G(i, j) - fd));
        }
      }
      kdtest::report("kdloss::AdaptiveKL finite-difference max abs error", worst);
    }
  }
}

TEMPLATE_TEST_CASE("AdaptiveKL reports weights per row and zeros for masked rows", "[adaptive_kl]", float, double) {
  using T = TestType;
  const long n = 5, v = 300;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1700));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(1701), 5.0);
  kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n);
  w[3] = T(0);
  const kdloss::AdaptiveKL<T> akl;
  akl(S, Tt, w);
  const auto& rows = akl.last_rows();
  REQUIRE(rows.size() == static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) {
    INFO("row " << i);
    if (i == 3) {
      CHECK(rows[3].head_size == 0);
      CHECK(rows[3].w_head == 0);
      CHECK(rows[3].w_tail == 0);
    } else {
      CHECK(rows[static_cast<size_t>(i)].head_size >= 1);
      CHECK(rows[static_cast<size_t>(i)].w_head > 0);
      CHECK(rows[static_cast<size_t>(i)].w_tail > 0);
    }
  }
  // A smaller batch afterwards reports its own rows only.
  akl(S.topRows(2), Tt.topRows(2));
  CHECK(akl.last_rows().size() == 2);
}

TEMPLATE_TEST_CASE("AdaptiveKL allocates nothing after reserve", "[adaptive_kl]", float, double) {
  using T = TestType;
  const kdloss::AdaptiveKL<T> akl;
  akl.reserve(8, 40000);
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(8, 40000, 21), Tflat = kdtest::random_logits<T>(8, 40000, 22, 0.01);
  const kdloss::RowMatrix<T> Tpeak = kdtest::random_logits<T>(8, 40000, 23, 6.0);
  kdloss::RowMatrix<T> G(8, 40000);
  kdloss::Vector<T> rows(8);
  T sink = 0;
  {
    kdtest::NoAllocScope scope;
    sink += akl(S, Tflat, G);   // exact selection
    sink += akl(S, Tpeak, G);   // candidates
    sink += akl.accumulate(S, Tpeak, G, T(0.5), T(1));
    sink += akl.per_row(S.topRows(3).leftCols(1000), Tflat.topRows(3).leftCols(1000), rows.head(3));
    CHECK(scope.count() == 0);
  }
  CHECK(std::isfinite(static_cast<double>(sink)));
}

TEST_CASE("AdaptiveKL rejects mu outside (0, 1)", "[adaptive_kl]") {
  for (const double mu : {0.0, 1.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    INFO("mu " << mu);
    CHECK_THROWS_AS(kdloss::AdaptiveKL<float>({}, mu), std::invalid_argument);
    CHECK_THROWS_WITH(kdloss::AdaptiveKL<float>({}, mu), Catch::Contains("AdaptiveKL") && Catch::Contains("mu"));
  }
}
