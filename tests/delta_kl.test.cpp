// Tests of kdloss::DeltaKL (Delta-KD): the in-kernel target against a double reference.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/delta_kl.hpp>
#include <kdloss/forward_kl.hpp>

#include "support/contract.hpp"
#include "support/reference_seed.hpp"

namespace {
struct Inputs {
  template <class T>
  static kdloss::RowMatrix<T> m(long n, long v, std::uint32_t s) { return kdtest::random_logits<T>(n, v, s, 3.0); }
};

template <class T>
void check_delta(long n, long v, double alpha, double tau, std::uint32_t s, bool masks = false) {
  INFO("N=" << n << " V=" << v << " alpha=" << alpha << " tau=" << tau);
  kdloss::RowMatrix<T> S = Inputs::m<T>(n, v, s), A = Inputs::m<T>(n, v, s + 1), SB = Inputs::m<T>(n, v, s + 2),
                       TB = Inputs::m<T>(n, v, s + 3);
  const T ninf = -std::numeric_limits<T>::infinity();
  if (masks && v > 8) {
    for (long i = 0; i < n; ++i) {
      A(i, 1) = ninf, S(i, 1) = ninf;    // masked SFT teacher (student masked too: finite gradient)
      SB(i, 2) = ninf, TB(i, 2) = ninf;  // both bases masked
      SB(i, 3) = ninf;                   // the student base masks the entry (alpha > 0)
    }
  }
  kdloss::Options<T> o;
  o.temperature = static_cast<T>(tau);
  const kdloss::DeltaKL<T> dkl(o, alpha);
  kdloss::RowMatrix<T> G(n, v);
  const double value = static_cast<double>(dkl(S, A, SB, TB, G));
  CHECK(value == static_cast<double>(dkl(S, A, SB, TB)));
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Ad = kdtest::to_double(A), SBd = kdtest::to_double(SB),
                                  TBd = kdtest::to_double(TB);
  kdloss::RowMatrix<double> Z(n, v);
  for (long i = 0; i < n; ++i) {
    const auto z = kdtest::ref::delta_target(Ad.row(i).data(), SBd.row(i).data(), TBd.row(i).data(), v, alpha);
    for (long j = 0; j < v; ++j) Z(i, j) = z[static_cast<size_t>(j)];
  }
  // The target's float rounding: eps |z| per logit, folded in like TAID's mix.
  kdtest::ref::Reduce red;
  red.temperature = tau;
  const auto m = kdtest::ref::reduce(
      [&](const double* sr, const double* zr, long vv, double t) {
        auto r = kdtest::ref::forward_kl(sr, zr, vv, t);
        const auto lp = kdtest::ref::log_softmax(zr, vv, t);
        const long i = (sr - Sd.data()) / vv;
        for (long j = 0; j < vv; ++j) {
          if (zr[j] == -kdtest::ref::kInf) continue;
          const double p = std::exp(lp[static_cast<size_t>(j)]);
          const double mix = (std::fabs(Ad(i, j)) + std::fabs(alpha) * (std::fabs(SBd(i, j)) + std::fabs(TBd(i, j)))) / t;
          r.grad_scale[static_cast<size_t>(j)] += p * mix / t;
          r.value_scale += p * mix * (std::fabs(lp[static_cast<size_t>(j)]) + 1);
        }
        return r;
      },
      Sd.data(), Z.data(), n, v, nullptr, red);
  const double e = kdtest::eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  CHECK(std::fabs(value - m.value) <= kdtest::kUlpFactor * e * m.value_scale + tiny);
  const std::string why = kdtest::compare(G, m.grad, [&](long i, long j) {
    return kdtest::kUlpFactor * e * m.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny;
  });
  INFO(why);
  CHECK(why.empty());
}
}  // namespace

TEMPLATE_TEST_CASE("DeltaKL matches the double reference", "[delta_kl]", float, double) {
  std::uint32_t s = kdtest::seed(5000);
  for (const long v : {1L, 3L, 17L, 1271L, 65537L})
    for (const double alpha : {1.0, 0.5, -0.3})
      for (const double tau : {1.0, 2.0}) check_delta<TestType>(v > 2000 ? 2 : 4, v, alpha, tau, (s++) * 5);
  check_delta<TestType>(4, 301, 1.0, 1.0, s * 5 + 11, true);
  check_delta<TestType>(4, 301, 0.7, 2.0, s * 5 + 17, true);
}

TEMPLATE_TEST_CASE("DeltaKL at alpha 0 is ForwardKL against the SFT teacher", "[delta_kl]", float, double) {
  using T = TestType;
  const long n = 5, v = 999;
  const kdloss::RowMatrix<T> S = Inputs::m<T>(n, v, kdtest::seed(5100)), A = Inputs::m<T>(n, v, kdtest::seed(5101));
  kdloss::RowMatrix<T> SB = Inputs::m<T>(n, v, kdtest::seed(5102)), TB = Inputs::m<T>(n, v, kdtest::seed(5103));
  TB(0, 0) = -std::numeric_limits<T>::infinity();  // never read at alpha = 0
  kdloss::Options<T> o;
  o.temperature = T(2);
  kdloss::RowMatrix<T> G1(n, v), G2(n, v);
  CHECK(kdloss::DeltaKL<T>(o, 0.0)(S, A, SB, TB, G1) == kdloss::ForwardKL<T>(o)(S, A, G2));
  CHECK(G1 == G2);
  // alpha = 1 with the bases equal to the student and the SFT teacher: the target is the student.
  CHECK(std::fabs(static_cast<double>(kdloss::DeltaKL<T>(o, 1.0)(S, A, S, A))) <= 64 * kdtest::eps<T>());
}

TEST_CASE("DeltaKL gradient equals central finite differences", "[delta_kl]") {
  const long n = 3, v = 11;
  kdloss::RowMatrix<double> S = Inputs::m<double>(n, v, kdtest::seed(5200));
  const kdloss::RowMatrix<double> A = Inputs::m<double>(n, v, kdtest::seed(5201)), SB = Inputs::m<double>(n, v, kdtest::seed(5202)),
                                  TB = Inputs::m<double>(n, v, kdtest::seed(5203));
  kdloss::Options<double> o;
  o.temperature = 1.3;
  o.scale_by_t2 = true;
  const kdloss::DeltaKL<double> dkl(o, 0.8);
  kdloss::RowMatrix<double> G(n, v);
  dkl(S, A, SB, TB, G);
  double worst = 0;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < v; ++j) {
      const double x0 = S(i, j), h = 1e-5 * std::max(1.0, std::fabs(x0));
      S(i, j) = x0 + h;
      const double fp = dkl(S, A, SB, TB);
      S(i, j) = x0 - h;
      const double fm = dkl(S, A, SB, TB);
      S(i, j) = x0;
      const double fd = (fp - fm) / (2 * h);
      CHECK(std::fabs(G(i, j) - fd) <= 1e-8 + 1e-6 * std::fabs(fd));
      worst = std::max(worst, std::fabs(G(i, j) - fd));
    }
  kdtest::report("kdloss::DeltaKL finite-difference max abs error", worst);
}

TEMPLATE_TEST_CASE("DeltaKL calls layouts errors and allocation", "[delta_kl]", float, double) {
  using T = TestType;
  using Catch::Contains;
  const long n = 4, v = 300;
  const kdloss::RowMatrix<T> S = Inputs::m<T>(n, v, kdtest::seed(5300)), A = Inputs::m<T>(n, v, kdtest::seed(5301)),
                             SB = Inputs::m<T>(n, v, kdtest::seed(5302)), TB = Inputs::m<T>(n, v, kdtest::seed(5303));
  const kdloss::DeltaKL<T> dkl({}, 1.0);
  kdloss::RowMatrix<T> G(n, v);
  const T value = dkl(S, A, SB, TB, G);
  // the bases as blocks of wider matrices, the gradient into a block
  kdloss::RowMatrix<T> SBw(n, v + 7), TBw(n + 2, v), Gw(n, v + 1);
  SBw.leftCols(v) = SB;
  TBw.bottomRows(n) = TB;
  CHECK(dkl(S, A, SBw.leftCols(v), TBw.bottomRows(n), Gw.leftCols(v)) == value);
  CHECK(Gw.leftCols(v) == G);
  // accumulate, per_row
  kdloss::RowMatrix<T> G2 = G;
  CHECK(dkl.accumulate(S, A, SB, TB, G2, T(0.5), T(1)) == value / 2);
  CHECK((G2 - T(1.5) * G).cwiseAbs().maxCoeff() <= T(8 * kdtest::eps<T>()));
  kdloss::Vector<T> rows(n);
  kdloss::Options<T> on;
  on.reduction = kdloss::Reduction::None;
  kdloss::DeltaKL<T>(on, 1.0).per_row(S, A, SB, TB, rows);
  CHECK(std::fabs(static_cast<double>(rows.sum() / T(n) - value)) <= 16 * kdtest::eps<T>() * static_cast<double>(value));
  // errors
  CHECK_THROWS_WITH(kdloss::DeltaKL<T>({}, std::nan("")), Contains("alpha"));
  const kdloss::RowMatrix<T> Wide(n, v + 1);
  CHECK_THROWS_WITH(dkl(S, A, Wide, TB), Contains("base matrix is 4x301"));
  kdloss::RowMatrix<T> TBinf = TB;
  TBinf(2, 5) = -std::numeric_limits<T>::infinity();  // pi_t0 = 0 under a finite pi_s0: unbounded
  CHECK_THROWS_AS(dkl(S, A, SB, TBinf), std::domain_error);
  CHECK_THROWS_WITH(dkl(S, A, SB, TBinf), Contains("row 2") && Contains("+inf"));
  kdloss::RowMatrix<T> SBnan = SB;
  SBnan(1, 5) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_WITH(dkl(S, A, SBnan, TB), Contains("row 1") && Contains("NaN"));
  kdloss::RowMatrix<T> Ga = SB;
  CHECK_THROWS_WITH(dkl(S, A, Ga, TB, Ga), Contains("overlaps"));
  // no allocation
  T sink = 0;
  {
    kdtest::NoAllocScope scope;
    sink += dkl(S, A, SB, TB);
    sink += dkl(S, A, SB, TB, G);
    sink += dkl.accumulate(S, A, SB, TB, G, T(1), T(1));
    CHECK(scope.count() == 0);
  }
  CHECK(std::isfinite(static_cast<double>(sink)));
}
