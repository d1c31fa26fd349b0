// Tests of kdloss::NormalizedKD (NKD) against a double reference written from the paper's code.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/normalized_kd.hpp>

#include "support/labeled_contract.hpp"
#include "support/reference_seed.hpp"

namespace {
template <int GammaX10>
struct NkdSpec {
  static constexpr const char* name = "kdloss::NormalizedKD";
  static constexpr double gamma = GammaX10 / 10.0;
  template <class T, class Arch = kdloss::simd::best_arch>
  static kdloss::NormalizedKD<T, Arch> make(const kdloss::Options<T>& o) {
    return kdloss::NormalizedKD<T, Arch>(o, gamma);
  }
  static kdtest::ref::Row row(const double* s, const double* t, long v, double tau, long y) {
    return kdtest::ref::nkd(s, t, v, tau, y, gamma);
  }
};
using Nkd = NkdSpec<15>;    // ImageNet: gamma 1.5, lambda 1
using Nkd35 = NkdSpec<35>;  // CIFAR-100: gamma 3.5, lambda 3
}  // namespace

TEMPLATE_TEST_CASE("NormalizedKD matches the double reference", "[normalized_kd]", float, double) {
  std::uint32_t s = kdtest::seed(3500);
  for (const long v : {2L, 3L, 17L, 1271L, 32003L}) {
    kdtest::check_labeled_reference<Nkd, TestType>(v > 2000 ? 3 : 6, v, {}, s++);
    kdloss::Options<TestType> o;
    o.temperature = TestType(3);
    kdtest::check_labeled_reference<Nkd35, TestType>(4, v, o, s++);
    o.temperature = TestType(0.5);
    kdtest::check_labeled_reference<Nkd, TestType>(4, v, o, s++, 5.0);
  }
}

TEST_CASE("NormalizedKD gradient equals central finite differences", "[normalized_kd]") {
  kdtest::check_labeled_fd<Nkd>(4, 9, {}, kdtest::seed(3600));
  kdloss::Options<double> o;
  o.temperature = 3;
  kdtest::check_labeled_fd<Nkd35>(3, 17, o, kdtest::seed(3601), 3.0);
}

TEMPLATE_TEST_CASE("NormalizedKD calls reductions and masking", "[normalized_kd]", float, double) {
  kdtest::check_labeled_calls<Nkd, TestType>(7, 301, kdtest::seed(3700));
}

TEMPLATE_TEST_CASE("NormalizedKD rejects bad input", "[normalized_kd]", float, double) {
  kdtest::check_labeled_errors<Nkd, TestType>();
  kdloss::Options<TestType> o;
  o.scale_by_t2 = true;
  CHECK_THROWS_WITH(kdloss::NormalizedKD<TestType>(o), Catch::Contains("scale_by_t2"));
  CHECK_THROWS_WITH(kdloss::NormalizedKD<TestType>({}, -0.5), Catch::Contains("gamma"));
}

TEMPLATE_TEST_CASE("NormalizedKD layouts and no allocation", "[normalized_kd]", float, double) {
  kdtest::check_labeled_layouts_and_allocation<Nkd, TestType>(5, 1000, kdtest::seed(3800));
}

TEMPLATE_TEST_CASE("NormalizedKD excludes the label from the non-target term", "[normalized_kd]", float, double) {
  // The reference's first versions masked nothing (scatter_ with 1), so their "non-target" term
  // included the label. Here the label's teacher logit moves only p_y, the weight of the target
  // term: the non-target term, L + p_y log q_y, stays the same.
  using T = TestType;
  const long v = 300;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(1, v, kdtest::seed(3900));
  kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(1, v, kdtest::seed(3901));
  // The student's label logit 3 below its others: the term with the label included (the bug, at
  // the end) then moves with the label's teacher logit by far more than the check allows, whatever
  // the draw (with the draw's own logit there, Catch seed 13 moved it by only 0.0092).
  S(0, 42) = static_cast<T>(S.minCoeff() - 3);
  const Eigen::VectorXi y = Eigen::VectorXi::Constant(1, 42);
  kdloss::Options<T> o;
  o.temperature = T(2);
  const kdloss::NormalizedKD<T> nkd(o);
  auto non_target = [&](const kdloss::RowMatrix<T>& t) {
    const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(t);
    const auto lq = kdtest::ref::log_softmax(Sd.data(), v, 1.0), lp = kdtest::ref::log_softmax(Td.data(), v, 1.0);
    return static_cast<double>(nkd(S, t, y)) + std::exp(lp[42]) * lq[42];
  };
  const double a = non_target(Tt);
  for (const double shift : {-5.0, 3.0, 12.0}) {
    kdloss::RowMatrix<T> T2 = Tt;
    T2(0, 42) += static_cast<T>(shift);
    CHECK(std::fabs(non_target(T2) - a) <= 64 * kdtest::eps<T>() * (std::fabs(a) + 1));
  }
  // With the label included (the old bug) the term is gamma lambda^2 CE(p^lambda, q^lambda) over
  // all classes, which does move with the label's logit: the check above would catch it.
  auto buggy = [&](const kdloss::RowMatrix<T>& t) {
    const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(t);
    const auto lq = kdtest::ref::log_softmax(Sd.data(), v, 2.0), lp = kdtest::ref::log_softmax(Td.data(), v, 2.0);
    double r = 0;
    for (long j = 0; j < v; ++j) r -= 1.5 * 4 * std::exp(lp[static_cast<size_t>(j)]) * lq[static_cast<size_t>(j)];
    return r;
  };
  kdloss::RowMatrix<T> T12 = Tt;
  T12(0, 42) += T(12);
  CHECK(std::fabs(buggy(T12) - buggy(Tt)) > 100 * 64 * kdtest::eps<float>() * (std::fabs(a) + 1));
}
