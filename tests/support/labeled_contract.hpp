// The contract of a loss of (student, teacher, labels) — DKD, NKD — against its double reference:
// values and gradients, finite differences, calls and reductions, masking by label, errors, layouts
// and allocation. A Spec provides
//   template <class T, class Arch = kdloss::simd::best_arch> static auto make(const kdloss::Options<T>&);
//   static kdtest::ref::Row row(const double* s, const double* t, long v, double tau, long label);
//   static constexpr const char* name;
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "contract.hpp"

KDTEST_HARNESS_BEGIN
namespace kdtest {

/// Labels in [0, V) with row 1 (when N > 1) set to the ignore index.
inline Eigen::VectorXi random_labels(long n, long v, std::uint32_t s) {
  std::mt19937 gen(s);
  std::uniform_int_distribution<int> u(0, static_cast<int>(v - 1));
  Eigen::VectorXi y(n);
  for (long i = 0; i < n; ++i) y[i] = u(gen);
  if (n > 1) y[1] = -100;
  return y;
}

/// Value and gradient in T against the double reference (labels with one ignored row, weights).
template <class Spec, class T>
void check_labeled_reference(long n, long v, kdloss::Options<T> opt, std::uint32_t s, double scale = 3.0) {
  INFO(Spec::name << " N=" << n << " V=" << v << " tau=" << static_cast<double>(opt.temperature) << " seed=" << s);
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, s, scale), Tt = random_logits<T>(n, v, s + 1, scale);
  const Eigen::VectorXi y = random_labels(n, v, s + 2);
  kdloss::Vector<T> w(n);
  for (long i = 0; i < n; ++i) w[i] = T(0.5 + 0.25 * static_cast<double>(i % 3));
  const auto loss = Spec::template make<T>(opt);
  kdloss::RowMatrix<T> G(n, v);
  const T value = loss(S, Tt, y, G, w);
  CHECK(value == loss(S, Tt, y, w));
  const kdloss::RowMatrix<double> Sd = to_double(S), Td = to_double(Tt);
  std::vector<double> wd(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) wd[static_cast<size_t>(i)] = y[i] == -100 ? 0.0 : static_cast<double>(w[i]);
  auto row_fn = [&](const double* sr, const double* tr, long vv, double tau) {
    return Spec::row(sr, tr, vv, tau, y[(sr - Sd.data()) / vv]);
  };
  const auto m = ref::reduce(row_fn, Sd.data(), Td.data(), n, v, wd.data(), reduce_of(opt));
  const double e = eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  CHECK(std::fabs(static_cast<double>(value) - m.value) <= kUlpFactor * e * m.value_scale + tiny);
  const std::string why = compare(G, m.grad, [&](long i, long j) {
    return kUlpFactor * e * m.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny;
  });
  INFO(why);
  CHECK(why.empty());
}

/// Central finite differences of the loss itself in double.
template <class Spec>
void check_labeled_fd(long n, long v, kdloss::Options<double> opt, std::uint32_t s, double scale = 2.0) {
  INFO(Spec::name << " finite differences N=" << n << " V=" << v << " seed=" << s);
  kdloss::RowMatrix<double> S = random_logits<double>(n, v, s, scale);
  const kdloss::RowMatrix<double> Tt = random_logits<double>(n, v, s + 1, scale);
  const Eigen::VectorXi y = random_labels(n, v, s + 2);
  kdloss::Vector<double> w(n);
  for (long i = 0; i < n; ++i) w[i] = 0.5 + 0.5 * static_cast<double>(i % 2);
  const auto loss = Spec::template make<double>(opt);
  kdloss::RowMatrix<double> G(n, v);
  loss(S, Tt, y, G, w);
  double worst = 0;
  for (long i = 0; i < n; ++i) {
    for (long j = 0; j < v; ++j) {
      const double x0 = S(i, j), h = 1e-5 * std::max(1.0, std::fabs(x0));
      S(i, j) = x0 + h;
      const double fp = loss(S, Tt, y, w);
      S(i, j) = x0 - h;
      const double fm = loss(S, Tt, y, w);
      S(i, j) = x0;
      const double fd = (fp - fm) / (2 * h);
      INFO("entry (" << i << "," << j << "): analytic " << G(i, j) << " finite difference " << fd);
      CHECK(std::fabs(G(i, j) - fd) <= 1e-8 + 1e-6 * std::fabs(fd));
      worst = std::max(worst, std::fabs(G(i, j) - fd));
    }
  }
  report(std::string(Spec::name) + " finite-difference max abs error", worst);
}

/// The calls agree with each other: value-only, per_row, reductions, accumulate, weights, masked
/// rows (ignored labels and zero weights: no value, gradient exactly 0), every row ignored.
template <class Spec, class T>
void check_labeled_calls(long n, long v, std::uint32_t s) {
  INFO(Spec::name << " calls N=" << n << " V=" << v);
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, s), Tt = random_logits<T>(n, v, s + 1);
  Eigen::VectorXi y = random_labels(n, v, s + 2);
  kdloss::Vector<T> w(n);
  for (long i = 0; i < n; ++i) w[i] = T(i % 3 == 2 ? 0 : 1 + 0.5 * static_cast<double>(i % 2));
  const double tol = 16 * eps<T>();
  kdloss::Options<T> o = Spec::template make<T>({}).options();
  o.reduction = kdloss::Reduction::Sum;
  const auto sum_loss = Spec::template make<T>(o);
  kdloss::RowMatrix<T> Gs(n, v), Gp(n, v), Gm(n, v), Ga(n, v);
  const double vs = static_cast<double>(sum_loss(S, Tt, y, Gs, w));
  kdloss::Vector<T> rows(n);
  CHECK(static_cast<double>(sum_loss.per_row(S, Tt, y, rows, Gp, w)) == vs);
  CHECK(Gp == Gs);
  CHECK(std::fabs(rows.template cast<double>().sum() - vs) <= tol * std::fabs(vs) * static_cast<double>(n));
  double wsum = 0;
  for (long i = 0; i < n; ++i) {
    if (y[i] == -100 || w[i] == T(0)) {
      CHECK(rows[i] == T(0));
      CHECK(Gs.row(i).cwiseAbs().maxCoeff() == T(0));
    } else {
      wsum += static_cast<double>(w[i]);
    }
  }
  o.reduction = kdloss::Reduction::BatchMean;
  const double vm = static_cast<double>(Spec::template make<T>(o)(S, Tt, y, Gm, w));
  CHECK(std::fabs(vm - vs / wsum) <= tol * std::fabs(vs / wsum));
  CHECK(((Gm.template cast<double>() * wsum - Gs.template cast<double>()).cwiseAbs().maxCoeff()) <=
        tol * Gs.template cast<double>().cwiseAbs().maxCoeff());
  Ga.setConstant(std::numeric_limits<T>::quiet_NaN());
  CHECK(std::fabs(static_cast<double>(sum_loss.accumulate(S, Tt, y, Ga, T(0.5), T(0), w)) - 0.5 * vs) <= tol * std::fabs(vs));
  const kdloss::RowMatrix<T> base = random_logits<T>(n, v, s + 9, 0.01);
  Ga = base;
  sum_loss.accumulate(S, Tt, y, Ga, T(2), T(-0.5), w);
  const kdloss::RowMatrix<double> expect = 2 * Gs.template cast<double>() - 0.5 * base.template cast<double>();
  CHECK(((Ga.template cast<double>() - expect).cwiseAbs().maxCoeff()) <= tol * (expect.cwiseAbs().maxCoeff() + 1e-3));
  // Reduction::None only through per_row.
  o.reduction = kdloss::Reduction::None;
  const auto none = Spec::template make<T>(o);
  CHECK_THROWS_WITH(none(S, Tt, y), Catch::Contains("per_row"));
  kdloss::Vector<T> rows2(n);
  none.per_row(S, Tt, y, rows2, w);
  CHECK(rows2 == rows);
  // Every row ignored: 0 and a zero gradient.
  y.setConstant(-100);
  Gs.setConstant(T(3));
  CHECK(sum_loss(S, Tt, y, Gs) == T(0));
  CHECK(Gs.cwiseAbs().maxCoeff() == T(0));
}

/// Bad inputs: labels out of range (invalid_argument naming the row), label count, shapes, NaN or
/// +inf logits (domain_error naming the row and side), a masked row's NaN is never read.
template <class Spec, class T>
void check_labeled_errors() {
  using Catch::Contains;
  const long n = 3, v = 6;
  kdloss::RowMatrix<T> S = random_logits<T>(n, v, 1), Tt = random_logits<T>(n, v, 2), G(n, v);
  const auto loss = Spec::template make<T>(Spec::template make<T>({}).options());
  Eigen::VectorXi y(n);
  y << 1, 5, 0;
  CHECK_NOTHROW(loss(S, Tt, y, G));
  for (const int bad : {6, -1, 1000}) {
    Eigen::VectorXi yb = y;
    yb[2] = bad;
    CHECK_THROWS_AS(loss(S, Tt, yb), std::invalid_argument);
    CHECK_THROWS_WITH(loss(S, Tt, yb), Contains(Spec::name) && Contains("row 2") && Contains("label"));
  }
  const Eigen::VectorXi y2(2);
  CHECK_THROWS_WITH(loss(S, Tt, y2), Contains("2 labels for 3 rows"));
  const kdloss::RowMatrix<T> T4(n, v + 1);
  CHECK_THROWS_WITH(loss(S, T4, y), Contains("3x6") && Contains("3x7"));
  for (int side = 0; side < 2; ++side) {
    kdloss::RowMatrix<T> A = S, B = Tt;
    kdloss::RowMatrix<T>& X = side == 0 ? A : B;
    const char* who = side == 0 ? "student" : "teacher";
    for (const long col : {3L, 5L}) {  // a non-target entry, and row 1's label entry
      INFO(who << " column " << col);
      X = side == 0 ? S : Tt;
      X(1, col) = std::numeric_limits<T>::quiet_NaN();
      CHECK_THROWS_AS(loss(A, B, y, G), std::domain_error);
      CHECK_THROWS_WITH(loss(A, B, y, G), Contains("row 1") && Contains(who) && Contains("NaN"));
      X(1, col) = std::numeric_limits<T>::infinity();
      CHECK_THROWS_WITH(loss(A, B, y), Contains("row 1") && Contains(who) && Contains("+inf"));
      // The row's label ignored: never read.
      Eigen::VectorXi ym = y;
      ym[1] = -100;
      CHECK_NOTHROW(loss(A, B, ym, G));
    }
  }
  // The teacher has nothing outside the label: the non-target distribution is undefined.
  kdloss::RowMatrix<T> B = Tt;
  B.row(0).setConstant(-std::numeric_limits<T>::infinity());
  B(0, 1) = T(1);
  CHECK_THROWS_WITH(loss(S, B, y, G), Contains("row 0") && Contains("non-target"));
  // V = 1 has no non-target class.
  const kdloss::RowMatrix<T> S1(n, 1), T1(n, 1);
  const Eigen::VectorXi y0 = Eigen::VectorXi::Zero(n);
  CHECK_THROWS_WITH(loss(S1, T1, y0), Contains("V >= 2"));
}

/// Layouts (Map, blocks with outer stride) give exactly the contiguous result; hot calls allocate
/// nothing.
template <class Spec, class T>
void check_labeled_layouts_and_allocation(long n, long v, std::uint32_t s) {
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, s), Tt = random_logits<T>(n, v, s + 1);
  const Eigen::VectorXi y = random_labels(n, v, s + 2);
  const auto loss = Spec::template make<T>(Spec::template make<T>({}).options());
  kdloss::RowMatrix<T> G(n, v);
  const T ref_value = loss(S, Tt, y, G);
  kdloss::RowMatrix<T> Sw(n + 1, v + 3), Tw(n + 1, v + 5), Gw(n + 1, v + 2);
  Sw.setConstant(T(9));
  Tw.setConstant(T(-9));
  Gw.setConstant(T(42));
  Sw.bottomRows(n).leftCols(v) = S;
  Tw.bottomRows(n).leftCols(v) = Tt;
  CHECK(loss(Sw.bottomRows(n).leftCols(v), Tw.bottomRows(n).leftCols(v), y, Gw.bottomRows(n).leftCols(v)) == ref_value);
  CHECK(Gw.bottomRows(n).leftCols(v) == G);
  CHECK(Gw.row(0).cwiseEqual(T(42)).all());
  Eigen::Map<const kdloss::RowMatrix<T>> Sm(S.data(), n, v), Tm(Tt.data(), n, v);
  CHECK(loss(Sm, Tm, y) == ref_value);
  kdloss::Vector<T> rows(n), w = kdloss::Vector<T>::Ones(n);
  T sink = 0;
  {
    NoAllocScope scope;
    sink += loss(S, Tt, y);
    sink += loss(S, Tt, y, G, w);
    sink += loss.accumulate(S, Tt, y, G, T(1), T(1));
    sink += loss.per_row(S, Tt, y, rows, G);
    CHECK(scope.count() == 0);
  }
  CHECK(std::isfinite(static_cast<double>(sink)));
}

}  // namespace kdtest
KDTEST_HARNESS_END
