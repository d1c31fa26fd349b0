// Tests of kdloss::FDivergence with the generators that have no named functor (squared Hellinger,
// Pearson and Neyman chi-squared, Jeffreys, Amari alpha), and with a user-written generator.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/f_divergence.hpp>
#include <kdloss/forward_kl.hpp>
#include <kdloss/reverse_kl.hpp>

#include "support/suite.hpp"

using kdtest::specs::Amari03;
using kdtest::specs::Amari15;
using kdtest::specs::Hellinger;
using kdtest::specs::Jeffreys;
using kdtest::specs::Neyman;
using kdtest::specs::Pearson;

KDTEST_PAIR_LOSS_SUITE(Hellinger, "SquaredHellinger", "[f_divergence]")
// Pass 1 rescales the Hellinger sums (kernels::RootSums) when a block's maxima rise, each side by its
// own factor; a rise of more than 4 in base 2 sweeps the block again.
TEMPLATE_TEST_CASE("Hellinger with maxima rising along the row", "[f_divergence]", float, double) {
  kdtest::check_rising_maxima<Hellinger, TestType>(kdtest::seed(702));
}
KDTEST_PAIR_LOSS_SUITE(Pearson, "PearsonChi2", "[f_divergence]")
KDTEST_PAIR_LOSS_SUITE(Neyman, "NeymanChi2", "[f_divergence]")
// Pass 1 sums the chi-squared ratios p^2/q (or q^2/p) and rescales them, by the square of one side's
// factor over the other's, when a block's maxima rise. (The contract's rising-maxima rows are not
// for them: their ramps of 100 logits give ratios past the float range, an unbounded gradient.)
// Rows whose pass-1 ratios (relative to the blocks' references) are unlike their final values.
// Logits are given in base-2 exponents (times ln 2, at tau = 1), and the features sit at multiples
// of 2048 entries, a block boundary on every path.
// - Row 0: the first block's student lies 140 below its maximum where the teacher is at its own, a
//   ratio of 2^140 that overflows a float sum; the teacher's maximum then rises by 40, which brings
//   every final ratio below 2^50. The row is computed from its entries (the generator's form by
//   entries), with the true, finite value.
// - Row 1: one ratio of 2^125 in the first block, whose factor is 2^-245 once the teacher's maximum
//   rises by 117.5: below the two normal factors a stashed value can take, so the gradient pass takes
//   the ratios by their exponential. That entry's gradient is about -2^-120, a normal float the
//   reference's per-entry bound checks.
// - Row 2: both maxima rise along the row, the teacher's by 0.004 and the student's by 0.003 a
//   logit per entry: by 1.5 to 12 in base 2 a block (256 to 2048 entries), which pass 1 keeps on
//   some paths and sweeps again on others.
// Neyman's ratio q^2/p takes the same rows with the sides swapped.
TEMPLATE_TEST_CASE("Pearson and Neyman where pass 1's ratios lie far from their final values", "[f_divergence]", float, double) {
  using T = TestType;
  const long v = 4096;
  const double ln2 = std::log(2.0);
  kdloss::RowMatrix<T> num = kdloss::RowMatrix<T>::Zero(3, v), den = kdloss::RowMatrix<T>::Zero(3, v);
  for (long j = 0; j < v; ++j) {
    num(2, j) = static_cast<T>(0.004 * static_cast<double>(j));
    den(2, j) = static_cast<T>(0.003 * static_cast<double>(j));
  }
  for (long j = 1; j < 2048; ++j) den(0, j) = static_cast<T>(-140 * ln2);
  for (long j = 2048; j < v; ++j) {
    num(0, j) = static_cast<T>(40 * ln2);
    num(1, j) = static_cast<T>(117.5 * ln2);
  }
  den(1, 5) = static_cast<T>(-125 * ln2);
  for (long i = 0; i < 3; ++i) {
    INFO("row " << i);
    const kdloss::RowMatrix<T> n1 = num.row(i), d1 = den.row(i);
    kdtest::check_reference_on<Pearson>(d1, n1, kdloss::Options<T>{});  // student den, teacher num
    kdtest::check_reference_on<Neyman>(n1, d1, kdloss::Options<T>{});
  }
}
KDTEST_PAIR_LOSS_SUITE(Jeffreys, "Jeffreys", "[f_divergence]")
TEMPLATE_TEST_CASE("Jeffreys with maxima rising along the row", "[f_divergence]", float, double) {
  kdtest::check_rising_maxima<Jeffreys, TestType>(kdtest::seed(700));
}
KDTEST_PAIR_LOSS_SUITE(Amari03, "Amari 0.3", "[f_divergence]")
KDTEST_PAIR_LOSS_SUITE(Amari15, "Amari 1.5", "[f_divergence]")

namespace {
// The documented example: a user generator in a few lines (squared log-ratio divergence,
// f(r) = (log r)^2 / 2, g = f(r) - r f'(r) = (log r)^2 / 2 - log r).
struct HalfSquaredLogRatio {
  template <class B>
  B term(const kdloss::kernels::Elem<B>& e) const {
    return B::splat(0.5f) * e.q * e.u * e.u;
  }
  template <class B>
  B h(const kdloss::kernels::Elem<B>& e) const {
    return e.q * (B::splat(0.5f) * e.u * e.u - e.u);
  }
};
struct UserSpec {
  static constexpr const char* name = "kdloss::FDivergence";
  template <class T, class Arch = kdloss::simd::best_arch>
  static auto make(const kdloss::Options<T>& o) {
    return kdloss::FDivergence<HalfSquaredLogRatio, T, Arch>(o);
  }
  static kdtest::ref::Row row(const double* s, const double* t, long v, double tau) {
    return kdtest::ref::f_divergence(s, t, v, tau, [](kdtest::ref::LD p, kdtest::ref::LD q) {
      const kdtest::ref::LD u = std::log(p) - std::log(q);
      return kdtest::ref::Entry{q * u * u / 2, q * (u * u / 2 - u)};
    });
  }
};
}  // namespace

TEMPLATE_TEST_CASE("a user generator works like a built-in one", "[f_divergence]", float, double) {
  kdtest::check_reference<UserSpec, TestType>(5, 1271, {}, kdtest::seed(730));
  kdtest::check_options_and_reductions<UserSpec, TestType>(7, 301, kdtest::seed(731));
  kdtest::check_no_allocation<UserSpec, TestType>(9, 4099);
}

TEST_CASE("a user generator's gradient equals finite differences", "[f_divergence]") {
  kdtest::check_finite_differences_sweep<UserSpec>(kdtest::seed(732));
}

TEMPLATE_TEST_CASE("Hellinger is between 0 and 1 and Jeffreys is ForwardKL plus ReverseKL", "[f_divergence]", float, double) {
  using T = TestType;
  const long n = 4, v = 500;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(740), 6.0);
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(741), 6.0);
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::None;
  kdloss::Vector<T> r(n);
  kdloss::FDivergence<kdloss::generators::SquaredHellinger, T>(o).per_row(S, Tt, r);
  CHECK(r.minCoeff() >= T(0));
  CHECK(r.maxCoeff() <= T(1));
  kdloss::RowMatrix<T> G(n, v), Gf(n, v), Gr(n, v);
  const double j = static_cast<double>(kdloss::FDivergence<kdloss::generators::Jeffreys, T>()(S, Tt, G));
  const double f = static_cast<double>(kdloss::ForwardKL<T>()(S, Tt, Gf));
  const double rk = static_cast<double>(kdloss::ReverseKL<T>()(S, Tt, Gr));
  CHECK(std::fabs(j - f - rk) <= 64 * kdtest::eps<T>() * j);
  CHECK((G - Gf - Gr).cwiseAbs().maxCoeff() <= T(64 * kdtest::eps<T>()));
}

// Pass 1 forms the distance from sums of the small differences of the rows' half exponentials
// (kernels::RootSums), not as 1 - sum sqrt(pq), which would leave an error of a few ulp of 1 however
// small the distance: rows 1e-3 apart (a distance of ~1e-7) keep it to a small multiple of eps / 1e-3,
// the size of the rounding of the inputs' differences themselves.
TEMPLATE_TEST_CASE("Hellinger keeps its relative accuracy for near-identical rows", "[f_divergence]", float, double) {
  using T = TestType;
  const long n = 6, v = 3000;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(744), 6.0);
  const kdloss::RowMatrix<T> Tt = S + kdtest::random_logits<T>(n, v, kdtest::seed(745), 1e-3);
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::None;
  kdloss::Vector<T> r(n);
  kdloss::FDivergence<kdloss::generators::SquaredHellinger, T>(o).per_row(S, Tt, r);
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
  double worst = 0;
  for (long i = 0; i < n; ++i) {
    const double ref = kdtest::ref::f_divergence(Sd.row(i).data(), Td.row(i).data(), v, 1.0, kdtest::ref::hellinger).value;
    REQUIRE(ref > 0);
    worst = std::max(worst, std::fabs(static_cast<double>(r(i)) - ref) / ref);
  }
  kdtest::report(std::string("Hellinger near-identical rows: worst relative error, ") + (sizeof(T) == 4 ? "float" : "double"), worst);
  CHECK(worst <= 1e4 * kdtest::eps<T>());
}

TEST_CASE("Amari alpha-divergence is continuous at alpha 0 and 1 where it is reverse and forward KL", "[f_divergence]") {
  const long n = 3, v = 257;
  const kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, kdtest::seed(750));
  const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, kdtest::seed(751));
  kdloss::RowMatrix<double> G(n, v), Gk(n, v);
  using Amari = kdloss::FDivergence<kdloss::generators::Amari, double>;
  const double fkl = kdloss::ForwardKL<double>()(S, Tt, Gk);
  for (const double a : {1.0, 1 - 1e-4, 1 + 1e-4, 1 - 1e-6}) {
    INFO("alpha " << a);
    const double d = Amari({}, kdloss::generators::Amari(a))(S, Tt, G);
    const double tol = std::fabs(a - 1) * 50 * fkl + 1e-12;
    CHECK(std::fabs(d - fkl) <= tol);
    CHECK((G - Gk).cwiseAbs().maxCoeff() <= std::fabs(a - 1) * 50 + 1e-12);
  }
  const double rkl = kdloss::ReverseKL<double>()(S, Tt, Gk);
  for (const double a : {0.0, 1e-4, -1e-4, 1e-6}) {
    INFO("alpha " << a);
    const double d = Amari({}, kdloss::generators::Amari(a))(S, Tt, G);
    CHECK(std::fabs(d - rkl) <= std::fabs(a) * 50 * rkl + 1e-12);
    CHECK((G - Gk).cwiseAbs().maxCoeff() <= std::fabs(a) * 50 + 1e-12);
  }
}
