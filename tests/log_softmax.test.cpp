// Tests of kdloss::log_softmax and kdloss::logsumexp.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/log_softmax.hpp>

#include "support/contract.hpp"

TEMPLATE_TEST_CASE("log_softmax and logsumexp match the double reference", "[log_softmax]", float, double) {
  using T = TestType;
  std::uint32_t s = kdtest::seed(700);
  for (const long v : {1L, 3L, 17L, 1271L, 65537L}) {
    for (const double tau : {1.0, 0.25, 4.0}) {
      INFO("V=" << v << " tau=" << tau);
      const long n = 3;
      kdloss::RowMatrix<T> X = kdtest::random_logits<T>(n, v, s++, 5.0);
      if (v > 3) X(1, 2) = -std::numeric_limits<T>::infinity();
      kdloss::RowMatrix<T> Y(n, v);
      kdloss::Vector<T> L(n);
      kdloss::log_softmax(X, Y, static_cast<T>(tau));
      kdloss::logsumexp(X, L, static_cast<T>(tau));
      const kdloss::RowMatrix<double> Xd = kdtest::to_double(X);
      std::vector<std::vector<double>> expect;
      for (long i = 0; i < n; ++i) {
        expect.push_back(kdtest::ref::log_softmax(Xd.row(i).data(), v, tau));
        // In long double, as ref::log_softmax: a double sum of 65537 terms can be off by more than
        // the bound allows a double kernel (2.31e-14 against 2.28e-14 at seed 23, V = 65537, tau = 4,
        // where the kernel's logsumexp was within 1.8e-15 of a quad-precision sum).
        double m = -kdtest::ref::kInf;
        long double sum = 0;
        for (long j = 0; j < v; ++j) m = std::max(m, Xd(i, j));
        for (long j = 0; j < v; ++j) sum += std::exp(static_cast<long double>(Xd(i, j) - m) / tau);
        const double lse = static_cast<double>(static_cast<long double>(m) / tau + std::log(sum));
        CHECK(std::fabs(static_cast<double>(L[i]) - lse) <= 8 * kdtest::eps<T>() * (std::fabs(lse) + 1));
      }
      const std::string why = kdtest::compare(Y, expect, [&](long i, long j) {
        return 8 * kdtest::eps<T>() * (std::fabs(expect[static_cast<size_t>(i)][static_cast<size_t>(j)]) + 2);
      });
      INFO(why);
      CHECK(why.empty());
      // Every row of exp(Y) sums to 1.
      for (long i = 0; i < n; ++i)
        CHECK(std::fabs(Y.row(i).template cast<double>().array().exp().sum() - 1.0) <= 8 * kdtest::eps<T>() * std::sqrt(static_cast<double>(v)));
    }
  }
}

// Pass 1 sweeps a block relative to the maxima of the blocks before it. A maximum that arrives in
// a later block, far above them, had an exponent y up to 64 there, rounded to an ulp of y, and its
// own term 2^y carried that rounding: the worst of these 16 rows was 6 to 12 eps off in float and
// 8 to 23 in double (scalar, AVX2, AVX-512 paths), and is within 1.2 eps now (such a block is
// swept again at its own maxima).
TEMPLATE_TEST_CASE("log_softmax: a maximum arriving late in the row keeps its log-probability to a few eps", "[log_softmax]", float, double) {
  using T = TestType;
  const long v = 65537;
  const double tau = 0.25;
  const std::uint32_t s = kdtest::seed(720);
  for (int k = 0; k < 16; ++k) {
    kdloss::RowMatrix<T> X = kdtest::random_logits<T>(1, v, s + static_cast<std::uint32_t>(k), 5.0);
    const long at = v - 1 - 37 * k;  // in the last block or two, on every path
    // 1.5 (a rise of 8.7 in base 2 at tau = 0.25) or 10 (57.7) above the rest.
    X(0, at) = static_cast<T>(static_cast<double>(X.maxCoeff()) + (k % 2 ? 10.0 : 1.5) + 0.0625 * k);
    kdloss::RowMatrix<T> Y(1, v);
    kdloss::log_softmax(X, Y, static_cast<T>(tau));
    long double sum = 0;
    const long double top = X(0, at);
    for (long j = 0; j < v; ++j) sum += std::exp((static_cast<long double>(X(0, j)) - top) / tau);
    const double expect = -static_cast<double>(std::log(sum));
    INFO("k=" << k << " log p at the maximum: " << Y(0, at) << ", expected " << expect);
    CHECK(std::fabs(static_cast<double>(Y(0, at)) - expect) <= 3 * kdtest::eps<T>());
  }
}

TEMPLATE_TEST_CASE("log_softmax in place and strided with huge logits and a tiny temperature", "[log_softmax]", float, double) {
  using T = TestType;
  kdloss::RowMatrix<T> X = kdtest::random_logits<T>(4, 100, kdtest::seed(710));
  kdloss::RowMatrix<T> Y(4, 100);
  kdloss::log_softmax(X, Y, T(0.5));
  kdloss::RowMatrix<T> Z = X;
  kdloss::log_softmax(Z, Z, T(0.5));
  CHECK(Z == Y);
  kdloss::RowMatrix<T> W(4, 130);
  W.leftCols(100) = X;
  kdloss::RowMatrix<T> Yw = kdloss::RowMatrix<T>::Zero(4, 120);
  kdloss::log_softmax(W.leftCols(100), Yw.leftCols(100), T(0.5));
  CHECK(Yw.leftCols(100) == Y);
  CHECK(Yw.rightCols(20).cwiseAbs().maxCoeff() == T(0));
  // z/tau would overflow; (z - max)/tau does not (until the true value itself overflows).
  const T big = std::numeric_limits<T>::max() / T(10);
  kdloss::RowMatrix<T> H(1, 3);
  H << big, big - big * T(1e-6), -big;
  kdloss::RowMatrix<T> Hy(1, 3);
  kdloss::log_softmax(H, Hy, T(1e-2));
  CHECK(Hy(0, 0) == T(0));
  const double mid = (static_cast<double>(H(0, 1)) - static_cast<double>(H(0, 0))) / 1e-2;
  CHECK(std::fabs(static_cast<double>(Hy(0, 1)) / mid - 1.0) < 1e-5);
  CHECK(Hy(0, 2) == -std::numeric_limits<T>::infinity());
  kdloss::Vector<T> L(1);
  kdloss::logsumexp(H, L, T(1e-2));
  CHECK(L[0] == std::numeric_limits<T>::infinity());  // the true value, 10 * max, overflows
}

TEMPLATE_TEST_CASE("log_softmax rejects bad input and allocates nothing", "[log_softmax]", float, double) {
  using T = TestType;
  using Catch::Contains;
  kdloss::RowMatrix<T> X = kdtest::random_logits<T>(3, 10, kdtest::seed(720)), Y(3, 10), Bad(3, 11);
  kdloss::Vector<T> L(3), L2(2);
  CHECK_THROWS_WITH(kdloss::log_softmax(X, Bad), Contains("3x11") && Contains("3x10"));
  CHECK_THROWS_WITH(kdloss::log_softmax(X, Y, T(0)), Contains("temperature"));
  CHECK_THROWS_WITH(kdloss::logsumexp(X, L2), Contains("2 entries for 3 rows"));
  CHECK_THROWS_WITH(kdloss::log_softmax(X.leftCols(9), X.rightCols(9)), Contains("overlaps"));
  X(1, 4) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(kdloss::log_softmax(X, Y), std::domain_error);
  CHECK_THROWS_WITH(kdloss::logsumexp(X, L), Contains("row 1") && Contains("NaN"));
  X(1, 4) = T(0);
  X.row(2).setConstant(-std::numeric_limits<T>::infinity());
  CHECK_THROWS_WITH(kdloss::log_softmax(X, Y), Contains("row 2") && Contains("no finite entry"));
  X.row(2).setZero();
  kdtest::NoAllocScope scope;
  kdloss::log_softmax(X, Y);
  kdloss::logsumexp(X, L);
  CHECK(scope.count() == 0);
}
