// Tests of kdloss::CrossEntropy (hard labels, label smoothing, CE + KD in one buffer).
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/cross_entropy.hpp>
#include <kdloss/forward_kl.hpp>

#include "support/contract.hpp"
#include "support/reference_family.hpp"

namespace {

Eigen::VectorXi random_labels(long n, long v, std::uint32_t s, bool with_ignored) {
  std::mt19937 gen(s);
  std::uniform_int_distribution<long> d(0, v - 1);
  Eigen::VectorXi y(n);
  for (long i = 0; i < n; ++i) y[i] = with_ignored && i % 3 == 2 ? -100 : static_cast<int>(d(gen));
  return y;
}

template <class T>
void check_ce_on(const kdloss::RowMatrix<T>& S, const Eigen::VectorXi& y, double tau, double eps, kdloss::Reduction red) {
  const long n = S.rows(), v = S.cols();
  kdloss::Options<T> o;
  o.temperature = static_cast<T>(tau);
  o.reduction = red;
  const kdloss::CrossEntropy<T> ce(o, eps);
  kdloss::RowMatrix<T> G(n, v);
  const double value = static_cast<double>(ce(S, y, G));
  CHECK(static_cast<double>(ce(S, y)) == value);
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S);
  double ref = 0, valid = 0, scale = 0;
  std::vector<std::vector<double>> grad(static_cast<size_t>(n)), gscale(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) {
    grad[static_cast<size_t>(i)].assign(static_cast<size_t>(v), 0.0);
    gscale[static_cast<size_t>(i)].assign(static_cast<size_t>(v), 0.0);
    if (y[i] == -100) continue;
    valid += 1;
  }
  const double d = red == kdloss::Reduction::BatchMean ? valid : 1.0;
  for (long i = 0; i < n; ++i) {
    if (y[i] == -100) continue;
    const auto r = kdtest::ref::cross_entropy(Sd.row(i).data(), v, tau, y[i], eps);
    ref += r.value / d;
    scale += r.value_scale / d;
    for (long j = 0; j < v; ++j) {
      grad[static_cast<size_t>(i)][static_cast<size_t>(j)] = r.grad[static_cast<size_t>(j)] / d;
      gscale[static_cast<size_t>(i)][static_cast<size_t>(j)] = r.grad_scale[static_cast<size_t>(j)] / d;
    }
  }
  const double e = kdtest::eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  CHECK(std::fabs(value - ref) <= kdtest::kUlpFactor * e * scale + tiny);
  const std::string why = kdtest::compare(G, grad, [&](long i, long j) {
    return kdtest::kUlpFactor * e * gscale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny;
  });
  INFO(why);
  CHECK(why.empty());
  for (long i = 0; i < n; ++i) {
    if (y[i] == -100) {
      CHECK(G.row(i).cwiseAbs().maxCoeff() == T(0));
    } else {  // the target sums to 1, so every gradient row sums to 0
      CHECK(std::fabs(G.row(i).template cast<double>().sum()) <= kdtest::kUlpFactor * e * (1 + std::sqrt(static_cast<double>(v))));
    }
  }
}

template <class T>
void check_ce_reference(long n, long v, double tau, double eps, std::uint32_t s, kdloss::Reduction red) {
  INFO("CrossEntropy N=" << n << " V=" << v << " tau=" << tau << " smoothing=" << eps);
  check_ce_on<T>(kdtest::random_logits<T>(n, v, s), random_labels(n, v, s + 1, true), tau, eps, red);
}

}  // namespace

TEMPLATE_TEST_CASE("CrossEntropy matches the double reference", "[cross_entropy]", float, double) {
  std::uint32_t s = kdtest::seed(800);
  for (const long v : {1L, 3L, 17L, 1271L, 65537L})
    for (const double eps : {0.0, 0.1})
      for (const double tau : {1.0, 2.0})
        check_ce_reference<TestType>(v > 2000 ? 3 : 7, v, tau, eps, s++, kdloss::Reduction::BatchMean);
  check_ce_reference<TestType>(6, 333, 1.0, 0.2, s++, kdloss::Reduction::Sum);
}

// Pass 1 leaves the student's exponentials in the gradient row, relative to each block's running
// maximum, and the gradient pass scales them by a factor per block. Rows of 5000 entries span
// several blocks on every path: a slow ramp and jumps of 80 (every block's maximum rises), a first
// stretch 300 below the rest (its factor is below the smallest normal float, taken as two factors,
// and its gradient entries underflow), a first stretch masked, and rows whose logits pass the fused
// exponent's range (|logit| > 4096 / log2(e) / tau): all of the row, so every block has a maximum
// for its reference, or only its second half, so the blocks mix the two kinds of reference and the
// gradient pass takes the exponential instead; and a block whose factor is below the smallest
// normal float while its probabilities are not.
TEMPLATE_TEST_CASE("CrossEntropy rows whose maxima rise along the row", "[cross_entropy]", float, double) {
  using T = TestType;
  const long n = 8, v = 5000;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(840), 2.0);
  for (long j = 0; j < v; ++j) {
    const double x = static_cast<double>(j);
    S(0, j) += static_cast<T>(0.02 * x);
    S(1, j) += static_cast<T>(80.0 * std::floor(x / 1500));
    if (j < 2100) S(2, j) -= T(300);
    if (j < 1300) S(3, j) = -std::numeric_limits<T>::infinity();
    S(4, j) += T(5000);
    if (j >= 2500) S(5, j) += T(4000);
  }
  S(6, v - 1) = T(60);  // the maximum in the last entry
  // Row 7: 2048 entries at -88, then 2048 at -87, 1.44 above in base 2 (tau = 1), which pass 1 keeps
  // relative to the lower maximum, then -60 (39 above in base 2: swept again at its own). The row's
  // maximum, one entry at 0, lies 127 above -88 in base 2: the first block at -87 has a factor of
  // 2^-127, below the smallest normal float, while its probabilities (2^-125.5) are normal floats.
  for (long j = 0; j < v; ++j) S(7, j) = j < 2048 ? T(-88) : j < 4096 ? T(-87) : T(-60);
  S(7, 4500) = T(0);
  Eigen::VectorXi y(n);
  y << 4999, 10, 2200, 1400, 17, 4000, 4999, 3000;
  for (const double tau : {1.0, 2.0})
    for (const double eps : {0.0, 0.1}) {
      INFO("CrossEntropy rising maxima, tau=" << tau << " smoothing=" << eps);
      // With smoothing, the masked entries of row 3 make its value +inf: that row is ignored.
      Eigen::VectorXi ye = y;
      if (eps > 0) ye[3] = -100;
      check_ce_on<T>(S, ye, tau, eps, kdloss::Reduction::Sum);
    }
}

TEST_CASE("CrossEntropy gradient equals central finite differences", "[cross_entropy]") {
  const long n = 3, v = 11;
  for (const double eps : {0.0, 0.15}) {
    kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, kdtest::seed(810), 2.0);
    Eigen::VectorXi y(n);
    y << 4, 0, 10;
    kdloss::Options<double> o;
    o.temperature = 1.5;
    const kdloss::CrossEntropy<double> ce(o, eps);
    kdloss::RowMatrix<double> G(n, v);
    ce(S, y, G);
    double worst = 0;
    for (long i = 0; i < n; ++i)
      for (long j = 0; j < v; ++j) {
        const double x0 = S(i, j), h = 1e-5 * std::max(1.0, std::fabs(x0));
        S(i, j) = x0 + h;
        const double fp = ce(S, y);
        S(i, j) = x0 - h;
        const double fm = ce(S, y);
        S(i, j) = x0;
        const double fd = (fp - fm) / (2 * h);
        worst = std::max(worst, std::fabs(fd - G(i, j)));
        CHECK(std::fabs(fd - G(i, j)) <= 1e-8 + 1e-6 * std::fabs(fd));
      }
    kdtest::report("kdloss::CrossEntropy finite-difference max abs error", worst);
  }
}

TEMPLATE_TEST_CASE("CE + KD in one gradient buffer with the accumulate form", "[cross_entropy]", float, double) {
  using T = TestType;
  const long n = 5, v = 1000;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(820));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(821));
  const Eigen::VectorXi y = random_labels(n, v, kdtest::seed(822), true);
  const kdloss::CrossEntropy<T> ce;
  const kdloss::ForwardKL<T> kd({T(2)});
  kdloss::RowMatrix<T> Gce(n, v), Gkd(n, v), G = kdloss::RowMatrix<T>::Constant(n, v, std::numeric_limits<T>::quiet_NaN());
  const T lce = ce(S, y, Gce), lkd = kd(S, Tt, Gkd);
  const T a = T(0.3), b = T(0.7);
  const T total = ce.accumulate(S, y, G, a, T(0)) + kd.accumulate(S, Tt, G, b, T(1));
  CHECK(std::fabs(static_cast<double>(total - (a * lce + b * lkd))) <= 8 * kdtest::eps<T>() * static_cast<double>(total));
  CHECK((G - (a * Gce + b * Gkd)).cwiseAbs().maxCoeff() <= T(8 * kdtest::eps<T>()));
}

TEMPLATE_TEST_CASE("CrossEntropy labels and masks and layouts and errors and allocation", "[cross_entropy]", float, double) {
  using T = TestType;
  using Catch::Contains;
  const long n = 4, v = 50;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(830));
  kdloss::RowMatrix<T> G(n, v);
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> y(n);
  y << 1, 49, -100, 0;
  const kdloss::CrossEntropy<T> ce({}, 0.0);
  const T v1 = ce(S, y, G);
  CHECK(G.row(2).cwiseAbs().maxCoeff() == T(0));
  // Weights combine with the label mask.
  kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n);
  w[0] = T(0);
  kdloss::RowMatrix<T> Gw(n, v);
  ce(S, y, Gw, w);
  CHECK(Gw.row(0).cwiseAbs().maxCoeff() == T(0));
  // A custom ignore index.
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> y7 = y;
  y7[2] = 7;
  kdloss::RowMatrix<T> G7(n, v);
  CHECK(kdloss::CrossEntropy<T>({}, 0.0, 7)(S, y7, G7) == v1);
  // Map over a raw buffer and a strided block give the same result.
  kdloss::RowMatrix<T> wide(n, v + 9);
  wide.leftCols(v) = S;
  kdloss::RowMatrix<T> G2(n, v);
  CHECK(ce(wide.leftCols(v), y, G2) == v1);
  CHECK(G2 == G);
  // Bad labels and shapes.
  y[1] = v;
  CHECK_THROWS_AS(ce(S, y), std::invalid_argument);
  CHECK_THROWS_WITH(ce(S, y, G), Contains("row 1") && Contains("label 50") && Contains("[0, 50)"));
  y[1] = -3;
  CHECK_THROWS_WITH(ce(S, y), Contains("label -3"));
  y[1] = 49;
  Eigen::VectorXi y3(3);
  y3 << 0, 1, 2;
  CHECK_THROWS_WITH(ce(S, y3), Contains("3 labels for 4 rows"));
  CHECK_THROWS_WITH(kdloss::CrossEntropy<T>({}, 1.5), Contains("label_smoothing"));
  S(3, 5) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_WITH(ce(S, y, G), Contains("row 3") && Contains("NaN"));
  S(3, 5) = T(0);
  // A label on a -inf logit: +inf, with a finite gradient.
  S(0, 1) = -std::numeric_limits<T>::infinity();
  kdloss::Options<T> so;
  so.reduction = kdloss::Reduction::Sum;
  CHECK(kdloss::CrossEntropy<T>(so)(S, y, G) == std::numeric_limits<T>::infinity());
  CHECK(G.allFinite());
  S(0, 1) = T(0);
  kdtest::NoAllocScope scope;
  T sink = ce(S, y) + ce(S, y, G) + ce.accumulate(S, y, G, T(1), T(1), w);
  CHECK(scope.count() == 0);
  CHECK(std::isfinite(static_cast<double>(sink)));
}
