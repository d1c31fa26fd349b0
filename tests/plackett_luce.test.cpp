// Tests of kdloss::PlackettLuce (PLD) against a long-double reference that sorts each row with
// std::stable_sort, and of the radix sort it ranks the classes with.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/cross_entropy.hpp>
#include <kdloss/plackett_luce.hpp>

#include <algorithm>
#include <numeric>

#include "support/contract.hpp"
#include "support/reference_pld.hpp"

namespace {

using Labels = Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/// 64-bit labels uniform in [0, V), every third row ignored when `with_ignored`.
Labels random_labels64(long n, long v, std::uint32_t s, bool with_ignored) {
  std::mt19937 gen(s);
  std::uniform_int_distribution<long> d(0, v - 1);
  Labels y(n);
  for (long i = 0; i < n; ++i) y[i] = with_ignored && i % 3 == 2 ? -100 : d(gen);
  return y;
}

/// The reference of a whole call: rows reduced with weights, label mask and options.
struct Expect {
  double value = 0, value_scale = 0;
  std::vector<std::vector<double>> grad, grad_scale;
};

template <class T>
Expect reference(const kdloss::RowMatrix<double>& S, const kdloss::RowMatrix<double>& Tt, const Labels& y,
                 const kdloss::Options<T>& o, const kdloss::Vector<double>* w, bool direct = false,
                 std::int64_t ignore = -100) {
  const long n = S.rows(), v = S.cols();
  Expect x;
  x.grad.assign(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(v), 0.0));
  x.grad_scale = x.grad;
  double wsum = 0;
  for (long i = 0; i < n; ++i) wsum += y[i] == ignore ? 0.0 : (w ? (*w)[i] : 1.0);
  if (!(wsum > 0)) return x;
  const double tau = static_cast<double>(o.temperature);
  double d = 1;
  if (o.reduction == kdloss::Reduction::BatchMean) d = o.denominator > T(0) ? static_cast<double>(o.denominator) : wsum;
  const double c = (o.scale_by_t2 ? tau * tau : 1.0) / d;
  for (long i = 0; i < n; ++i) {
    const double wi = y[i] == ignore ? 0.0 : (w ? (*w)[i] : 1.0);
    if (wi == 0) continue;
    const kdtest::ref::Row r = kdtest::ref::plackett_luce(S.row(i).data(), Tt.row(i).data(), v, static_cast<long>(y[i]), tau, direct);
    x.value += wi * c * r.value;
    x.value_scale += wi * c * r.value_scale;
    for (long j = 0; j < v; ++j) {
      x.grad[static_cast<size_t>(i)][static_cast<size_t>(j)] = wi * c * r.grad[static_cast<size_t>(j)];
      x.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] = wi * c * r.grad_scale[static_cast<size_t>(j)];
    }
  }
  return x;
}

/// Value (both calls) and gradient of PlackettLuce<T, Arch> against the reference, within
/// kUlpFactor * eps(T) times the reference's error scales.
template <class T, class Arch = kdloss::simd::best_arch>
void check_against_reference(const kdloss::RowMatrix<T>& S, const kdloss::RowMatrix<T>& Tt, const Labels& y,
                             const kdloss::Options<T>& o, const kdloss::Vector<T>* w = nullptr,
                             double factor = kdtest::kUlpFactor) {
  const long n = S.rows(), v = S.cols();
  INFO("N=" << n << " V=" << v << " tau=" << static_cast<double>(o.temperature) << " arch=" << Arch::name);
  const kdloss::PlackettLuce<T, Arch> pl(o);
  kdloss::RowMatrix<T> G = kdloss::RowMatrix<T>::Constant(n, v, std::numeric_limits<T>::quiet_NaN());
  const T value = w ? pl(S, Tt, y, G, *w) : pl(S, Tt, y, G);
  const T value_only = w ? pl(S, Tt, y, *w) : pl(S, Tt, y);
  CHECK(value == value_only);  // the value-only call computes the very same value
  kdloss::Vector<double> wd;
  if (w) wd = w->template cast<double>();
  const Expect x = reference(kdtest::to_double(S), kdtest::to_double(Tt), y, o, w ? &wd : nullptr);
  const double e = kdtest::eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  if (std::isinf(x.value)) {
    CHECK(static_cast<double>(value) == x.value);
  } else {
    INFO("value " << static_cast<double>(value) << " reference " << x.value << " scale " << x.value_scale);
    CHECK(std::fabs(static_cast<double>(value) - x.value) <= factor * e * x.value_scale + tiny);
  }
  const std::string why = kdtest::compare(G, x.grad, [&](long i, long j) {
    return factor * e * x.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny;
  });
  INFO(why);
  CHECK(why.empty());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The radix sort.

TEMPLATE_TEST_CASE("radix sort ranks a row like a stable descending sort", "[plackett_luce][radix]", float, double) {
  using T = TestType;
  using R = kdloss::kernels::RadixItems<T>;
  constexpr T inf = std::numeric_limits<T>::infinity();
  kdloss::kernels::RadixScratch<T> ws;
  std::mt19937 gen(kdtest::seed(1900));
  auto check = [&](const std::vector<T>& x, long skip) {
    const long n = static_cast<long>(x.size());
    INFO("n=" << n << " skip=" << skip);
    ws.reserve(n);
    std::vector<long> got(static_cast<size_t>(n), -1);
    const long count = kdloss::kernels::sort_descending(x.data(), n, skip, ws, [&](long r, const typename R::Item& it) {
      got[static_cast<size_t>(r)] = static_cast<long>(R::index(it));
      CHECK(kdloss::kernels::descending_key_value<T>(R::key(it)) == x[R::index(it)]);
    });
    std::vector<long> want;
    for (long j = 0; j < n; ++j)
      if (j != skip) want.push_back(j);
    std::stable_sort(want.begin(), want.end(), [&](long a, long b) { return x[static_cast<size_t>(a)] > x[static_cast<size_t>(b)]; });
    REQUIRE(count == static_cast<long>(want.size()));
    got.resize(want.size());
    CHECK(got == want);
  };
  check({}, -1);
  check({T(1)}, -1);
  check({T(1)}, 0);
  check({T(2), T(1)}, 1);
  // Signed zeros tie, infinities and subnormals order correctly, duplicates keep index order.
  check({T(0), T(-0.0), -inf, T(1), -inf, T(-0.0), std::numeric_limits<T>::denorm_min(),
         -std::numeric_limits<T>::denorm_min(), std::numeric_limits<T>::max(), std::numeric_limits<T>::lowest(),
         T(1), T(-1), T(0)},
        3);
  // Every digit the same (all equal): no pass runs, index order.
  check(std::vector<T>(1000, T(3.5)), 17);
  // Integer values (the low digits constant: passes skipped), random values, wide ranges.
  for (const long n : {5L, 64L, 1271L, 5000L}) {
    std::vector<T> ints(static_cast<size_t>(n)), reals(static_cast<size_t>(n)), wide(static_cast<size_t>(n));
    std::uniform_int_distribution<int> u(-4, 4);
    std::normal_distribution<double> nd(0.0, 3.0);
    std::uniform_real_distribution<double> ex(-300.0, 300.0);
    for (long j = 0; j < n; ++j) {
      ints[static_cast<size_t>(j)] = static_cast<T>(u(gen));
      reals[static_cast<size_t>(j)] = static_cast<T>(nd(gen));
      wide[static_cast<size_t>(j)] = static_cast<T>((j % 2 ? 1 : -1) * std::pow(2.0, ex(gen) / (sizeof(T) == 4 ? 3 : 1)));
    }
    for (const long skip : {-1L, 0L, n / 2, n - 1}) {
      check(ints, skip);
      check(reals, skip);
      check(wide, skip);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Against the reference.

TEST_CASE("PlackettLuce reference direct and cumulative forms agree", "[plackett_luce]") {
  const long v = 300;
  const kdloss::RowMatrix<double> S = kdtest::random_logits<double>(2, v, kdtest::seed(1910), 4.0);
  kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(2, v, kdtest::seed(1911), 3.0);
  Tt(1, 7) = Tt(1, 9) = Tt(1, 11);  // ties
  Tt(1, 20) = kNegInf;
  for (const long y : {0L, 7L, 299L}) {
    for (const double tau : {1.0, 0.5, 3.0}) {
      const auto a = kdtest::ref::plackett_luce(S.row(1).data(), Tt.row(1).data(), v, y, tau, true);
      const auto b = kdtest::ref::plackett_luce(S.row(1).data(), Tt.row(1).data(), v, y, tau, false);
      CHECK(std::fabs(a.value - b.value) <= 1e-13 * (1 + std::fabs(a.value)));
      for (long j = 0; j < v; ++j)
        CHECK(std::fabs(a.grad[static_cast<size_t>(j)] - b.grad[static_cast<size_t>(j)]) <= 1e-15);
      // ...and the value equals the weighted Plackett-Luce loss of the stable ranking.
      const auto order = kdtest::ref::pld_ranking(Tt.row(1).data(), v, y);
      std::vector<long double> alpha(static_cast<size_t>(v));
      long double sum = 0;
      for (long j = 0; j < v; ++j) sum += std::exp(static_cast<long double>(Tt(1, j)) / tau);
      for (long k = 0; k < v; ++k) alpha[static_cast<size_t>(k)] = std::exp(static_cast<long double>(Tt(1, order[static_cast<size_t>(k)])) / tau) / sum;
      CHECK(std::fabs(kdtest::ref::weighted_plackett_luce(S.row(1).data(), order, alpha) - a.value) <= 1e-12 * (1 + a.value));
    }
  }
}

TEMPLATE_TEST_CASE("PlackettLuce matches the long double reference", "[plackett_luce]", float, double) {
  using T = TestType;
  std::uint32_t s = kdtest::seed(1920);
  for (const long v : {1L, 2L, 3L, 17L, 1271L, 65537L}) {
    for (const double tau : {1.0, 2.5, 0.5}) {
      const long n = v > 2000 ? 3 : 7;
      const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s++);
      const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, s++);
      const Labels y = random_labels64(n, v, s++, true);
      kdloss::Options<T> o;
      o.temperature = static_cast<T>(tau);
      check_against_reference<T>(S, Tt, y, o);
    }
  }
  // Weights, Sum, scale_by_t2, a denominator.
  const long n = 6, v = 333;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s++, 5.0);
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, s++, 2.0);
  const Labels y = random_labels64(n, v, s++, true);
  kdloss::Vector<T> w(n);
  w << T(0.5), T(2), T(1), T(0), T(0.25), T(3);
  kdloss::Options<T> o;
  o.temperature = T(2);
  check_against_reference<T>(S, Tt, y, o, &w);
  o.reduction = kdloss::Reduction::Sum;
  o.scale_by_t2 = true;
  check_against_reference<T>(S, Tt, y, o, &w);
  o.reduction = kdloss::Reduction::BatchMean;
  o.denominator = T(11);
  check_against_reference<T>(S, Tt, y, o, &w);
}

TEMPLATE_TEST_CASE("PlackettLuce ranks ties by lower class index first", "[plackett_luce]", float, double) {
  using T = TestType;
  // Integer-valued teachers: many exact ties, all ranked by index (the reference's stable sort).
  std::uint32_t s = kdtest::seed(1930);
  for (const long v : {9L, 100L, 4099L}) {
    const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(5, v, s++);
    const kdloss::RowMatrix<T> Tt = kdtest::tied_logits<T>(5, v, s++, 4);
    check_against_reference<T>(S, Tt, random_labels64(5, v, s++, false), kdloss::Options<T>{});
  }
  // A hand-checked row: t = (1, 2, 2, 1, -0, +0), label 3: ranking (3, 1, 2, 0, 4, 5), and a student
  // that tells the orders apart.
  kdloss::RowMatrix<T> Tt(1, 6), S(1, 6);
  Tt << T(1), T(2), T(2), T(1), T(-0.0), T(0);
  S << T(0.3), T(-1), T(2), T(0.5), T(1.5), T(-0.7);
  Labels y(1);
  y << 3;
  const kdtest::ref::Row r0 = kdtest::ref::plackett_luce(kdtest::to_double(S).data(), kdtest::to_double(Tt).data(), 6, 3, 1.0);
  std::vector<long double> alpha(6);
  long double sum = 0;
  for (long j = 0; j < 6; ++j) sum += std::exp(static_cast<long double>(Tt(0, j)));
  const std::vector<long> stable = {3, 1, 2, 0, 4, 5}, swapped = {3, 2, 1, 0, 5, 4};
  for (long k = 0; k < 6; ++k) alpha[static_cast<size_t>(k)] = std::exp(static_cast<long double>(Tt(0, stable[static_cast<size_t>(k)]))) / sum;
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S);
  const double want = kdtest::ref::weighted_plackett_luce(Sd.data(), stable, alpha);
  const double other = kdtest::ref::weighted_plackett_luce(Sd.data(), swapped, alpha);
  const double got = static_cast<double>(kdloss::PlackettLuce<T>()(S, Tt, y));
  CHECK(std::fabs(r0.value - want) <= 1e-15);
  CHECK(std::fabs(got - want) <= 64 * kdtest::eps<T>() * want);
  CHECK(std::fabs(want - other) > 1e-3);  // the tie order matters to the value
}

TEMPLATE_TEST_CASE("PlackettLuce gradient equals central finite differences", "[plackett_luce]", double) {
  double worst = 0;
  std::uint32_t s = kdtest::seed(1940);
  for (const long v : {2L, 5L, 17L, 40L}) {
    for (const double tau : {1.0, 0.7, 3.0}) {
      const long n = 3;
      kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, s++, 2.0);
      const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, s++, 2.0);
      const Labels y = random_labels64(n, v, s++, false);
      kdloss::Vector<double> w(n);
      w << 0.5, 1.5, 1.0;
      kdloss::Options<double> o;
      o.temperature = tau;
      o.scale_by_t2 = tau == 3.0;
      const kdloss::PlackettLuce<double> pl(o);
      kdloss::RowMatrix<double> G(n, v);
      pl(S, Tt, y, G, w);
      for (long i = 0; i < n; ++i)
        for (long j = 0; j < v; ++j) {
          const double x0 = S(i, j), h = 1e-5 * std::max(1.0, std::fabs(x0));
          S(i, j) = x0 + h;
          const double fp = pl(S, Tt, y, w);
          S(i, j) = x0 - h;
          const double fm = pl(S, Tt, y, w);
          S(i, j) = x0;
          const double fd = (fp - fm) / (2 * h);
          const double err = std::fabs(G(i, j) - fd);
          worst = std::max(worst, err);
          INFO("V=" << v << " tau=" << tau << " entry (" << i << "," << j << "): analytic " << G(i, j) << " finite difference " << fd);
          CHECK(err <= 1e-8 + 1e-6 * std::fabs(fd));
        }
    }
  }
  kdtest::report("kdloss::PlackettLuce finite-difference max abs error", worst);
}

// ---------------------------------------------------------------------------------------------
// Special cases of the paper (§4.2).

TEMPLATE_TEST_CASE("PlackettLuce with a one-hot teacher on the label is CrossEntropy", "[plackett_luce]", float, double) {
  using T = TestType;
  const long n = 6, v = 1031;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1950));
  const Labels y = random_labels64(n, v, kdtest::seed(1951), true);
  kdloss::RowMatrix<T> Tt = kdloss::RowMatrix<T>::Constant(n, v, -std::numeric_limits<T>::infinity());
  for (long i = 0; i < n; ++i) Tt(i, y[i] < 0 ? 0 : y[i]) = T(3);  // alpha = (1, 0, ..., 0)
  kdloss::RowMatrix<T> G(n, v), Gce(n, v);
  for (const double tau : {1.0, 4.0}) {  // tau_T leaves a one-hot teacher one-hot
    kdloss::Options<T> o;
    o.temperature = static_cast<T>(tau);
    const double pld = static_cast<double>(kdloss::PlackettLuce<T>(o)(S, Tt, y, G));
    const double ce = static_cast<double>(kdloss::CrossEntropy<T>()(S, y, Gce));
    // Both round log q_y and q: a few eps times (|log q| + 1) per entry.
    CHECK(std::fabs(pld - ce) <= kdtest::kUlpFactor * kdtest::eps<T>() * (ce + 10));
    CHECK((G - Gce).cwiseAbs().maxCoeff() <= T(kdtest::kUlpFactor * kdtest::eps<T>()));
  }
}

TEMPLATE_TEST_CASE("PlackettLuce with a uniform teacher is ListMLE", "[plackett_luce]", float, double) {
  using T = TestType;
  // A constant teacher row: alpha = 1/V everywhere and, by the tie rule, the ranking is the label
  // then the other classes in index order. ListMLE with uniform weights on that order.
  const long n = 4;
  std::uint32_t s = kdtest::seed(1960);
  for (const long v : {3L, 50L, 700L}) {
    const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s++);
    const kdloss::RowMatrix<T> Tt = kdloss::RowMatrix<T>::Constant(n, v, T(-1.25));
    const Labels y = random_labels64(n, v, s++, false);
    kdloss::Options<T> o;
    o.reduction = kdloss::Reduction::None;
    kdloss::Vector<T> rows(n);
    kdloss::PlackettLuce<T>(o).per_row(S, Tt, y, rows);
    const kdloss::RowMatrix<double> Sd = kdtest::to_double(S);
    for (long i = 0; i < n; ++i) {
      std::vector<long> order = {static_cast<long>(y[i])};
      for (long j = 0; j < v; ++j)
        if (j != y[i]) order.push_back(j);
      const std::vector<long double> uniform(static_cast<size_t>(v), 1.0L / static_cast<long double>(v));
      const double listmle = kdtest::ref::weighted_plackett_luce(Sd.row(i).data(), order, uniform);
      // Each stage's term is rounded at the size of |log c| + |z - max s| (<= 30 here).
      CHECK(std::fabs(static_cast<double>(rows[i]) - listmle) <= kdtest::kUlpFactor * kdtest::eps<T>() * 30 * (listmle + 1));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Labels, masks, layouts, errors, allocation, paths.

TEMPLATE_TEST_CASE("PlackettLuce labels and masks and errors", "[plackett_luce]", float, double) {
  using T = TestType;
  using Catch::Contains;
  const long n = 4, v = 50;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1970));
  kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(1971));
  kdloss::RowMatrix<T> G = kdloss::RowMatrix<T>::Constant(n, v, T(7));
  Labels y(n);
  y << 1, 49, -100, 0;
  const kdloss::PlackettLuce<T> pl;
  // The ignored row is masked: exact zeros in its gradient, and BatchMean over the other three.
  const T v1 = pl(S, Tt, y, G);
  CHECK(G.row(2).cwiseAbs().maxCoeff() == T(0));
  kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n);
  w[2] = T(0);
  kdloss::RowMatrix<T> Gw(n, v);
  Labels y2 = y;
  y2[2] = 5;
  CHECK(pl(S, Tt, y2, Gw, w) == v1);
  CHECK(Gw == G);
  // Weights combine with the label mask; a custom ignore index.
  w[0] = T(0);
  pl(S, Tt, y, Gw, w);
  CHECK(Gw.row(0).cwiseAbs().maxCoeff() == T(0));
  Labels y7 = y;
  y7[2] = 7;
  kdloss::RowMatrix<T> G7(n, v);
  CHECK(kdloss::PlackettLuce<T>({}, 7)(S, Tt, y7, G7) == v1);
  CHECK(G7 == G);
  // Every row ignored: loss 0, gradient 0.
  Labels none = Labels::Constant(n, -100);
  CHECK(pl(S, Tt, none, G) == T(0));
  CHECK(G.cwiseAbs().maxCoeff() == T(0));
  // NaN in an ignored row is never read.
  S(2, 3) = std::numeric_limits<T>::quiet_NaN();
  CHECK(std::isfinite(static_cast<double>(pl(S, Tt, y, G))));
  // Bad labels and shapes.
  y[1] = v;
  CHECK_THROWS_AS(pl(S, Tt, y), std::invalid_argument);
  CHECK_THROWS_WITH(pl(S, Tt, y, G), Contains("kdloss::PlackettLuce") && Contains("row 1") && Contains("label 50") && Contains("[0, 50)"));
  y[1] = -3;
  CHECK_THROWS_WITH(pl(S, Tt, y), Contains("label -3"));
  y[1] = 49;
  Eigen::VectorXi y3(3);
  y3 << 0, 1, 2;
  CHECK_THROWS_WITH(pl(S, Tt, y3), Contains("3 labels for 4 rows"));
  const kdloss::RowMatrix<T> Tshort = kdtest::random_logits<T>(n, v - 1, 1);
  CHECK_THROWS_WITH(pl(S, Tshort, y), Contains("4x49"));
  CHECK_THROWS_AS(kdloss::PlackettLuce<T>(kdloss::Options<T>{T(0)}), std::invalid_argument);
  // NaN / +inf logits in a weighted row are errors naming the row.
  S(3, 5) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(pl(S, Tt, y, G), std::domain_error);
  CHECK_THROWS_WITH(pl(S, Tt, y, G), Contains("row 3") && Contains("student") && Contains("NaN"));
  S(3, 5) = T(0);
  Tt(1, 9) = std::numeric_limits<T>::infinity();
  CHECK_THROWS_WITH(pl(S, Tt, y), Contains("row 1") && Contains("teacher") && Contains("+inf"));
  Tt(1, 9) = T(0);
  Tt.row(0).setConstant(-std::numeric_limits<T>::infinity());
  CHECK_THROWS_WITH(pl(S, Tt, y), Contains("row 0") && Contains("no finite entry"));
}

TEMPLATE_TEST_CASE("PlackettLuce masked vocabulary semantics", "[plackett_luce]", float, double) {
  using T = TestType;
  constexpr T inf = std::numeric_limits<T>::infinity();
  const long n = 5, v = 300;
  std::uint32_t s = kdtest::seed(1980);
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s++);
  kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, s++);
  Labels y(n);
  y << 4, 17, 250, 0, 299;
  // Row 0: -inf teacher entries (alpha = 0, ranked last by index). Row 1: -inf on both sides.
  // Row 2: a -inf student logit under a finite teacher logit (+inf). Row 3: the label's student
  // logit -inf (+inf). Row 4: the label's teacher logit -inf (alpha_1 = 0).
  for (long j = 10; j < v; j += 7) Tt(0, j) = -inf;
  for (long j = 3; j < v; j += 5) Tt(1, j) = S(1, j) = -inf;
  S(2, 100) = -inf;
  S(3, 0) = -inf;
  Tt(4, 299) = -inf;
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::None;
  const kdloss::PlackettLuce<T> pl(o);
  kdloss::Vector<T> rows(n);
  kdloss::RowMatrix<T> G(n, v);
  pl.per_row(S, Tt, y, rows, G);
  CHECK(std::isfinite(static_cast<double>(rows[0])));
  CHECK(std::isfinite(static_cast<double>(rows[1])));
  CHECK(rows[2] == inf);
  CHECK(rows[3] == inf);
  CHECK(std::isfinite(static_cast<double>(rows[4])));
  CHECK(G.allFinite());  // the gradient stays finite on +inf rows
  for (long j = 3; j < v; j += 5) CHECK(G(1, j) == T(0));  // -inf on both sides: gradient 0
  // Every row (the +inf ones included: their gradient convention) against the reference.
  kdloss::Options<T> sum;
  sum.reduction = kdloss::Reduction::Sum;
  for (long i = 0; i < n; ++i) {
    INFO("row " << i);
    check_against_reference<T>(S.middleRows(i, 1), Tt.middleRows(i, 1), y.segment(i, 1), sum);
  }
  // Classes -inf on both sides are as if they were not in the vocabulary at all.
  std::vector<long> keep;
  for (long j = 0; j < v; ++j)
    if (!(j >= 3 && (j - 3) % 5 == 0)) keep.push_back(j);
  const long vk = static_cast<long>(keep.size());
  kdloss::RowMatrix<T> Sk(1, vk), Tk(1, vk), Gk(1, vk), G1(1, v);
  Labels yk(1), y1(1);
  y1 << 17;
  for (long j = 0; j < vk; ++j) {
    Sk(0, j) = S(1, keep[static_cast<size_t>(j)]);
    Tk(0, j) = Tt(1, keep[static_cast<size_t>(j)]);
    if (keep[static_cast<size_t>(j)] == 17) yk << j;
  }
  const double full = static_cast<double>(kdloss::PlackettLuce<T>(sum)(S.middleRows(1, 1), Tt.middleRows(1, 1), y1, G1));
  const double removed = static_cast<double>(kdloss::PlackettLuce<T>(sum)(Sk, Tk, yk, Gk));
  CHECK(std::fabs(full - removed) <= 8 * kdtest::eps<T>() * (full + 1));
  for (long j = 0; j < vk; ++j) CHECK(std::fabs(static_cast<double>(G1(0, keep[static_cast<size_t>(j)]) - Gk(0, j))) <= 8 * kdtest::eps<T>());
}

TEMPLATE_TEST_CASE("PlackettLuce exact path for widely spread student logits", "[plackett_luce]", float, double) {
  using T = TestType;
  // The label's student logit far above every other class: the later stages' suffix sums
  // underflow the fast path's scale (2^-60 float, 2^-900 double), so the row takes the exact
  // double path. Also a student row with a mass of classes far below (masking by a large
  // negative number instead of -inf), which the fast path handles.
  const long n = 4, v = 40;
  const double far = sizeof(T) == 4 ? 1000.0 : 2000.0;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1990));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(1991));
  Labels y(n);
  y << 3, 0, 39, 20;
  for (long j = 0; j < v; ++j) {
    if (j != 3) S(0, j) -= static_cast<T>(far);
    if (j % 2 == 1) S(1, j) -= static_cast<T>(far);
    if (j > 20) S(2, j) = static_cast<T>(-far * 10);
  }
  S(3, 20) += static_cast<T>(far / 2);
  kdloss::Options<T> o;
  o.temperature = T(1.5);
  // The exact path sums V terms recursively in double: for double rows its error grows with V.
  check_against_reference<T>(S, Tt, y, o, nullptr, sizeof(T) == 4 ? kdtest::kUlpFactor : kdtest::kUlpFactor * v);
}

TEMPLATE_TEST_CASE("PlackettLuce invariants", "[plackett_luce]", float, double) {
  using T = TestType;
  const long n = 6, v = 777;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(2000));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(2001));
  const Labels y = random_labels64(n, v, kdtest::seed(2002), false);
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::None;
  const kdloss::PlackettLuce<T> pl(o);
  kdloss::Vector<T> rows(n), rows2(n);
  kdloss::RowMatrix<T> G(n, v), G2(n, v);
  pl.per_row(S, Tt, y, rows, G);
  CHECK(rows.minCoeff() >= T(0));
  const Expect x = reference(kdtest::to_double(S), kdtest::to_double(Tt), y, o, nullptr);
  for (long i = 0; i < n; ++i) {  // rows of the gradient sum to 0
    double sum = 0, mag = 0;
    for (long j = 0; j < v; ++j) sum += static_cast<double>(G(i, j)), mag += x.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)];
    CHECK(std::fabs(sum) <= kdtest::kUlpFactor * kdtest::eps<T>() * mag);
  }
  // A constant added to the student rows changes nothing beyond the rounding of the shifted
  // logits (eps |c| per logit, in a loss whose terms are at most |log c| + |z - max s| ~ 30).
  for (const double c : {60.0, -60.0}) {
    const kdloss::RowMatrix<T> S2 = (S.array() + T(c)).matrix();
    pl.per_row(S2, Tt, y, rows2, G2);
    CHECK((rows - rows2).cwiseAbs().maxCoeff() <= T(8 * kdtest::eps<T>() * (std::fabs(c) + 30)));
    CHECK((G - G2).cwiseAbs().maxCoeff() <= T(8 * kdtest::eps<T>() * (std::fabs(c) + 30)));
  }
}

TEMPLATE_TEST_CASE("PlackettLuce options and reductions and accumulate", "[plackett_luce]", float, double) {
  using T = TestType;
  const long n = 6, v = 129;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(2010));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(2011));
  const Labels y = random_labels64(n, v, kdtest::seed(2012), true);
  kdloss::Vector<T> w(n);
  for (long i = 0; i < n; ++i) w[i] = T(0.5 + 0.25 * static_cast<double>(i % 4));
  const double tol = 16 * kdtest::eps<T>();
  kdloss::Options<T> o;
  o.temperature = T(2);
  o.reduction = kdloss::Reduction::Sum;
  const kdloss::PlackettLuce<T> sum_loss(o);
  kdloss::RowMatrix<T> Gs(n, v), Gp(n, v), Ga(n, v);
  const double vs = static_cast<double>(sum_loss(S, Tt, y, Gs, w));
  // per_row: contributions sum to the total, ignored rows give 0, same gradient.
  kdloss::Vector<T> rows(n);
  CHECK(static_cast<double>(sum_loss.per_row(S, Tt, y, rows, Gp, w)) == vs);
  CHECK(std::fabs(rows.template cast<double>().sum() - vs) <= tol * vs);
  for (long i = 0; i < n; ++i)
    if (y[i] == -100) CHECK(rows[i] == T(0));
  CHECK(Gp == Gs);
  // Reduction::None only through per_row().
  kdloss::Options<T> none = o;
  none.reduction = kdloss::Reduction::None;
  CHECK_THROWS_WITH(kdloss::PlackettLuce<T>(none)(S, Tt, y, w), Catch::Contains("per_row"));
  // accumulate: G = alpha dL + beta G, returns alpha L; beta = 0 never reads G.
  Ga.setConstant(std::numeric_limits<T>::quiet_NaN());
  CHECK(std::fabs(static_cast<double>(sum_loss.accumulate(S, Tt, y, Ga, T(0.5), T(0), w)) - 0.5 * vs) <= tol * vs);
  CHECK(((Ga.template cast<double>() - 0.5 * Gs.template cast<double>()).cwiseAbs().maxCoeff()) <= tol);
  const kdloss::RowMatrix<T> base = kdtest::random_logits<T>(n, v, kdtest::seed(2013), 0.01);
  Ga = base;
  sum_loss.accumulate(S, Tt, y, Ga, T(2), T(-0.5), w);
  const kdloss::RowMatrix<double> expect = 2 * Gs.template cast<double>() - 0.5 * base.template cast<double>();
  CHECK(((Ga.template cast<double>() - expect).cwiseAbs().maxCoeff()) <= tol);
  // CE + PLD in one buffer (PLD replaces CE in the paper, but the accumulate form composes).
  kdloss::RowMatrix<T> Gce(n, v), Gmix(n, v);
  const kdloss::CrossEntropy<T> ce;
  const double lce = static_cast<double>(ce(S, y, Gce));
  const double mix = static_cast<double>(ce.accumulate(S, y, Gmix, T(0.3), T(0)) + sum_loss.accumulate(S, Tt, y, Gmix, T(0.7), T(1), w));
  CHECK(std::fabs(mix - (0.3 * lce + 0.7 * vs)) <= tol * (lce + vs));
  CHECK(((Gmix.template cast<double>() - 0.3 * Gce.template cast<double>() - 0.7 * Gs.template cast<double>()).cwiseAbs().maxCoeff()) <= tol);
  // BatchMean divides by the weight of the rows not ignored; scale_by_t2 multiplies by tau^2.
  double wsum = 0;
  for (long i = 0; i < n; ++i) wsum += y[i] == -100 ? 0.0 : static_cast<double>(w[i]);
  kdloss::Options<T> mean = o;
  mean.reduction = kdloss::Reduction::BatchMean;
  CHECK(std::fabs(static_cast<double>(kdloss::PlackettLuce<T>(mean)(S, Tt, y, w)) - vs / wsum) <= tol * vs / wsum);
  kdloss::Options<T> t2 = o;
  t2.scale_by_t2 = true;
  kdloss::RowMatrix<T> Gt(n, v);
  CHECK(std::fabs(static_cast<double>(kdloss::PlackettLuce<T>(t2)(S, Tt, y, Gt, w)) - 4 * vs) <= tol * 4 * vs);
  CHECK(((Gt.template cast<double>() - 4 * Gs.template cast<double>()).cwiseAbs().maxCoeff()) <= 4 * tol);
}

TEMPLATE_TEST_CASE("PlackettLuce layouts and no allocation after reserve", "[plackett_luce]", float, double) {
  using T = TestType;
  const long n = 5, v = 1000;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(2020));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(2021));
  const Labels y = random_labels64(n, v, kdtest::seed(2022), true);
  const Eigen::VectorXi y32 = y.template cast<int>();
  const kdloss::PlackettLuce<T> pl;
  kdloss::RowMatrix<T> G(n, v);
  const T v1 = pl(S, Tt, y, G);
  CHECK(pl(S, Tt, y32) == v1);  // int32 labels
  // A Map over raw buffers, and blocks of wider matrices (student, teacher and gradient).
  std::vector<T> sbuf(S.data(), S.data() + n * v), tbuf(Tt.data(), Tt.data() + n * v), gbuf(static_cast<size_t>(n * v));
  Eigen::Map<const kdloss::RowMatrix<T>> Sm(sbuf.data(), n, v), Tm(tbuf.data(), n, v);
  Eigen::Map<kdloss::RowMatrix<T>> Gm(gbuf.data(), n, v);
  CHECK(pl(Sm, Tm, y, Gm) == v1);
  CHECK(Gm == G);
  kdloss::RowMatrix<T> Sw = kdloss::RowMatrix<T>::Zero(n + 2, v + 13), Tw(n, v + 57), Gw(n + 1, v + 5);
  Sw.block(1, 0, n, v) = S;
  Tw.leftCols(v) = Tt;
  Tw.rightCols(57).setConstant(T(100));  // the teacher's extra columns are never read
  CHECK(pl(Sw.block(1, 0, n, v), Tw.leftCols(v), y, Gw.topLeftCorner(n, v)) == v1);
  CHECK(Gw.topLeftCorner(n, v) == G);
  // No allocation after reserve(N, V), for every call form, at any shape up to it.
  const kdloss::PlackettLuce<T> fresh;
  fresh.reserve(n, v);
  kdloss::Vector<T> rows(n), w = kdloss::Vector<T>::Ones(n);
  kdloss::RowMatrix<T> Gsmall(2, 77);
  const Labels ysmall = y.head(2).cwiseMax(0).cwiseMin(76);
  {
    kdtest::NoAllocScope scope;
    T sink = fresh(S, Tt, y) + fresh(S, Tt, y, G) + fresh.accumulate(S, Tt, y, G, T(1), T(1), w);
    sink += fresh.per_row(S, Tt, y, rows, G, w);
    sink += fresh(S.topLeftCorner(2, 77), Tt.topLeftCorner(2, 77), ysmall, Gsmall);
    CHECK(scope.count() == 0);
    CHECK(std::isfinite(static_cast<double>(sink)));
  }
  // ...and none after the first call at the largest shape either.
  {
    kdtest::NoAllocScope scope;
    const T again = pl(S, Tt, y, G);
    CHECK(scope.count() == 0);
    CHECK(again == v1);
  }
}

TEMPLATE_TEST_CASE("PlackettLuce float and double agree and SIMD path equals the scalar path", "[plackett_luce]", float, double) {
  using T = TestType;
  std::uint32_t s = kdtest::seed(2030);
  for (const long v : {1L, 2L, 3L, 7L, 16L, 17L, 33L, 1271L, 32000L, 65537L}) {
    for (const double tau : {1.0, 0.5}) {
      const long n = v > 10000 ? 2 : 3;
      kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s++), Tt = kdtest::random_logits<T>(n, v, s++);
      if (v == 1271) {  // masked entries on both sides
        kdtest::mask_random(S, 0.3, s++);
        for (long i = 0; i < n; ++i)
          for (long j = 0; j < v; ++j)
            if (std::isinf(static_cast<double>(S(i, j)))) Tt(i, j) = S(i, j);
      }
      const Labels y = random_labels64(n, v, s++, false);
      kdloss::Options<T> o;
      o.temperature = static_cast<T>(tau);
      o.reduction = kdloss::Reduction::Sum;
      kdloss::RowMatrix<T> G(n, v), Gs(n, v);
      const double fast = static_cast<double>(kdloss::PlackettLuce<T>(o)(S, Tt, y, G));
      const double oracle = static_cast<double>(kdloss::PlackettLuce<T, kdloss::simd::scalar>(o)(S, Tt, y, Gs));
      const Expect x = reference(kdtest::to_double(S), kdtest::to_double(Tt), y, o, nullptr);
      const double e = kdtest::eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
      INFO(kdloss::simd::best_arch::name << " vs scalar: V=" << v << " tau=" << tau);
      CHECK(std::fabs(fast - oracle) <= 2 * kdtest::kUlpFactor * e * x.value_scale + tiny);
      const std::string why = kdtest::compare(G, kdtest::rows_of(Gs), [&](long i, long j) {
        return 2 * kdtest::kUlpFactor * e * x.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny;
      });
      INFO(why);
      CHECK(why.empty());
      if (std::is_same<T, float>::value) {
        // The double loss on the same (float-valued) logits: within float's bound of the reference.
        kdloss::Options<double> od;
        od.temperature = tau;
        od.reduction = kdloss::Reduction::Sum;
        const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
        kdloss::RowMatrix<double> Gd(n, v);
        const double dbl = kdloss::PlackettLuce<double>(od)(Sd, Td, y, Gd);
        CHECK(std::fabs(fast - dbl) <= 2 * kdtest::kUlpFactor * e * x.value_scale + tiny);
        const std::string whyd = kdtest::compare(G, kdtest::rows_of(Gd), [&](long i, long j) { return 2 * kdtest::kUlpFactor * e * x.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny; });
        INFO(whyd);
        CHECK(whyd.empty());
      }
    }
  }
}
