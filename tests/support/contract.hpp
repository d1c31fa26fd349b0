// The contract every pair loss (student logits vs teacher logits) is tested against: reference
// values, finite differences, invariants, options, reductions, weights, layouts, errors and the
// no-allocation guarantee. A loss test file describes its loss with a Spec and calls these.
//
// A Spec provides:
//   template <class T, class Arch = kdloss::simd::best_arch> static auto make(const kdloss::Options<T>&);
//   static kdtest::ref::Row row(const double* s, const double* t, long v, double tau);  // reference
//   static constexpr const char* name;    // the loss's name as it appears in error messages
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <kdloss/kdloss.hpp>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "alloc_counter.hpp"
#include "fixtures.hpp"
#include "matchers.hpp"
#include "reference.hpp"

// A harness (this file's, labeled_contract.hpp's) only drives the library and compares its results:
// clang compiles what lies between KDTEST_HARNESS_BEGIN and KDTEST_HARNESS_END without optimisation
// (the library and the references, included before, are optimised as usual). Under the sanitizers
// that takes a fifth off a test file's compile time (taid.test.cpp: 26 s against 32 s) and nothing
// measurable off its run time (2.0 s either way).
#if defined(__clang__)
#define KDTEST_HARNESS_BEGIN _Pragma("clang optimize off")
#define KDTEST_HARNESS_END _Pragma("clang optimize on")
#else
#define KDTEST_HARNESS_BEGIN
#define KDTEST_HARNESS_END
#endif

KDTEST_HARNESS_BEGIN
namespace kdtest {

template <class T>
constexpr double eps() {
  return static_cast<double>(std::numeric_limits<T>::epsilon());
}

/// Prints "kdloss-report <what> <value>" when KDLOSS_TEST_REPORT is set (figures for the notes).
inline void report(const std::string& what, double value) {
  if (std::getenv("KDLOSS_TEST_REPORT")) std::printf("kdloss-report %s %.3e\n", what.c_str(), value);
}

/// The reference's reduction settings for a set of options.
template <class T>
ref::Reduce reduce_of(const kdloss::Options<T>& o) {
  ref::Reduce r;
  r.kind = o.reduction == kdloss::Reduction::BatchMean ? ref::Reduce::BatchMean : ref::Reduce::Sum;
  r.temperature = static_cast<double>(o.temperature);
  r.t2 = o.scale_by_t2;
  r.denominator = static_cast<double>(o.denominator);
  return r;
}

/// The per-entry bound of a T computation against the double reference: a small multiple of
/// eps(T) times the size of the terms that are rounded, plus T's smallest normal (underflow).
constexpr double kUlpFactor = 32;

/// Loss value and gradient in type T against the double reference, for given logits.
template <class Spec, class T>
void check_reference_on(const kdloss::RowMatrix<T>& S, const kdloss::RowMatrix<T>& Tt, kdloss::Options<T> opt,
                        const kdloss::Vector<T>* weights = nullptr) {
  const long n = S.rows(), v = S.cols();
  const auto loss = Spec::template make<T>(opt);
  kdloss::RowMatrix<T> G(n, v);
  T value, value_only;
  if (weights) {
    value = loss(S, Tt, G, *weights);
    value_only = loss(S, Tt, *weights);
  } else {
    value = loss(S, Tt, G);
    value_only = loss(S, Tt);
  }
  CHECK(value == value_only);  // the value-only call computes the very same value
  const kdloss::RowMatrix<double> Sd = to_double(S), Td = to_double(Tt);
  kdloss::Vector<double> wd;
  if (weights) wd = weights->template cast<double>();
  const auto m = ref::reduce(Spec::row, Sd.data(), Td.data(), n, v, weights ? wd.data() : nullptr,
                             reduce_of(opt));
  const double e = eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  CHECK(std::fabs(static_cast<double>(value) - m.value) <= kUlpFactor * e * m.value_scale + tiny);
  const std::string why = compare(G, m.grad, [&](long i, long j) {
    return kUlpFactor * e * m.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny;
  });
  INFO(why);
  CHECK(why.empty());
}

/// Loss value and gradient in type T against the double reference, for random logits.
template <class Spec, class T>
void check_reference(long n, long v, kdloss::Options<T> opt, std::uint32_t s, double scale = 3.0,
                     const kdloss::Vector<T>* weights = nullptr) {
  INFO(Spec::name << " N=" << n << " V=" << v << " tau=" << static_cast<double>(opt.temperature)
                  << " seed=" << s);
  check_reference_on<Spec>(random_logits<T>(n, v, s, scale), random_logits<T>(n, v, s + 1, scale), opt, weights);
}

/// Rows whose maxima rise along the row, the case pass 1's blocks rescale for (each block's
/// exponentials are relative to the maxima of the blocks before it, and a block that rises more
/// than 4 in base-2 exponent is swept again): a slow ramp (every block rises, by at most 1.5 in
/// base 2 in 2048 entries: kept), jumps of 80 logits and a steep ramp (swept again), a first
/// stretch of -inf on both sides, the maximum in the last entry, and the same rows for the other
/// side. V = 5000 spans several blocks on every path.
template <class Spec, class T>
void check_rising_maxima(std::uint32_t s) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const long n = 6, v = 5000;
  kdloss::RowMatrix<T> a = random_logits<T>(n, v, s, 2.0), b = random_logits<T>(n, v, s + 1, 2.0);
  for (long j = 0; j < v; ++j) {
    const double x = static_cast<double>(j);
    a(0, j) = static_cast<T>(0.01 * static_cast<double>(a(0, j)) + 5e-4 * x);  // +0.5 per 1000
    a(1, j) += static_cast<T>(80.0 * std::floor(x / 1500));  // steps of 80
    if (j < 1300) a(2, j) = b(2, j) = kNegInf;             // a first stretch masked on both sides
    b(2, j) += static_cast<T>(0.01 * x);                   // +10 per 1000
  }
  a(3, v - 1) = T(60);  // the maximum in the last entry
  b(3, 0) = T(-60);
  for (long j = 0; j < v; ++j) {  // rows 4 and 5: rows 0 and 1 on the other side
    b(4, j) = a(0, j);
    b(5, j) = a(1, j);
  }
  for (const double tau : {1.0, 2.0}) {
    INFO(Spec::name << " rising maxima, tau=" << tau);
    kdloss::Options<T> o;
    o.temperature = static_cast<T>(tau);
    check_reference_on<Spec>(a, b, o);  // student a, teacher b
    check_reference_on<Spec>(b, a, o);
  }
}

/// The analytic gradient (double) against central finite differences of the loss itself.
template <class Spec>
double check_finite_differences(long n, long v, kdloss::Options<double> opt, std::uint32_t s,
                                double scale = 2.0, const kdloss::Vector<double>* w = nullptr) {
  INFO(Spec::name << " finite differences N=" << n << " V=" << v << " seed=" << s);
  kdloss::RowMatrix<double> S = random_logits<double>(n, v, s, scale);
  const kdloss::RowMatrix<double> Tt = random_logits<double>(n, v, s + 1, scale);
  const auto loss = Spec::template make<double>(opt);
  auto f = [&](const kdloss::RowMatrix<double>& x) { return w ? loss(x, Tt, *w) : loss(x, Tt); };
  kdloss::RowMatrix<double> G(n, v);
  if (w)
    loss(S, Tt, G, *w);
  else
    loss(S, Tt, G);
  // A central difference with step h carries the loss's own rounding, about eps |L| / h: below the
  // 1e-8 floor of the bound for |L| < 100. A larger loss (PearsonChi2 reached 33740 at Catch seed 8,
  // where that rounding was 1.7e-7) takes a fourth-order difference (Richardson's, from steps h
  // and h/2) with a step 100 times larger instead: its rounding is then 100 times smaller and its
  // truncation error of order h^4.
  const bool wide = !(std::fabs(f(S)) < 100);
  auto diff = [&](long i, long j, double h) {
    const double x0 = S(i, j);
    S(i, j) = x0 + h;
    const double fp = f(S);
    S(i, j) = x0 - h;
    const double fm = f(S);
    S(i, j) = x0;
    return fp - fm;
  };
  double worst = 0;
  for (long i = 0; i < n; ++i) {
    for (long j = 0; j < v; ++j) {
      const double x0 = S(i, j), h = (wide ? 1e-3 : 1e-5) * std::max(1.0, std::fabs(x0));
      const double fd = wide ? (8 * diff(i, j, h / 2) - diff(i, j, h)) / (6 * h) : diff(i, j, h) / (2 * h);
      const double err = std::fabs(G(i, j) - fd);
      worst = std::max(worst, err);
      INFO("entry (" << i << "," << j << "): analytic " << G(i, j) << " finite difference " << fd);
      CHECK(err <= 1e-8 + 1e-6 * std::fabs(fd));
    }
  }
  report(std::string(Spec::name) + " finite-difference max abs error", worst);
  return worst;
}

/// D(p||p) = 0 exactly, D >= 0, gradient rows sum to 0, shift invariance.
template <class Spec, class T>
void check_invariants(long n, long v, std::uint32_t s) {
  INFO(Spec::name << " invariants N=" << n << " V=" << v);
  kdloss::Options<T> opt;
  opt.reduction = kdloss::Reduction::Sum;
  const auto loss = Spec::template make<T>(opt);
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, s);
  const kdloss::RowMatrix<T> Tt = random_logits<T>(n, v, s + 1);
  kdloss::RowMatrix<T> G(n, v);
  // D(p || p) = 0 exactly, with an exactly zero gradient direction.
  CHECK(loss(S, S, G) == T(0));
  CHECK(G.cwiseAbs().maxCoeff() <= T(kUlpFactor) * std::numeric_limits<T>::epsilon());
  // D >= 0 and rows of the gradient sum to 0 (up to the rounding of their terms).
  kdloss::Vector<T> rows(n);
  loss.per_row(S, Tt, rows, G);
  CHECK(rows.minCoeff() >= T(0));
  const kdloss::RowMatrix<double> Sd = to_double(S), Td = to_double(Tt);
  const auto m = ref::reduce(Spec::row, Sd.data(), Td.data(), n, v, nullptr, reduce_of(opt));
  for (long i = 0; i < n; ++i) {
    double sum = 0, mag = 0;
    for (long j = 0; j < v; ++j)
      sum += static_cast<double>(G(i, j)), mag += m.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)];
    CHECK(std::fabs(sum) <= kUlpFactor * eps<T>() * mag + 1e-30);
  }
  // Adding a constant to a row changes nothing (beyond rounding of the shifted logits).
  for (const double c : {80.0, -80.0, 1000.0}) {
    INFO("shift " << c);
    const kdloss::RowMatrix<T> S2 = (S.array() + T(c)).matrix();
    const kdloss::RowMatrix<T> T2 = (Tt.array() - T(c / 2)).matrix();
    kdloss::RowMatrix<T> G2(n, v);
    const T v1 = loss(S, Tt, G), v2 = loss(S2, T2, G2);
    // A shift of c rounds each logit by up to eps*|c|: that is the size of the change allowed,
    // relative to the size of the loss and of the gradient (at most 1/tau for the KL family).
    const double tol = 8 * eps<T>() * (std::fabs(c) + 10) * (static_cast<double>(v1) + 1) * static_cast<double>(n);
    CHECK(std::fabs(static_cast<double>(v1 - v2)) <= tol);
    const double gmax = std::max(1.0, static_cast<double>(G.cwiseAbs().maxCoeff()));
    CHECK((G - G2).cwiseAbs().maxCoeff() <= T(8 * eps<T>() * (std::fabs(c) + 10) * gmax));
  }
}

/// Reductions, denominators, temperature scaling, accumulate and per-row outputs agree with each
/// other and with the documented formulas.
template <class Spec, class T>
void check_options_and_reductions(long n, long v, std::uint32_t s) {
  INFO(Spec::name << " options N=" << n << " V=" << v);
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, s);
  const kdloss::RowMatrix<T> Tt = random_logits<T>(n, v, s + 1);
  kdloss::Vector<T> w(n);
  for (long i = 0; i < n; ++i) w[i] = T(i % 3 == 1 ? 0 : 0.5 + 0.25 * static_cast<double>(i % 4));
  const double wsum = w.template cast<double>().sum();
  const double tol = 16 * eps<T>();

  kdloss::Options<T> o;
  o.temperature = T(2);
  o.reduction = kdloss::Reduction::Sum;
  const auto sum_loss = Spec::template make<T>(o);
  kdloss::RowMatrix<T> Gs(n, v), Gm(n, v), Gd(n, v), Gt(n, v), Ga(n, v), Gp(n, v);
  const double vs = static_cast<double>(sum_loss(S, Tt, Gs, w));

  // per_row: contributions sum to the total; masked rows give exactly 0.
  kdloss::Vector<T> rows(n);
  const double vp = static_cast<double>(sum_loss.per_row(S, Tt, rows, Gp, w));
  CHECK(std::fabs(vp - vs) <= tol * std::fabs(vs));
  CHECK(std::fabs(rows.template cast<double>().sum() - vs) <= tol * std::fabs(vs) * static_cast<double>(n));
  for (long i = 0; i < n; ++i)
    if (w[i] == T(0)) {
      CHECK(rows[i] == T(0));
      CHECK(Gs.row(i).cwiseAbs().maxCoeff() == T(0));
    }
  CHECK(Gp == Gs);

  // BatchMean divides by the weight sum, or by the explicit denominator.
  o.reduction = kdloss::Reduction::BatchMean;
  const double vm = static_cast<double>(Spec::template make<T>(o)(S, Tt, Gm, w));
  CHECK(std::fabs(vm - vs / wsum) <= tol * std::fabs(vs / wsum));
  CHECK(((Gm.template cast<double>() * wsum - Gs.template cast<double>()).cwiseAbs().maxCoeff()) <=
        tol * Gs.template cast<double>().cwiseAbs().maxCoeff());
  o.denominator = T(37);
  const double vd = static_cast<double>(Spec::template make<T>(o)(S, Tt, Gd, w));
  CHECK(std::fabs(vd - vs / 37) <= tol * std::fabs(vs / 37));
  o.denominator = T(0);

  // Reduction::None: the plain calls refuse it, per_row() serves it and equals Sum.
  o.reduction = kdloss::Reduction::None;
  const auto none_loss = Spec::template make<T>(o);
  CHECK_THROWS_AS(none_loss(S, Tt, w), std::invalid_argument);
  CHECK_THROWS_WITH(none_loss(S, Tt, Gt, w), Catch::Contains("per_row"));
  kdloss::Vector<T> rows_none(n);
  CHECK(static_cast<double>(none_loss.per_row(S, Tt, rows_none, w)) == vp);
  CHECK(rows_none == rows);

  // scale_by_t2 multiplies value and gradient by tau^2 exactly once.
  o.reduction = kdloss::Reduction::Sum;
  o.scale_by_t2 = true;
  const double vt = static_cast<double>(Spec::template make<T>(o)(S, Tt, Gt, w));
  CHECK(std::fabs(vt - 4 * vs) <= tol * std::fabs(4 * vs));
  CHECK(((Gt.template cast<double>() - 4 * Gs.template cast<double>()).cwiseAbs().maxCoeff()) <=
        tol * 4 * Gs.template cast<double>().cwiseAbs().maxCoeff());
  o.scale_by_t2 = false;

  // accumulate: G = alpha dL + beta G, returns alpha L; beta = 0 never reads G (NaN garbage ok).
  Ga.setConstant(std::numeric_limits<T>::quiet_NaN());
  const double va = static_cast<double>(sum_loss.accumulate(S, Tt, Ga, T(0.5), T(0), w));
  CHECK(std::fabs(va - 0.5 * vs) <= tol * std::fabs(vs));
  CHECK(((Ga.template cast<double>() - 0.5 * Gs.template cast<double>()).cwiseAbs().maxCoeff()) <=
        tol * Gs.template cast<double>().cwiseAbs().maxCoeff());
  kdloss::RowMatrix<T> base = random_logits<T>(n, v, s + 7, 0.01);
  Ga = base;
  sum_loss.accumulate(S, Tt, Ga, T(2), T(-0.5), w);
  const kdloss::RowMatrix<double> expect = 2 * Gs.template cast<double>() - 0.5 * base.template cast<double>();
  CHECK(((Ga.template cast<double>() - expect).cwiseAbs().maxCoeff()) <=
        tol * (expect.cwiseAbs().maxCoeff() + 1e-3));

  // mask_from_labels builds the same weights as explicit 0/1 weights.
  Eigen::VectorXi labels(n);
  kdloss::Vector<T> w01(n);
  for (long i = 0; i < n; ++i) {
    labels[i] = i % 2 == 0 ? -100 : static_cast<int>(i);
    w01[i] = T(i % 2 == 0 ? 0 : 1);
  }
  const kdloss::Vector<T> mw = kdloss::mask_from_labels<T>(labels);
  CHECK(mw == w01);
  CHECK(sum_loss(S, Tt, mw) == sum_loss(S, Tt, w01));
}

/// Masked rows are never computed (NaN logits there raise nothing), all-masked batches and N = 0
/// give loss 0 and gradient 0.
template <class Spec, class T>
void check_masking(long v, std::uint32_t s) {
  INFO(Spec::name << " masking V=" << v);
  const long n = 4;
  kdloss::RowMatrix<T> S = random_logits<T>(n, v, s);
  const kdloss::RowMatrix<T> Tt = random_logits<T>(n, v, s + 1);
  S.row(2).setConstant(std::numeric_limits<T>::quiet_NaN());
  kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n);
  w[2] = T(0);
  const auto loss = Spec::template make<T>({});
  kdloss::RowMatrix<T> G = kdloss::RowMatrix<T>::Constant(n, v, T(7));
  const T val = loss(S, Tt, G, w);
  CHECK(std::isfinite(static_cast<double>(val)));
  CHECK(G.row(2).cwiseAbs().maxCoeff() == T(0));
  // Without the mask the NaN row is an error naming row 2.
  CHECK_THROWS_AS(loss(S, Tt, G), std::domain_error);
  CHECK_THROWS_WITH(loss(S, Tt, G), Catch::Contains("row 2") && Catch::Contains("NaN"));
  // Every row masked: loss 0 and gradient exactly 0 (never NaN from 0/0).
  w.setZero();
  G.setConstant(T(7));
  CHECK(loss(S, Tt, G, w) == T(0));
  CHECK(G.cwiseAbs().maxCoeff() == T(0));
  // N = 0 is legal.
  const kdloss::RowMatrix<T> E(0, v);
  kdloss::RowMatrix<T> GE(0, v);
  CHECK(loss(E, E) == T(0));
  CHECK(loss(E, E, GE) == T(0));
}

/// Every layout a trainer hands over gives exactly the contiguous result: a Map over a raw buffer,
/// a middleRows block, a leftCols block (outer stride > V, e.g. a wider teacher), and the
/// transpose of a column-major V x N buffer. Gradients into a strided block.
template <class Spec, class T>
void check_layouts(long n, long v, std::uint32_t s) {
  INFO(Spec::name << " layouts N=" << n << " V=" << v);
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, s);
  const kdloss::RowMatrix<T> Tt = random_logits<T>(n, v, s + 1);
  const auto loss = Spec::template make<T>({});
  kdloss::RowMatrix<T> G(n, v);
  const T ref_value = loss(S, Tt, G);

  std::vector<T> sbuf(S.data(), S.data() + S.size()), tbuf(Tt.data(), Tt.data() + Tt.size());
  std::vector<T> gbuf(static_cast<size_t>(n * v));
  Eigen::Map<const kdloss::RowMatrix<T>> Sm(sbuf.data(), n, v), Tm(tbuf.data(), n, v);
  Eigen::Map<kdloss::RowMatrix<T>> Gm(gbuf.data(), n, v);
  CHECK(loss(Sm, Tm, Gm) == ref_value);
  CHECK(Gm == G);

  kdloss::RowMatrix<T> Sw(n + 2, v + 5), Tw(n + 2, v + 9), Gw(n + 2, v + 3);
  Sw.setRandom();
  Tw.setRandom();
  Gw.setConstant(T(42));
  Sw.block(1, 0, n, v) = S;
  Tw.block(1, 0, n, v) = Tt;
  CHECK(loss(Sw.middleRows(1, n).leftCols(v), Tw.middleRows(1, n).leftCols(v), Gw.middleRows(1, n).leftCols(v)) == ref_value);
  CHECK(Gw.middleRows(1, n).leftCols(v) == G);
  CHECK(Gw.row(0).cwiseEqual(T(42)).all());
  CHECK(Gw.rightCols(3).cwiseEqual(T(42)).all());

  using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  const ColMajor Sc = S.transpose(), Tc = Tt.transpose();
  CHECK(loss(Sc.transpose(), Tc.transpose()) == ref_value);

  using Strided = Eigen::Map<const kdloss::RowMatrix<T>, 0, Eigen::OuterStride<>>;
  Strided Ss(Sw.data() + Sw.cols(), n, v, Eigen::OuterStride<>(Sw.cols()));
  Strided Ts(Tw.data() + Tw.cols(), n, v, Eigen::OuterStride<>(Tw.cols()));
  CHECK(loss(Ss, Ts) == ref_value);
}

/// Each bad input of the contract raises the documented exception with a message naming it.
template <class Spec, class T>
void check_errors() {
  using Catch::Contains;
  const long n = 3, v = 5;
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, 1), Tt = random_logits<T>(n, v, 2);
  kdloss::RowMatrix<T> G(n, v);
  const auto loss = Spec::template make<T>({});
  const std::string name = Spec::name;
  // shapes
  const kdloss::RowMatrix<T> T4(n, v + 1), T2(n - 1, v);
  CHECK_THROWS_AS(loss(S, T4), std::invalid_argument);
  CHECK_THROWS_WITH(loss(S, T4), Contains(name) && Contains("3x5") && Contains("3x6"));
  CHECK_THROWS_WITH(loss(S, T2, G), Contains("2x5"));
  kdloss::RowMatrix<T> Gbad(n, v + 1);
  CHECK_THROWS_WITH(loss(S, Tt, Gbad), Contains("gradient is 3x6"));
  const kdloss::Vector<T> w2 = kdloss::Vector<T>::Ones(2);
  CHECK_THROWS_WITH(loss(S, Tt, G, w2), Contains("2 weights for 3 rows"));
  const kdloss::RowMatrix<T> Z(n, 0);
  CHECK_THROWS_WITH(loss(Z, Z), Contains("V = 0"));
  kdloss::Vector<T> out2(2);
  CHECK_THROWS_WITH(loss.per_row(S, Tt, out2), Contains("per_row() output has 2 entries"));
  // options
  for (const double bad : {0.0, -1.0, std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN()}) {
    kdloss::Options<T> o;
    o.temperature = static_cast<T>(bad);
    CHECK_THROWS_AS(Spec::template make<T>(o), std::invalid_argument);
    CHECK_THROWS_WITH(Spec::template make<T>(o), Contains("temperature"));
  }
  kdloss::Options<T> od;
  od.denominator = T(-1);
  CHECK_THROWS_WITH(Spec::template make<T>(od), Contains("denominator"));
  kdloss::Options<T> ot;
  ot.threads = -2;
  CHECK_THROWS_WITH(Spec::template make<T>(ot), Contains("threads"));
  // weights
  kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n);
  w[1] = T(-0.5);
  CHECK_THROWS_AS(loss(S, Tt, G, w), std::invalid_argument);
  CHECK_THROWS_WITH(loss(S, Tt, G, w), Contains("weight 1"));
  w[1] = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_WITH(loss(S, Tt, w), Contains("weight 1"));
  // logits: NaN, +inf, nothing finite (teacher and student), naming the row
  const T inf = std::numeric_limits<T>::infinity();
  for (int side = 0; side < 2; ++side) {
    const char* who = side == 0 ? "student" : "teacher";
    kdloss::RowMatrix<T> A = S, B = Tt;
    kdloss::RowMatrix<T>& X = side == 0 ? A : B;
    X(2, 3) = std::numeric_limits<T>::quiet_NaN();
    CHECK_THROWS_AS(loss(A, B), std::domain_error);
    CHECK_THROWS_WITH(loss(A, B, G), Contains("row 2") && Contains(who) && Contains("NaN"));
    X(2, 3) = inf;
    CHECK_THROWS_WITH(loss(A, B), Contains("row 2") && Contains(who) && Contains("+inf"));
    X.row(1).setConstant(-inf);
    X.row(2) = (side == 0 ? S : Tt).row(2);
    A.row(1).setConstant(-inf);
    B.row(1).setConstant(-inf);
    CHECK_THROWS_WITH(loss(A, B, G), Contains("row 1") && Contains("no finite entry"));
  }
  // The same in a later block of a long row, which pass 1 meets after blocks it has summed.
  for (int side = 0; side < 2; ++side) {
    const char* who = side == 0 ? "student" : "teacher";
    kdloss::RowMatrix<T> A = random_logits<T>(n, 5000, 3), B = random_logits<T>(n, 5000, 4), GL(n, 5000);
    kdloss::RowMatrix<T>& X = side == 0 ? A : B;
    X(2, 4500) = std::numeric_limits<T>::quiet_NaN();
    CHECK_THROWS_WITH(loss(A, B, GL), Contains("row 2") && Contains(who) && Contains("NaN"));
    X(2, 4500) = inf;
    CHECK_THROWS_WITH(loss(A, B), Contains("row 2") && Contains(who) && Contains("+inf"));
  }
  // the gradient may not alias an input
  kdloss::RowMatrix<T> S3 = S;
  CHECK_THROWS_WITH(loss(S3, Tt, S3), Contains("overlaps the student"));
}

template <class L, class = void>
struct has_reserve : std::false_type {};
template <class L>
struct has_reserve<L, std::void_t<decltype(std::declval<const L&>().reserve(1, 1))>> : std::true_type {};

/// Hot calls allocate nothing (value, value+gradient, weights, accumulate, per_row). A loss with a
/// workspace gets `reserve(N, V)` first, as its documentation asks.
template <class Spec, class T>
void check_no_allocation(long n, long v) {
  const kdloss::RowMatrix<T> S = random_logits<T>(n, v, 11), Tt = random_logits<T>(n, v, 12);
  kdloss::RowMatrix<T> G(n, v);
  kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n), rows(n);
  w[0] = T(0);
  const auto loss = Spec::template make<T>({});
  if constexpr (has_reserve<std::decay_t<decltype(loss)>>::value) loss.reserve(n, v);
  T sink = 0;
  NoAllocScope scope;
  sink += loss(S, Tt);
  sink += loss(S, Tt, G);
  sink += loss(S, Tt, G, w);
  sink += loss.accumulate(S, Tt, G, T(1), T(1), w);
  sink += loss.per_row(S, Tt, rows, G, w);
  CHECK(scope.count() == 0);
  CHECK(std::isfinite(static_cast<double>(sink)));
}

/// check_reference over the odd shapes (V in {1, 3, 17, 1271, 65537}), temperatures, tau^2
/// scaling with the Sum reduction, confident rows and row weights.
template <class Spec, class T>
void check_reference_sweep(std::uint32_t s) {
  for (const long v : {1L, 3L, 17L, 1271L, 65537L}) {
    for (const double tau : {1.0, 2.0, 0.5}) {
      kdloss::Options<T> o;
      o.temperature = static_cast<T>(tau);
      check_reference<Spec, T>(v > 2000 ? 2 : 5, v, o, s++);
    }
  }
  kdloss::Options<T> o;
  o.scale_by_t2 = true;
  o.temperature = T(3);
  o.reduction = kdloss::Reduction::Sum;
  check_reference<Spec, T>(4, 333, o, s++);
  check_reference<Spec, T>(4, 500, kdloss::Options<T>{}, s++, 8.0);
  kdloss::Vector<T> w(6);
  w << T(1), T(0), T(2.5), T(0.25), T(0), T(1);
  check_reference<Spec, T>(6, 129, kdloss::Options<T>{}, s++, 3.0, &w);
}

/// Finite differences in three configurations (plain; temperature with tau^2; Sum with weights).
template <class Spec>
void check_finite_differences_sweep(std::uint32_t s) {
  kdloss::Options<double> o;
  check_finite_differences<Spec>(3, 17, o, s);
  o.temperature = 0.7;
  o.scale_by_t2 = true;
  check_finite_differences<Spec>(2, 9, o, s + 1);
  o = {};
  o.temperature = 2.0;
  o.reduction = kdloss::Reduction::Sum;
  kdloss::Vector<double> w(3);
  w << 0.5, 0.0, 2.0;
  check_finite_differences<Spec>(3, 6, o, s + 2, 3.0, &w);
}

/// check_masked_entries on rows of v entries, the -inf entries from entry `at` on.
template <class Spec, class T>
void check_masked_entries_at(std::uint32_t s, long v, long at) {
  const long n = 4;
  const T ninf = -std::numeric_limits<T>::infinity();
  kdloss::RowMatrix<T> S = random_logits<T>(n, v, s), Tt = random_logits<T>(n, v, s + 1);
  for (long j = at + 3; j < at + 37; j += 5) S(0, j) = ninf, Tt(0, j) = ninf;  // row 0: both sides
  Tt(1, at + 7) = ninf;                                                        // row 1: teacher only
  S(2, at + 9) = ninf;                                                         // row 2: student only
  Tt(3, at + 4) = ninf, S(3, at + 4) = ninf, S(3, at + 5) = ninf, Tt(3, at + 6) = ninf;  // row 3: all three
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::Sum;
  const auto loss = Spec::template make<T>(o);
  const kdloss::RowMatrix<double> Sd = to_double(S), Td = to_double(Tt);
  for (long i = 0; i < n; ++i) {
    INFO(Spec::name << " masked entries, row " << i << " of " << v);
    const auto r = Spec::row(Sd.row(i).data(), Td.row(i).data(), v, 1.0);
    const kdloss::RowMatrix<T> Si = S.row(i), Ti = Tt.row(i);
    kdloss::RowMatrix<T> G(1, v);
    const double value = static_cast<double>(loss(Si, Ti));
    if (std::isinf(r.value)) {
      CHECK(value == r.value);
    } else {
      CHECK(std::fabs(value - r.value) <= kUlpFactor * eps<T>() * r.value_scale + 1e-30);
    }
    bool finite_grad = true;
    for (const double g : r.grad) finite_grad = finite_grad && std::isfinite(g);
    if (!finite_grad) {
      CHECK_THROWS_AS(loss(Si, Ti, G), std::domain_error);
      CHECK_THROWS_WITH(loss(Si, Ti, G), Catch::Contains("unbounded"));
      continue;
    }
    loss(Si, Ti, G);
    CHECK(G.allFinite());
    const std::string why = compare(G, {r.grad}, [&](long, long j) {
      return kUlpFactor * eps<T>() * r.grad_scale[static_cast<size_t>(j)] + static_cast<double>(std::numeric_limits<T>::min());
    });
    INFO(why);
    CHECK(why.empty());
  }
}

/// -inf logits on the teacher only, the student only, and both, against the reference: the value
/// (finite or +inf) and, where the reference's gradient is finite, the gradient; where it is not,
/// a gradient call must report the row. Rows of 37 entries, and of 5000 with the -inf entries in a
/// later block of pass 1 than the first.
template <class Spec, class T>
void check_masked_entries(std::uint32_t s) {
  for (const long v : {37L, 5000L}) check_masked_entries_at<Spec, T>(s, v, v > 37 ? 4000 : 0);
}

/// Rows whose log-probabilities are far below -104 on both sides (float underflow of p and q):
/// no NaN, and the reference's value and gradient.
template <class Spec, class T>
void check_deep_underflow(std::uint32_t s) {
  const long n = 3, v = 41;
  kdloss::RowMatrix<T> S = random_logits<T>(n, v, s, 3.0, -300.0), Tt = random_logits<T>(n, v, s + 1, 3.0, -300.0);
  S.col(0).setZero();
  Tt.col(1).setZero();
  Tt(2, 0) = T(-2);
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::Sum;
  const auto loss = Spec::template make<T>(o);
  kdloss::RowMatrix<T> G(n, v);
  INFO(Spec::name << " deep underflow");
  const kdloss::RowMatrix<double> Sd = to_double(S), Td = to_double(Tt);
  const auto m = ref::reduce(Spec::row, Sd.data(), Td.data(), n, v, nullptr, reduce_of(o));
  const double value = static_cast<double>(loss(S, Tt));
  if (std::isinf(m.value) || m.value > static_cast<double>(std::numeric_limits<T>::max())) {
    CHECK(value == std::numeric_limits<double>::infinity());  // the float rounding of a huge value
    return;
  }
  CHECK(std::fabs(value - m.value) <= kUlpFactor * eps<T>() * m.value_scale + 1e-30);
  bool finite_grad = true;
  for (const auto& row : m.grad)
    for (const double g : row)
      finite_grad = finite_grad && std::fabs(g) < static_cast<double>(std::numeric_limits<T>::max());
  if (!finite_grad) {
    CHECK_THROWS_WITH(loss(S, Tt, G), Catch::Contains("unbounded"));
    return;
  }
  loss(S, Tt, G);
  CHECK(G.allFinite());
  const std::string why = compare(G, m.grad, [&](long i, long j) {
    return kUlpFactor * eps<T>() * m.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] +
           static_cast<double>(std::numeric_limits<T>::min());
  });
  INFO(why);
  CHECK(why.empty());
}

}  // namespace kdtest
KDTEST_HARNESS_END
