// Tests of kdloss::Decoupled (DKD) against a double reference written from the paper's formulas.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/decoupled.hpp>
#include <kdloss/forward_kl.hpp>

#include "support/labeled_contract.hpp"
#include "support/reference_seed.hpp"

namespace {
template <int AlphaX10, int BetaX10>
struct DkdSpec {
  static constexpr const char* name = "kdloss::Decoupled";
  static constexpr double alpha = AlphaX10 / 10.0, beta = BetaX10 / 10.0;
  template <class T, class Arch = kdloss::simd::best_arch>
  static kdloss::Decoupled<T, Arch> make(const kdloss::Options<T>& o) {
    return kdloss::Decoupled<T, Arch>(o, alpha, beta);
  }
  static kdtest::ref::Row row(const double* s, const double* t, long v, double tau, long y) {
    return kdtest::ref::dkd(s, t, v, tau, y, alpha, beta);
  }
};
using Dkd = DkdSpec<10, 80>;   // the reference's defaults
using Dkd2 = DkdSpec<5, 20>;
}  // namespace

TEMPLATE_TEST_CASE("Decoupled matches the double reference", "[decoupled]", float, double) {
  std::uint32_t s = kdtest::seed(3000);
  for (const long v : {2L, 3L, 17L, 1271L, 32003L}) {
    for (const double tau : {4.0, 1.0, 0.5}) {
      kdloss::Options<TestType> o = kdloss::Decoupled<TestType>::default_options();
      o.temperature = static_cast<TestType>(tau);
      kdtest::check_labeled_reference<Dkd, TestType>(v > 2000 ? 3 : 6, v, o, s++);
      kdtest::check_labeled_reference<Dkd2, TestType>(4, v, o, s++, 6.0);
    }
  }
}

TEST_CASE("Decoupled gradient equals central finite differences", "[decoupled]") {
  kdtest::check_labeled_fd<Dkd>(4, 9, kdloss::Decoupled<double>::default_options(), kdtest::seed(3100));
  kdloss::Options<double> o;
  o.temperature = 0.7;
  kdtest::check_labeled_fd<Dkd2>(3, 17, o, kdtest::seed(3101), 3.0);
}

TEMPLATE_TEST_CASE("Decoupled calls reductions and masking", "[decoupled]", float, double) {
  kdtest::check_labeled_calls<Dkd, TestType>(7, 301, kdtest::seed(3200));
}

TEMPLATE_TEST_CASE("Decoupled rejects bad input", "[decoupled]", float, double) {
  kdtest::check_labeled_errors<Dkd, TestType>();
  CHECK_THROWS_WITH(kdloss::Decoupled<TestType>({}, -1.0, 8.0), Catch::Contains("alpha and beta"));
  CHECK_THROWS_WITH(kdloss::Decoupled<TestType>({}, 1.0, std::nan("")), Catch::Contains("alpha and beta"));
}

TEMPLATE_TEST_CASE("Decoupled layouts and no allocation", "[decoupled]", float, double) {
  kdtest::check_labeled_layouts_and_allocation<Dkd, TestType>(5, 1000, kdtest::seed(3300));
}

TEMPLATE_TEST_CASE("Decoupled special cases", "[decoupled]", float, double) {
  using T = TestType;
  const long n = 4, v = 500;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(3400));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(3401));
  Eigen::VectorXi y(n);
  y << 0, 17, 499, 250;
  kdloss::Options<T> o;
  o.temperature = T(2);
  o.reduction = kdloss::Reduction::None;
  // beta = 0, alpha = 1: the binary KL of (p_y, 1 - p_y) against (q_y, 1 - q_y).
  const kdloss::Decoupled<T> binary(o, 1.0, 0.0);
  kdloss::Vector<T> rows(n);
  binary.per_row(S, Tt, y, rows);
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
  for (long i = 0; i < n; ++i) {
    const auto lq = kdtest::ref::log_softmax(Sd.row(i).data(), v, 2.0), lp = kdtest::ref::log_softmax(Td.row(i).data(), v, 2.0);
    const double py = std::exp(lp[static_cast<size_t>(y[i])]), qy = std::exp(lq[static_cast<size_t>(y[i])]);
    const double kl = py * std::log(py / qy) + (1 - py) * std::log1p((qy - py) / (1 - qy));
    // The size of the rounded terms: x |log x| for both bins and both sides.
    const double scale = (py + qy) * (std::fabs(std::log(py)) + std::fabs(std::log(qy)) + 2) + 4;
    CHECK(std::fabs(static_cast<double>(rows[i]) - kl) <= 64 * kdtest::eps<T>() * scale);
  }
  // KD = TCKD + (1 - p_y) NCKD: alpha = 1, beta = 1 - p_y on one row equals forward KL.
  for (long i = 0; i < n; ++i) {
    const kdloss::RowMatrix<T> Si = S.row(i), Ti = Tt.row(i);
    const auto lp = kdtest::ref::log_softmax(Td.row(i).data(), v, 2.0);
    const double rest = 1 - std::exp(lp[static_cast<size_t>(y[i])]);
    const Eigen::VectorXi yi = Eigen::VectorXi::Constant(1, y[i]);
    kdloss::Options<T> o1;
    o1.temperature = T(2);
    kdloss::RowMatrix<T> G1(1, v), G2(1, v);
    const double dkd = static_cast<double>(kdloss::Decoupled<T>(o1, 1.0, rest)(Si, Ti, yi, G1));
    const double fkl = static_cast<double>(kdloss::ForwardKL<T>(o1)(Si, Ti, G2));
    CHECK(std::fabs(dkd - fkl) <= 64 * kdtest::eps<T>() * (fkl + 1));
    CHECK((G1 - G2).cwiseAbs().maxCoeff() <= T(64 * kdtest::eps<T>()));
  }
  // A confident student (q_y = 1 - 1e-12 in double): log(1 - q_y) from the other classes, no
  // cancellation; the value matches the reference in double.
  kdloss::RowMatrix<double> Sc = kdtest::random_logits<double>(1, 50, kdtest::seed(3402));
  const kdloss::RowMatrix<double> Tc = kdtest::random_logits<double>(1, 50, kdtest::seed(3403));
  Sc(0, 7) = 40;
  const Eigen::VectorXi y7 = Eigen::VectorXi::Constant(1, 7);
  kdloss::Options<double> od;
  const auto r = kdtest::ref::dkd(Sc.data(), Tc.data(), 50, 1.0, 7, 1.0, 8.0);
  CHECK(std::fabs(kdloss::Decoupled<double>(od)(Sc, Tc, y7) - r.value) <= 1e-12 * r.value);
  // The student's non-target logits all -inf: NCKD is +inf, the gradient finite.
  kdloss::RowMatrix<T> Sm = S.topRows(1), Tm = Tt.topRows(1), Gm(1, v);
  Sm.setConstant(-std::numeric_limits<T>::infinity());
  Sm(0, 0) = T(1);
  const Eigen::VectorXi y0 = Eigen::VectorXi::Zero(1);
  CHECK(kdloss::Decoupled<T>()(Sm, Tm, y0, Gm) == std::numeric_limits<T>::infinity());
  CHECK(Gm.allFinite());
}
