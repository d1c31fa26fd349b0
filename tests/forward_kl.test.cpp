// Tests of kdloss::ForwardKL: the contract of every pair loss plus forward-KL specifics.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>

#include "support/contract.hpp"
#include "support/specs.hpp"

namespace {
using Fkl = kdtest::specs::Fkl;
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEMPLATE_TEST_CASE("ForwardKL matches the double reference", "[forward_kl]", float, double) {
  std::uint32_t s = kdtest::seed(100);
  for (const long v : {1L, 3L, 17L, 1271L, 65537L}) {
    for (const double tau : {1.0, 2.0, 0.5}) {
      kdloss::Options<TestType> o;
      o.temperature = static_cast<TestType>(tau);
      kdtest::check_reference<Fkl, TestType>(v > 2000 ? 2 : 5, v, o, s++);
    }
  }
  kdloss::Options<TestType> o;
  o.scale_by_t2 = true;
  o.temperature = TestType(3);
  o.reduction = kdloss::Reduction::Sum;
  kdtest::check_reference<Fkl, TestType>(4, 333, o, s++);
  // Confident rows (logit gaps of tens): the q - p cancellation stays within the bound.
  kdtest::check_reference<Fkl, TestType>(4, 500, kdloss::Options<TestType>{}, s++, 12.0);
  kdloss::Vector<TestType> w(6);
  w << TestType(1), TestType(0), TestType(2.5), TestType(0.25), TestType(0), TestType(1);
  kdtest::check_reference<Fkl, TestType>(6, 129, kdloss::Options<TestType>{}, s++, 3.0, &w);
  kdtest::check_rising_maxima<Fkl, TestType>(s++);
}

TEST_CASE("ForwardKL gradient equals central finite differences", "[forward_kl]") {
  kdloss::Options<double> o;
  kdtest::check_finite_differences<Fkl>(3, 17, o, kdtest::seed(200));
  o.temperature = 0.7;
  o.scale_by_t2 = true;
  kdtest::check_finite_differences<Fkl>(2, 9, o, kdtest::seed(201));
  o = {};
  o.temperature = 2.0;
  o.reduction = kdloss::Reduction::Sum;
  kdloss::Vector<double> w(3);
  w << 0.5, 0.0, 2.0;
  kdtest::check_finite_differences<Fkl>(3, 6, o, kdtest::seed(202), 3.0, &w);
}

TEMPLATE_TEST_CASE("ForwardKL invariants", "[forward_kl]", float, double) {
  for (const long v : {1L, 3L, 17L, 1271L}) kdtest::check_invariants<Fkl, TestType>(3, v, kdtest::seed(300));
}

TEMPLATE_TEST_CASE("ForwardKL options and reductions and weights and accumulate", "[forward_kl]", float, double) {
  kdtest::check_options_and_reductions<Fkl, TestType>(7, 301, kdtest::seed(400));
  kdtest::check_masking<Fkl, TestType>(37, kdtest::seed(401));
}

TEMPLATE_TEST_CASE("ForwardKL layouts", "[forward_kl]", float, double) {
  kdtest::check_layouts<Fkl, TestType>(5, 1271, kdtest::seed(500));
  kdtest::check_layouts<Fkl, TestType>(1, 3, kdtest::seed(501));
}

TEMPLATE_TEST_CASE("ForwardKL rejects bad input", "[forward_kl]", float, double) {
  kdtest::check_errors<Fkl, TestType>();
}

TEMPLATE_TEST_CASE("ForwardKL allocates nothing", "[forward_kl]", float, double) {
  kdtest::check_no_allocation<Fkl, TestType>(9, 4099);
}

TEMPLATE_TEST_CASE("ForwardKL with -inf logits", "[forward_kl]", float, double) {
  using T = TestType;
  const T ninf = -std::numeric_limits<T>::infinity();
  const long n = 3, v = 40;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(600));
  kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(601));
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::Sum;
  const kdloss::ForwardKL<T> fkl(o);

  SECTION("entries -inf on both sides contribute 0 and get gradient 0") {
    for (long j = 5; j < v; j += 3) S.col(j).setConstant(ninf), Tt.col(j).setConstant(ninf);
    kdloss::RowMatrix<T> G(n, v);
    const T value = fkl(S, Tt, G);
    // Same as the loss over the unmasked columns only.
    std::vector<long> keep;
    for (long j = 0; j < v; ++j)
      if (!(j >= 5 && (j - 5) % 3 == 0)) keep.push_back(j);
    kdloss::RowMatrix<T> Sk(n, static_cast<long>(keep.size())), Tk(n, static_cast<long>(keep.size()));
    for (size_t c = 0; c < keep.size(); ++c) Sk.col(static_cast<long>(c)) = S.col(keep[c]), Tk.col(static_cast<long>(c)) = Tt.col(keep[c]);
    kdloss::RowMatrix<T> Gk(n, Sk.cols());
    const T value_k = fkl(Sk, Tk, Gk);
    CHECK(std::fabs(static_cast<double>(value - value_k)) <= 1e-5 * static_cast<double>(value_k));
    for (long j = 5; j < v; j += 3) CHECK(G.col(j).cwiseAbs().maxCoeff() == T(0));
    CHECK(G.allFinite());
  }
  SECTION("teacher mass where the student is -inf: +inf value, finite gradient q - p") {
    S(1, 7) = ninf;
    kdloss::RowMatrix<T> G(n, v);
    kdloss::Vector<T> rows(n);
    CHECK(fkl(S, Tt) == std::numeric_limits<T>::infinity());
    CHECK(fkl.per_row(S, Tt, rows, G) == std::numeric_limits<T>::infinity());
    CHECK(std::isfinite(static_cast<double>(rows[0])));
    CHECK(rows[1] == std::numeric_limits<T>::infinity());
    CHECK(G.allFinite());
    const auto r = kdtest::ref::forward_kl(kdtest::to_double(S).row(1).data(),
                                           kdtest::to_double(Tt).row(1).data(), v, 1.0);
    CHECK(r.value == kInf);
    for (long j = 0; j < v; ++j)
      CHECK(std::fabs(static_cast<double>(G(1, j)) - r.grad[static_cast<size_t>(j)]) <= 64 * kdtest::eps<T>());
  }
  SECTION("student mass where the teacher is -inf: finite (the teacher puts no mass there)") {
    Tt(1, 7) = ninf;
    kdloss::RowMatrix<T> G(n, v);
    CHECK(std::isfinite(static_cast<double>(fkl(S, Tt, G))));
    CHECK(G.allFinite());
  }
  SECTION("deep underflow on both sides never gives NaN") {
    // log-probabilities far below -104 (float underflow) on both sides.
    S.setConstant(T(-300));
    Tt.setConstant(T(-300));
    S.col(0).setZero();
    Tt.col(1).setZero();
    S(0, 2) = T(-5);
    kdloss::RowMatrix<T> G(n, v);
    const T value = fkl(S, Tt, G);
    CHECK(std::isfinite(static_cast<double>(value)));
    CHECK(G.allFinite());
    const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
    const auto m = kdtest::ref::reduce(Fkl::row, Sd.data(), Td.data(), n, v, nullptr, kdtest::reduce_of(o));
    CHECK(std::fabs(static_cast<double>(value) - m.value) <= 1e-6 * m.value);
  }
}
