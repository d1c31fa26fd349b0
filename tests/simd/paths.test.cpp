// Every loss on this binary's instruction set against the same loss on the scalar path (the
// oracle), on random rows of odd sizes, masked entries, temperatures, float and double (the
// divergence family in paths_family.test.cpp).
// SPDX-License-Identifier: Apache-2.0
#include "paths.hpp"
#include "support/sinkhorn_bounds.hpp"

using namespace kdtest::paths;

TEMPLATE_TEST_CASE("ForwardKL: SIMD path equals the scalar path", "[paths]", float, double) {
  compare_all_shapes<kdtest::specs::Fkl, TestType>();
}

TEMPLATE_TEST_CASE("ReverseKL: SIMD path equals the scalar path", "[paths]", float, double) {
  compare_all_shapes<kdtest::specs::Rkl, TestType>();
}

TEMPLATE_TEST_CASE("log_softmax: SIMD path equals the scalar path", "[paths]", float, double) {
  using T = TestType;
  for (const long v : {1L, 5L, 16L, 17L, 1271L, 65537L}) {
    kdloss::RowMatrix<T> X = kdtest::random_logits<T>(3, v, kdtest::seed(950) + static_cast<std::uint32_t>(v), 4.0);
    kdloss::RowMatrix<T> Y(3, v), Ys(3, v);
    kdloss::log_softmax(X, Y, T(0.7));
    kdloss::log_softmax<simd::scalar>(X, Ys, T(0.7));
    for (long i = 0; i < 3; ++i)
      for (long j = 0; j < v; ++j)
        CHECK(std::fabs(static_cast<double>(Y(i, j) - Ys(i, j))) <=
              8 * kdtest::eps<T>() * (std::fabs(static_cast<double>(Ys(i, j))) + 2));
  }
}

TEMPLATE_TEST_CASE("AdaptiveKL and Taid: SIMD path equals the scalar path", "[paths]", float, double) {
  using namespace kdtest::specs;
  compare_all_shapes<Akl, TestType>();
  compare_all_shapes<Taid, TestType>();
}

TEMPLATE_TEST_CASE("CrossEntropy: SIMD path equals the scalar path", "[paths]", float, double) {
  using T = TestType;
  for (const long v : {1L, 7L, 16L, 17L, 1271L, 65537L}) {
    for (const double eps : {0.0, 0.1}) {
      const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(3, v, kdtest::seed(960) + static_cast<std::uint32_t>(v));
      Eigen::VectorXi y(3);
      y << 0, static_cast<int>(v - 1), static_cast<int>(v / 2);
      kdloss::RowMatrix<T> G(3, v), Gs(3, v);
      const double a = static_cast<double>(kdloss::CrossEntropy<T>({}, eps)(S, y, G));
      const double b = static_cast<double>(kdloss::CrossEntropy<T, simd::scalar>({}, eps)(S, y, Gs));
      INFO("V=" << v << " smoothing=" << eps);
      CHECK(std::fabs(a - b) <= 64 * kdtest::eps<T>() * (std::fabs(b) + 1) * std::log(static_cast<double>(v) + 2));
      CHECK((G - Gs).cwiseAbs().maxCoeff() <= T(64 * kdtest::eps<T>()));
    }
  }
}

namespace {

/// Sinkhorn on this binary's instruction set against the scalar path. Both are within the bounds
/// of tests/support/sinkhorn_bounds.hpp of the exact (double reference) result, so they differ by
/// at most twice those bounds: cost rounding in T amplified by 1/epsilon through the plan, and
/// entries where a student and a teacher probability tie to within a few ulp (the two paths round
/// their probabilities differently and may see the L1 kink on different sides).
template <class T>
void sinkhorn_with_scalar(long n, long v, double tau, double eps, kdloss::SinkhornCost cost, std::uint32_t s,
                          double mask) {
  INFO("kdloss::Sinkhorn on " << simd::best_arch::name << " vs scalar: N=" << n << " V=" << v << " tau=" << tau
                              << " eps=" << eps << " cost=" << kdloss::to_string(cost) << " mask=" << mask);
  kdloss::RowMatrix<T> S, Tt;
  random_pair(n, v, s, mask, S, Tt);
  kdloss::SinkhornOptions<T> o;
  o.temperature = static_cast<T>(tau);
  o.epsilon = static_cast<T>(eps);
  o.cost = cost;
  o.reduction = kdloss::Reduction::Sum;
  kdloss::Sinkhorn<T> fast(o);
  kdloss::Sinkhorn<T, simd::scalar> oracle(o);
  kdloss::RowMatrix<T> G(n, v), Gs(n, v);
  const double value = static_cast<double>(fast(S, Tt, G));
  const double value_s = static_cast<double>(oracle(S, Tt, Gs));
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
  const auto r = kdtest::ref::sinkhorn(Sd.data(), Td.data(), n, v, tau, eps, o.iterations,
                                       cost == kdloss::SinkhornCost::L1, false);
  const auto b = kdtest::ref::sinkhorn_bounds(r, kdtest::eps<T>(), static_cast<double>(std::numeric_limits<T>::min()),
                                              eps, tau, 1.0, cost == kdloss::SinkhornCost::L1);
  CHECK(std::fabs(value - value_s) <= 2 * b.value);
  const std::string why = kdtest::compare(G, kdtest::rows_of(Gs), [&](long i, long j) {
    return 2 * b.grad[static_cast<size_t>(i)][static_cast<size_t>(j)];
  });
  INFO(why);
  CHECK(why.empty());
}

}  // namespace

TEMPLATE_TEST_CASE("Sinkhorn: SIMD path equals the scalar path", "[paths]", float, double) {
  using T = TestType;
  std::uint32_t s = kdtest::seed(960);
  for (const auto cost : {kdloss::SinkhornCost::L1, kdloss::SinkhornCost::SquaredL2}) {
    for (const long v : {1L, 2L, 3L, 7L, 8L, 9L, 15L, 16L, 17L, 31L, 33L, 63L, 65L, 1271L, 4099L})
      sinkhorn_with_scalar<T>(v > 1000 ? 9 : 5, v, 1.0, 0.1, cost, s++, 0.0);
    sinkhorn_with_scalar<T>(33, 300, 0.5, 0.01, cost, s++, 0.0);
    sinkhorn_with_scalar<T>(6, 1031, 2.0, 0.1, cost, s++, 0.3);
  }
}
