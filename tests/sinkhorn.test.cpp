// Tests of kdloss::Sinkhorn (SinKD): an independent non-log-domain reference (value, plan and the
// autograd-style gradient), central finite differences, plan marginals, the log-domain kernels,
// N = 1, identical rows, masked rows, reductions, layouts, options and errors, tiny epsilon, and the
// no-allocation guarantee; float and double.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/sinkhorn.hpp>

#include "support/contract.hpp"
#include "support/sinkhorn_bounds.hpp"
#include "support/sinkhorn_reference.hpp"

namespace {

using kdloss::Reduction;
using kdloss::SinkhornCost;
using kdloss::SinkhornGradient;

template <class T>
kdloss::SinkhornOptions<T> make_opts(double eps, SinkhornCost cost = SinkhornCost::L1, double tau = 1.0,
                                     Reduction red = Reduction::Sum,
                                     SinkhornGradient grad = SinkhornGradient::Exact, int iters = 20) {
  kdloss::SinkhornOptions<T> o;
  o.epsilon = static_cast<T>(eps);
  o.cost = cost;
  o.temperature = static_cast<T>(tau);
  o.reduction = red;
  o.gradient = grad;
  o.iterations = iters;
  return o;
}

template <class T>
kdtest::ref::SinkhornRef reference(const kdloss::RowMatrix<T>& S, const kdloss::RowMatrix<T>& Tt,
                                   const kdloss::SinkhornOptions<T>& o) {
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
  return kdtest::ref::sinkhorn(Sd.data(), Td.data(), S.rows(), S.cols(), static_cast<double>(o.temperature),
                               static_cast<double>(o.epsilon), o.iterations, o.cost == SinkhornCost::L1,
                               o.gradient == SinkhornGradient::Envelope);
}

/// The reduction's scale of value and gradient for n points.
template <class T>
double factor_of(const kdloss::SinkhornOptions<T>& o, long n) {
  const double tau = static_cast<double>(o.temperature);
  double f = o.scale_by_t2 ? tau * tau : 1.0;
  if (o.reduction == Reduction::BatchMean)
    f /= o.denominator > T(0) ? static_cast<double>(o.denominator) : static_cast<double>(n);
  return f;
}

/// Value and gradient in T against the double reference, within the bounds of sinkhorn_bounds.hpp.
template <class T>
void check_reference(long n, long v, const kdloss::SinkhornOptions<T>& o, std::uint32_t s, double scale = 3.0) {
  INFO("Sinkhorn N=" << n << " V=" << v << " eps=" << static_cast<double>(o.epsilon) << " tau="
                     << static_cast<double>(o.temperature) << " cost=" << kdloss::to_string(o.cost)
                     << " envelope=" << (o.gradient == SinkhornGradient::Envelope) << " seed=" << s);
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s, scale);
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, s + 1, scale);
  kdloss::Sinkhorn<T> sk(o);
  kdloss::RowMatrix<T> G(n, v);
  const T value = sk(S, Tt, G);
  const T value_only = sk(S, Tt);
  CHECK(value == value_only);  // the value-only call computes the very same value
  const auto r = reference(S, Tt, o);
  const double f = factor_of(o, n);
  const auto b = kdtest::ref::sinkhorn_bounds(r, kdtest::eps<T>(), static_cast<double>(std::numeric_limits<T>::min()),
                                              static_cast<double>(o.epsilon), static_cast<double>(o.temperature), f,
                                              o.cost == SinkhornCost::L1);
  const double verr = std::fabs(static_cast<double>(value) - f * r.loss);
  INFO("value " << static_cast<double>(value) << " reference " << f * r.loss << " bound " << b.value);
  CHECK(verr <= b.value);
  double worst = 0;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < v; ++j) {
      const double e = std::fabs(static_cast<double>(G(i, j)) - f * r.grad[static_cast<size_t>(i)][static_cast<size_t>(j)]);
      worst = std::max(worst, e / b.grad[static_cast<size_t>(i)][static_cast<size_t>(j)]);
    }
  kdtest::report(std::string("Sinkhorn ") + (sizeof(T) == 4 ? "float" : "double") + " value error/bound", verr / b.value);
  kdtest::report(std::string("Sinkhorn ") + (sizeof(T) == 4 ? "float" : "double") + " gradient error/bound", worst);
  std::vector<std::vector<double>> expect = r.grad;
  for (auto& row : expect)
    for (auto& x : row) x *= f;
  const std::string why = kdtest::compare(G, expect, [&](long i, long j) {
    return b.grad[static_cast<size_t>(i)][static_cast<size_t>(j)];
  });
  INFO(why);
  CHECK(why.empty());
  // The plan and the cost themselves.
  double perr = 0, cerr = 0;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < n; ++j) {
      perr = std::max(perr, std::fabs(sk.plan()(i, j) - r.plan[static_cast<size_t>(i)][static_cast<size_t>(j)]));
      cerr = std::max(cerr, std::fabs(sk.cost()(i, j) - r.cost[static_cast<size_t>(i)][static_cast<size_t>(j)]));
    }
  CHECK(cerr <= 128 * kdtest::eps<T>() * (o.cost == SinkhornCost::L1 ? 2.0 : 4.0));
  CHECK(perr <= 8 * static_cast<double>(n) * 128 * kdtest::eps<T>() / static_cast<double>(o.epsilon) + 1e-13);
  CHECK(std::fabs(sk.info().marginal_error - r.row_error) <= 1e-12 + perr * static_cast<double>(n));
}

}  // namespace

TEMPLATE_TEST_CASE("Sinkhorn matches the double reference", "[sinkhorn]", float, double) {
  using T = TestType;
  std::uint32_t s = kdtest::seed(1000);
  for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2})
    for (const SinkhornGradient gm : {SinkhornGradient::Exact, SinkhornGradient::Envelope})
      for (const double eps : {0.1, 0.01}) {
        check_reference<T>(5, 17, make_opts<T>(eps, cost, 1.0, Reduction::Sum, gm), s++);
        check_reference<T>(13, 300, make_opts<T>(eps, cost, 2.0, Reduction::BatchMean, gm), s++);
        check_reference<T>(3, 1, make_opts<T>(eps, cost, 1.0, Reduction::Sum, gm), s++);
      }
  // Larger than every register tile, chunk and product block (64 rows, 1 KiB chunks).
  check_reference<T>(70, 1100, make_opts<T>(0.1, SinkhornCost::L1), s++);
  check_reference<T>(70, 1100, make_opts<T>(0.1, SinkhornCost::SquaredL2), s++);
  auto o = make_opts<T>(0.05, SinkhornCost::L1, 3.0);
  o.scale_by_t2 = true;
  o.iterations = 7;
  check_reference<T>(9, 65, o, s++);
}

namespace {

/// The analytic gradient (double) against central finite differences of the loss itself.
double check_finite_differences(long n, long v, const kdloss::SinkhornOptions<double>& o, std::uint32_t s) {
  INFO("Sinkhorn finite differences N=" << n << " V=" << v << " eps=" << o.epsilon
                                        << " cost=" << kdloss::to_string(o.cost) << " seed=" << s);
  kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, s, 2.0);
  const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, s + 1, 2.0);
  kdloss::Sinkhorn<double> sk(o);
  kdloss::RowMatrix<double> G(n, v);
  sk(S, Tt, G);
  const double gmax = G.cwiseAbs().maxCoeff();
  double worst = 0;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < v; ++j) {
      const double x0 = S(i, j), h = 1e-6;
      S(i, j) = x0 + h;
      const double fp = sk(S, Tt);
      S(i, j) = x0 - h;
      const double fm = sk(S, Tt);
      S(i, j) = x0;
      const double fd = (fp - fm) / (2 * h);
      const double err = std::fabs(G(i, j) - fd);
      worst = std::max(worst, err / gmax);
      INFO("entry (" << i << "," << j << "): analytic " << G(i, j) << " finite difference " << fd);
      // central differences: truncation h^2 |f'''| (f'' ~ 1/eps) and rounding 1e-16 |L| / h
      CHECK(err <= 1e-6 * gmax);
    }
  return worst;
}

}  // namespace

TEST_CASE("Sinkhorn exact gradient equals central finite differences", "[sinkhorn]") {
  std::uint32_t s = kdtest::seed(1100);
  for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2}) {
    double worst = 0;
    for (const double eps : {0.1, 0.01}) {
      double w = 0;
      w = std::max(w, check_finite_differences(4, 9, make_opts<double>(eps, cost, 1.0, Reduction::Sum), s++));
      w = std::max(w, check_finite_differences(6, 5, make_opts<double>(eps, cost, 0.7, Reduction::BatchMean), s++));
      w = std::max(w, check_finite_differences(3, 11, make_opts<double>(eps, cost, 2.0, Reduction::Sum,
                                                                       SinkhornGradient::Exact, 50), s++));
      kdtest::report(std::string("Sinkhorn ") + kdloss::to_string(cost) + " eps=" + std::to_string(eps) +
                         " finite-difference max error / max|gradient|", w);
      worst = std::max(worst, w);
    }
    (void)worst;
  }
}

TEST_CASE("Sinkhorn envelope gradient: its reference, and its measured difference from the exact one", "[sinkhorn]") {
  // The envelope's own value is checked against its reference in "matches the double reference";
  // here: how far it is from the exact gradient (relative Frobenius norm), reported for the notes.
  std::uint32_t s = kdtest::seed(1200);
  for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2})
    for (const double eps : {0.1, 0.01, 0.001}) {
      const long n = 32, v = 512;
      const kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, s, 2.0);
      const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, s + 1, 2.0);
      ++s;
      kdloss::Sinkhorn<double> exact(make_opts<double>(eps, cost));
      kdloss::Sinkhorn<double> env(make_opts<double>(eps, cost, 1.0, Reduction::Sum, SinkhornGradient::Envelope));
      kdloss::RowMatrix<double> Ge(n, v), Gv(n, v);
      const double le = exact(S, Tt, Ge), lv = env(S, Tt, Gv);
      CHECK(le == lv);  // same forward
      const double rel = (Ge - Gv).norm() / Ge.norm();
      INFO("relative difference " << rel);
      CHECK(rel > 0);
      CHECK(std::isfinite(rel));
      kdtest::report(std::string("Sinkhorn ") + kdloss::to_string(cost) + " eps=" + std::to_string(eps) +
                         " |envelope - exact| / |exact| (N=32 V=512, 20 iterations)", rel);
    }
  // The benchmark's inputs (float logits uniform in [-8, 8), N = 64, V = 32000, SinKD's defaults).
  const long n = 64, v = 32000;
  kdloss::RowMatrix<float> S(n, v), Tt(n, v), Ge(n, v), Gv(n, v);
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(n * 131 + v);
  auto next = [&x] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return static_cast<float>(static_cast<double>(x >> 11) * 0x1.0p-53 * 16.0 - 8.0);
  };
  for (Eigen::Index k = 0; k < S.size(); ++k) S.data()[k] = next(), Tt.data()[k] = next();
  for (const double eps : {0.1, 0.01}) {
    kdloss::Sinkhorn<float> exact(make_opts<float>(eps, SinkhornCost::L1, 1.0, Reduction::BatchMean));
    kdloss::Sinkhorn<float> env(make_opts<float>(eps, SinkhornCost::L1, 1.0, Reduction::BatchMean, SinkhornGradient::Envelope));
    exact(S, Tt, Ge);
    env(S, Tt, Gv);
    const double rel = static_cast<double>((Ge - Gv).norm() / Ge.norm());
    CHECK(rel > 0);
    CHECK(std::isfinite(rel));
    kdtest::report("Sinkhorn L1 float eps=" + std::to_string(eps) +
                       " |envelope - exact| / |exact| (benchmark inputs, N=64 V=32000)", rel);
  }
}

TEST_CASE("Sinkhorn log-domain steps normalise rows, then columns, at any epsilon", "[sinkhorn]") {
  namespace k = kdloss::kernels;
  using Arch = kdloss::simd::best_arch;
  for (const double eps : {1.0, 0.1, 1e-3}) {
    INFO("eps " << eps);
    const long n = 19;
    const kdloss::RowMatrix<double> C = kdtest::random_logits<double>(n, n, kdtest::seed(1300), 0.5).cwiseAbs();
    const kdloss::RowMatrix<double> M = -C / eps;
    std::vector<double> f(n), g(n, 0.0), g1(n), cmax(n), csum(n);
    for (int it = 0; it < 3; ++it) {
      k::sinkhorn_row_step<Arch>(M.data(), n, g.data(), f.data());
      // after the row step every row of alpha = exp(M - g - f) sums to exactly 1 (to rounding)
      for (long i = 0; i < n; ++i) {
        long double rs = 0;
        for (long j = 0; j < n; ++j) rs += std::exp(static_cast<long double>(M(i, j)) - g[static_cast<size_t>(j)] - f[static_cast<size_t>(i)]);
        CHECK(std::fabs(static_cast<double>(rs) - 1) <= 8 * n * kdtest::eps<double>());
      }
      k::sinkhorn_col_step<Arch>(M.data(), n, f.data(), g1.data(), cmax.data(), csum.data());
      for (long j = 0; j < n; ++j) {
        long double cs = 0;
        for (long i = 0; i < n; ++i) cs += std::exp(static_cast<long double>(M(i, j)) - f[static_cast<size_t>(i)] - g1[static_cast<size_t>(j)]);
        CHECK(std::fabs(static_cast<double>(cs) - 1) <= 8 * n * kdtest::eps<double>());
      }
      g = g1;
    }
  }
}

TEMPLATE_TEST_CASE("Sinkhorn plan marginals, info() and convergence", "[sinkhorn]", float, double) {
  using T = TestType;
  const long n = 12, v = 40;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1400), 1.0);
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(1401), 1.0);
  auto marginals = [&](const kdloss::Sinkhorn<T>& sk) {
    const auto P = sk.plan();
    REQUIRE(P.rows() == n);
    double row_err = 0, col_err = 0;
    for (long i = 0; i < n; ++i) {
      row_err = std::max(row_err, std::fabs(P.row(i).sum() - 1));
      col_err = std::max(col_err, std::fabs(P.col(i).sum() - 1));
    }
    // The column step comes last: columns sum to 1 up to rounding; rows carry the reported error.
    CHECK(col_err <= 8 * n * kdtest::eps<double>());
    CHECK(std::fabs(row_err - sk.info().marginal_error) <= 8 * n * kdtest::eps<double>());
    return row_err;
  };
  SECTION("SinKD's 20 iterations") {
    kdloss::Sinkhorn<T> sk(make_opts<T>(0.1));
    sk(S, Tt);
    marginals(sk);
    CHECK(sk.info().iterations_run == 20);
    CHECK(sk.info().converged == (sk.info().marginal_error <= kdloss::SinkhornInfo::kDefaultTolerance));
  }
  SECTION("one iteration does not converge: a status, not an exception") {
    kdloss::Sinkhorn<T> sk(make_opts<T>(0.01, SinkhornCost::L1, 1.0, Reduction::Sum, SinkhornGradient::Exact, 1));
    kdloss::RowMatrix<T> G(n, v);
    const T value = sk(S, Tt, G);
    CHECK(std::isfinite(static_cast<double>(value)));
    CHECK(sk.info().iterations_run == 1);
    CHECK(sk.info().marginal_error > 1e-3);
    CHECK_FALSE(sk.info().converged);
    CHECK(marginals(sk) > 1e-3);
  }
  SECTION("many iterations converge; the early stop fires at the tolerance") {
    kdloss::Sinkhorn<T> sk(make_opts<T>(0.1, SinkhornCost::L1, 1.0, Reduction::Sum, SinkhornGradient::Exact, 2000));
    kdloss::RowMatrix<T> G(n, v);
    const T full = sk(S, Tt, G);
    CHECK(sk.info().iterations_run == 2000);
    CHECK(sk.info().marginal_error <= 1e-12);
    CHECK(sk.info().converged);
    auto o = sk.options();
    o.tolerance = 1e-8;
    sk.set_options(o);
    kdloss::RowMatrix<T> G2(n, v);
    const T stopped = sk(S, Tt, G2);
    INFO("early stop after " << sk.info().iterations_run << " iterations, marginal error " << sk.info().marginal_error);
    CHECK(sk.info().iterations_run < 2000);
    CHECK(sk.info().iterations_run > 1);
    CHECK(sk.info().marginal_error <= 1e-8);
    CHECK(sk.info().converged);
    marginals(sk);
    // Converged: the values agree to the tolerance's order.
    CHECK(std::fabs(static_cast<double>(full - stopped)) <= 1e-6 * std::fabs(static_cast<double>(full)) + 1e-6);
  }
}

TEST_CASE("Sinkhorn converged plan equals the non-log-domain reference", "[sinkhorn]") {
  for (const double eps : {0.1, 0.05}) {
    for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2}) {
      INFO("eps " << eps << " cost " << kdloss::to_string(cost));
      const long n = 10, v = 33;
      // Logits of scale 1: Sinkhorn converges in a few hundred iterations (peakier rows converge
      // far more slowly at these epsilons).
      const kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, kdtest::seed(1500), 1.0);
      const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, kdtest::seed(1501), 1.0);
      const auto o = make_opts<double>(eps, cost, 1.0, Reduction::Sum, SinkhornGradient::Exact, 1000);
      kdloss::Sinkhorn<double> sk(o);
      kdloss::RowMatrix<double> G(n, v);
      const double value = sk(S, Tt, G);
      const auto r = reference(S, Tt, o);
      REQUIRE(r.row_error <= 1e-12);  // the reference itself converged
      CHECK(sk.info().converged);
      CHECK(sk.info().marginal_error <= 1e-12);
      double perr = 0;
      for (long i = 0; i < n; ++i)
        for (long j = 0; j < n; ++j)
          perr = std::max(perr, std::fabs(sk.plan()(i, j) - r.plan[static_cast<size_t>(i)][static_cast<size_t>(j)]));
      CHECK(perr <= 1e-12);
      CHECK(std::fabs(value - r.loss) <= 1e-12 * r.loss);
      double gerr = 0, gmax = 0;
      for (long i = 0; i < n; ++i)
        for (long j = 0; j < v; ++j) {
          gerr = std::max(gerr, std::fabs(G(i, j) - r.grad[static_cast<size_t>(i)][static_cast<size_t>(j)]));
          gmax = std::max(gmax, std::fabs(r.grad[static_cast<size_t>(i)][static_cast<size_t>(j)]));
        }
      CHECK(gerr <= 1e-9 * gmax);
    }
  }
}

TEMPLATE_TEST_CASE("Sinkhorn with one point: the plan is [[1]] and the loss is its own cost", "[sinkhorn]", float, double) {
  using T = TestType;
  const long v = 37;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(1, v, kdtest::seed(1600));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(1, v, kdtest::seed(1601));
  for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2}) {
    INFO("cost " << kdloss::to_string(cost));
    const double tau = 1.5;
    kdloss::Sinkhorn<T> sk(make_opts<T>(0.01, cost, tau, Reduction::BatchMean));
    kdloss::RowMatrix<T> G(1, v);
    const double value = static_cast<double>(sk(S, Tt, G));
    CHECK(sk.plan()(0, 0) == 1.0);
    CHECK(sk.info().marginal_error == 0.0);
    // W_11 and its gradient dW/ds directly: D = 1.
    const auto q = kdtest::ref::log_softmax(kdtest::to_double(S).data(), v, tau);
    const auto p = kdtest::ref::log_softmax(kdtest::to_double(Tt).data(), v, tau);
    double w = 0, dot = 0;
    std::vector<double> g(static_cast<size_t>(v));
    for (size_t j = 0; j < g.size(); ++j) {
      const double d = std::exp(q[j]) - std::exp(p[j]);
      w += cost == SinkhornCost::L1 ? std::fabs(d) : d * d;
      g[j] = cost == SinkhornCost::L1 ? (d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0) : 2 * d;
      dot += std::exp(q[j]) * g[j];
    }
    CHECK(std::fabs(value - w) <= 256 * kdtest::eps<T>() * (w + 1));
    CHECK(std::fabs(sk.cost()(0, 0) - w) <= 256 * kdtest::eps<T>() * (w + 1));
    for (long j = 0; j < v; ++j) {
      const double e = std::exp(q[static_cast<size_t>(j)]) * (g[static_cast<size_t>(j)] - dot) / tau;
      CHECK(std::fabs(static_cast<double>(G(0, j)) - e) <= 64 * kdtest::eps<T>() * (std::fabs(e) + 1e-3));
    }
  }
}

TEMPLATE_TEST_CASE("Sinkhorn with identical student and teacher rows", "[sinkhorn]", float, double) {
  using T = TestType;
  const long n = 8, v = 50;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1700));
  const kdloss::RowMatrix<T> Tt = S;
  kdloss::RowMatrix<T> G(n, v);
  SECTION("eps = 0.1: the L1 cost's diagonal is exactly 0, the entropic plan still spreads mass") {
    const auto o = make_opts<T>(0.1);
    kdloss::Sinkhorn<T> sk(o);
    const double value = static_cast<double>(sk(S, Tt, G));
    for (long i = 0; i < n; ++i) CHECK(sk.cost()(i, i) == 0.0);
    // Not 0: the off-diagonal mass of the entropic plan times positive costs.
    const auto r = reference(S, Tt, o);
    const auto b = kdtest::ref::sinkhorn_bounds(r, kdtest::eps<T>(), static_cast<double>(std::numeric_limits<T>::min()),
                                                0.1, 1.0, 1.0, true);
    CHECK(value > 0);
    CHECK(r.loss > 0);
    CHECK(std::fabs(value - r.loss) <= b.value);
    // The diagonal's sign(0) = 0, as autograd: the gradient matches the reference.
    std::vector<std::vector<double>> expect = r.grad;
    const std::string why = kdtest::compare(G, expect, [&](long i, long j) {
      return b.grad[static_cast<size_t>(i)][static_cast<size_t>(j)];
    });
    INFO(why);
    CHECK(why.empty());
  }
  SECTION("eps = 1e-3: the plan is the identity and the loss and gradient vanish") {
    kdloss::Sinkhorn<T> sk(make_opts<T>(1e-3));
    const double value = static_cast<double>(sk(S, Tt, G));
    CHECK(value >= 0);
    CHECK(value <= 1e-12);
    CHECK((sk.plan() - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff() <= 1e-12);
    CHECK(G.cwiseAbs().maxCoeff() <= T(1e-12));
  }
}

TEMPLATE_TEST_CASE("Sinkhorn masked rows drop out of the batch", "[sinkhorn]", float, double) {
  using T = TestType;
  const long n = 7, v = 45;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1800));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(1801));
  kdloss::Vector<T> w(n);
  w << T(1), T(0), T(1), T(1), T(0), T(1), T(1);
  S.row(4).setConstant(std::numeric_limits<T>::quiet_NaN());  // never read: the row is masked
  // The same batch without the masked rows.
  const long m = 5;
  kdloss::RowMatrix<T> Sc(m, v), Tc(m, v);
  for (long i = 0, k = 0; i < n; ++i)
    if (w[i] != T(0)) Sc.row(k) = S.row(i), Tc.row(k) = Tt.row(i), ++k;
  for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2})
    for (const Reduction red : {Reduction::Sum, Reduction::BatchMean}) {
      INFO("cost " << kdloss::to_string(cost) << " reduction " << kdloss::to_string(red));
      kdloss::Sinkhorn<T> sk(make_opts<T>(0.1, cost, 1.0, red));
      kdloss::RowMatrix<T> G = kdloss::RowMatrix<T>::Constant(n, v, T(7)), Gc(m, v);
      const T masked = sk(S, Tt, G, w);
      const kdloss::SinkhornInfo info = sk.info();
      const T compact = sk(Sc, Tc, Gc);
      CHECK(masked == compact);  // identical computation: the masked rows are simply not points
      CHECK(info.marginal_error == sk.info().marginal_error);
      for (long i = 0, k = 0; i < n; ++i) {
        if (w[i] == T(0)) {
          CHECK(G.row(i).cwiseAbs().maxCoeff() == T(0));
        } else {
          CHECK(G.row(i) == Gc.row(k));
          ++k;
        }
      }
      // accumulate: masked rows keep beta * old, valid rows alpha * grad + beta * old
      kdloss::RowMatrix<T> A = kdloss::RowMatrix<T>::Constant(n, v, T(1));
      const T acc = sk.accumulate(S, Tt, A, T(2), T(0.5), w);
      CHECK(std::fabs(static_cast<double>(acc - 2 * masked)) <= 4 * kdtest::eps<T>() * std::fabs(static_cast<double>(masked)));
      CHECK((A.row(1).array() == T(0.5)).all());
      CHECK((A.row(4).array() == T(0.5)).all());
      const double err = (A.row(2).template cast<double>() - (2 * G.row(2).template cast<double>()).array().matrix() -
                          kdloss::RowMatrix<double>::Constant(1, v, 0.5))
                             .cwiseAbs()
                             .maxCoeff();
      CHECK(err <= 8 * kdtest::eps<T>() * (2 * static_cast<double>(G.row(2).cwiseAbs().maxCoeff()) + 0.5));
    }
  // Every row masked, and N = 0: loss 0, gradient 0 (never NaN).
  kdloss::Sinkhorn<T> sk(make_opts<T>(0.1));
  kdloss::RowMatrix<T> G = kdloss::RowMatrix<T>::Constant(n, v, T(7));
  w.setZero();
  CHECK(sk(S, Tt, G, w) == T(0));
  CHECK(G.cwiseAbs().maxCoeff() == T(0));
  CHECK(sk.info().iterations_run == 0);
  CHECK(sk.plan().rows() == 0);
  const kdloss::RowMatrix<T> E(0, v);
  kdloss::RowMatrix<T> GE(0, v);
  CHECK(sk(E, E) == T(0));
  CHECK(sk(E, E, GE) == T(0));
}

TEMPLATE_TEST_CASE("Sinkhorn reductions, temperature scaling and accumulate", "[sinkhorn]", float, double) {
  using T = TestType;
  const long n = 9, v = 130;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(1900));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(1901));
  const double tol = 16 * kdtest::eps<T>();
  auto o = make_opts<T>(0.1, SinkhornCost::L1, 2.0, Reduction::Sum);
  kdloss::Sinkhorn<T> sum_loss(o);
  kdloss::RowMatrix<T> Gs(n, v), Gm(n, v), Gd(n, v), Gt(n, v), Ga(n, v);
  const double vs = static_cast<double>(sum_loss(S, Tt, Gs));
  const double gscale = static_cast<double>(Gs.cwiseAbs().maxCoeff());
  auto gdiff = [&](const kdloss::RowMatrix<T>& A, double c) {
    return (A.template cast<double>() - c * Gs.template cast<double>()).cwiseAbs().maxCoeff();
  };
  // BatchMean divides by the number of points, or by the explicit denominator.
  o.reduction = Reduction::BatchMean;
  const double vm = static_cast<double>(kdloss::Sinkhorn<T>(o)(S, Tt, Gm));
  CHECK(std::fabs(vm - vs / n) <= tol * std::fabs(vs / n));
  CHECK(gdiff(Gm, 1.0 / n) <= tol * gscale / n);
  o.denominator = T(37);
  const double vd = static_cast<double>(kdloss::Sinkhorn<T>(o)(S, Tt, Gd));
  CHECK(std::fabs(vd - vs / 37) <= tol * std::fabs(vs / 37));
  CHECK(gdiff(Gd, 1.0 / 37) <= tol * gscale / 37);
  o.denominator = T(0);
  // scale_by_t2 multiplies value and gradient by tau^2 once.
  o.reduction = Reduction::Sum;
  o.scale_by_t2 = true;
  const double vt = static_cast<double>(kdloss::Sinkhorn<T>(o)(S, Tt, Gt));
  CHECK(std::fabs(vt - 4 * vs) <= tol * 4 * std::fabs(vs));
  CHECK(gdiff(Gt, 4.0) <= tol * 4 * gscale);
  // accumulate: beta = 0 never reads the buffer (NaN garbage is fine); otherwise alpha dL + beta G.
  Ga.setConstant(std::numeric_limits<T>::quiet_NaN());
  const double va = static_cast<double>(sum_loss.accumulate(S, Tt, Ga, T(0.5), T(0)));
  CHECK(std::fabs(va - 0.5 * vs) <= tol * std::fabs(vs));
  CHECK(gdiff(Ga, 0.5) <= tol * gscale);
  const kdloss::RowMatrix<T> base = kdtest::random_logits<T>(n, v, kdtest::seed(1902), 0.01);
  Ga = base;
  sum_loss.accumulate(S, Tt, Ga, T(2), T(-0.5));
  const kdloss::RowMatrix<double> expect = 2 * Gs.template cast<double>() - 0.5 * base.template cast<double>();
  CHECK((Ga.template cast<double>() - expect).cwiseAbs().maxCoeff() <= tol * (expect.cwiseAbs().maxCoeff() + 1e-3));
}

TEMPLATE_TEST_CASE("Sinkhorn layouts: Map, blocks with outer stride, transposed column-major", "[sinkhorn]", float, double) {
  using T = TestType;
  const long n = 6, v = 300;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(2000));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(2001));
  kdloss::Sinkhorn<T> sk(make_opts<T>(0.1));
  kdloss::RowMatrix<T> G(n, v);
  const T ref_value = sk(S, Tt, G);
  std::vector<T> sbuf(S.data(), S.data() + S.size()), tbuf(Tt.data(), Tt.data() + Tt.size());
  std::vector<T> gbuf(static_cast<size_t>(n * v));
  Eigen::Map<const kdloss::RowMatrix<T>> Sm(sbuf.data(), n, v), Tm(tbuf.data(), n, v);
  Eigen::Map<kdloss::RowMatrix<T>> Gm(gbuf.data(), n, v);
  CHECK(sk(Sm, Tm, Gm) == ref_value);
  CHECK(Gm == G);
  kdloss::RowMatrix<T> Sw(n + 2, v + 5), Tw(n + 2, v + 9), Gw(n + 2, v + 3);
  Sw.setRandom();
  Tw.setRandom();
  Gw.setConstant(T(42));
  Sw.block(1, 0, n, v) = S;
  Tw.block(1, 0, n, v) = Tt;
  CHECK(sk(Sw.middleRows(1, n).leftCols(v), Tw.middleRows(1, n).leftCols(v), Gw.middleRows(1, n).leftCols(v)) == ref_value);
  CHECK(Gw.middleRows(1, n).leftCols(v) == G);
  CHECK(Gw.row(0).cwiseEqual(T(42)).all());
  CHECK(Gw.rightCols(3).cwiseEqual(T(42)).all());
  using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  const ColMajor Sc = S.transpose(), Tc = Tt.transpose();
  CHECK(sk(Sc.transpose(), Tc.transpose()) == ref_value);
}

TEMPLATE_TEST_CASE("Sinkhorn rejects bad options and input with messages naming them", "[sinkhorn]", float, double) {
  using T = TestType;
  using Catch::Contains;
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  auto bad = [](kdloss::SinkhornOptions<T> o) { kdloss::Sinkhorn<T> sk(o); };
  for (const T e : {T(0), T(-0.1), inf, nan, T(1e-120)}) {
    kdloss::SinkhornOptions<T> o;
    o.epsilon = e;
    CHECK_THROWS_AS(bad(o), std::invalid_argument);
    CHECK_THROWS_WITH(bad(o), Contains("kdloss::Sinkhorn") && Contains("epsilon"));
  }
  for (const int it : {0, -3}) {
    kdloss::SinkhornOptions<T> o;
    o.iterations = it;
    CHECK_THROWS_WITH(bad(o), Contains("kdloss::Sinkhorn") && Contains("iterations must be >= 1"));
  }
  for (const T tau : {T(0), T(-1), inf, nan}) {
    kdloss::SinkhornOptions<T> o;
    o.temperature = tau;
    CHECK_THROWS_WITH(bad(o), Contains("kdloss::Sinkhorn") && Contains("temperature"));
  }
  for (const double tol : {-1e-3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    kdloss::SinkhornOptions<T> o;
    o.tolerance = tol;
    CHECK_THROWS_WITH(bad(o), Contains("tolerance"));
  }
  {
    kdloss::SinkhornOptions<T> o;
    o.reduction = Reduction::None;
    CHECK_THROWS_WITH(bad(o), Contains("Reduction::None") && Contains("batch-wise"));
    o = {};
    o.denominator = T(-1);
    CHECK_THROWS_WITH(bad(o), Contains("denominator"));
    kdloss::Sinkhorn<T> sk;
    o = {};
    o.epsilon = T(0);
    CHECK_THROWS_WITH(sk.set_options(o), Contains("epsilon"));
    CHECK(sk.options().epsilon == T(0.1));  // unchanged
  }
  const long n = 3, v = 5;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, 1), Tt = kdtest::random_logits<T>(n, v, 2);
  kdloss::RowMatrix<T> G(n, v);
  kdloss::Sinkhorn<T> sk;
  // shapes
  const kdloss::RowMatrix<T> T4(n, v + 1);
  CHECK_THROWS_AS(sk(S, T4), std::invalid_argument);
  CHECK_THROWS_WITH(sk(S, T4), Contains("kdloss::Sinkhorn") && Contains("3x5") && Contains("3x6"));
  kdloss::RowMatrix<T> Gbad(n, v + 1);
  CHECK_THROWS_WITH(sk(S, Tt, Gbad), Contains("gradient is 3x6"));
  const kdloss::RowMatrix<T> Z(n, 0);
  CHECK_THROWS_WITH(sk(Z, Z), Contains("V = 0"));
  // weights: count, and only 0 or 1
  const kdloss::Vector<T> w2 = kdloss::Vector<T>::Ones(2);
  CHECK_THROWS_WITH(sk(S, Tt, G, w2), Contains("2 weights for 3 rows"));
  for (const T wb : {T(0.5), T(2), T(-1), nan}) {
    kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n);
    w[1] = wb;
    CHECK_THROWS_AS(sk(S, Tt, G, w), std::invalid_argument);
    CHECK_THROWS_WITH(sk(S, Tt, w), Contains("weight 1") && Contains("0 or 1"));
  }
  // logits: NaN, +inf, nothing finite, in a weighted row (student or teacher)
  for (int side = 0; side < 2; ++side) {
    const char* who = side == 0 ? "student" : "teacher";
    kdloss::RowMatrix<T> A = S, B = Tt;
    kdloss::RowMatrix<T>& X = side == 0 ? A : B;
    X(2, 3) = nan;
    CHECK_THROWS_AS(sk(A, B), std::domain_error);
    CHECK_THROWS_WITH(sk(A, B, G), Contains("row 2") && Contains(who) && Contains("NaN"));
    X(2, 3) = inf;
    CHECK_THROWS_WITH(sk(A, B), Contains("row 2") && Contains(who) && Contains("+inf"));
    X.row(2).setConstant(-inf);
    CHECK_THROWS_WITH(sk(A, B, G), Contains("row 2") && Contains("no finite entry"));
  }
  // -inf entries (masked vocabulary) are legal
  kdloss::RowMatrix<T> A = S, B = Tt;
  A(0, 1) = B(0, 1) = -inf;
  A(1, 2) = -inf;
  CHECK(std::isfinite(static_cast<double>(sk(A, B, G))));
  CHECK(G.allFinite());
  CHECK(G(0, 1) == T(0));
  CHECK(G(1, 2) == T(0));
  // the gradient may not alias an input
  kdloss::RowMatrix<T> S3 = S;
  CHECK_THROWS_WITH(sk(S3, Tt, S3), Contains("overlaps the student"));
  kdloss::RowMatrix<T> T3 = Tt;
  CHECK_THROWS_WITH(sk(S, T3, T3), Contains("overlaps the teacher"));
}

TEMPLATE_TEST_CASE("Sinkhorn is stable at tiny and large epsilon (log domain)", "[sinkhorn]", float, double) {
  using T = TestType;
  const long n = 16, v = 200;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(2100));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(2101));
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
  for (const double eps : {1.0, 1e-3}) {
    INFO("eps " << eps);
    for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2}) {
      kdloss::Sinkhorn<T> sk(make_opts<T>(eps, cost));
      kdloss::RowMatrix<T> G(n, v);
      const double value = static_cast<double>(sk(S, Tt, G));
      CHECK(std::isfinite(value));
      CHECK(value >= 0);
      CHECK(G.allFinite());
      CHECK(sk.plan().allFinite());
      CHECK(std::isfinite(sk.info().marginal_error));
      for (long j = 0; j < n; ++j) CHECK(std::fabs(sk.plan().col(j).sum() - 1) <= 8 * n * kdtest::eps<double>());
      // L = sum Pi W lies between the smallest and the largest cost of a row times the mass.
      CHECK(value <= sk.cost().maxCoeff() * static_cast<double>(n) * (1 + sk.info().marginal_error) + 1e-12);
    }
  }
  // SinKD's plain multiplicative iterations break at eps = 1e-3 (exp(-W/eps) underflows to 0 and
  // whole rows of K become 0: 0/0); the log-domain computation above does not.
  const auto r = kdtest::ref::sinkhorn(Sd.data(), Td.data(), n, v, 1.0, 1e-3, 20, true, true);
  CHECK(std::isnan(r.loss));
}

TEMPLATE_TEST_CASE("Sinkhorn allocates nothing after the first call at the largest shape", "[sinkhorn]", float, double) {
  using T = TestType;
  const long n = 70, v = 1100;  // more than one 64-row product block and several column chunks
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, 21), Tt = kdtest::random_logits<T>(n, v, 22);
  kdloss::RowMatrix<T> G(n, v);
  kdloss::Vector<T> w = kdloss::Vector<T>::Ones(n);
  w[3] = T(0);
  const kdloss::RowMatrix<T> Ss = S.topLeftCorner(5, 17), Ts = Tt.topLeftCorner(5, 17);
  kdloss::RowMatrix<T> Gsmall(5, 17);
  for (const SinkhornCost cost : {SinkhornCost::L1, SinkhornCost::SquaredL2})
    for (const SinkhornGradient gm : {SinkhornGradient::Exact, SinkhornGradient::Envelope}) {
      INFO("cost " << kdloss::to_string(cost) << " envelope " << (gm == SinkhornGradient::Envelope));
      auto o = make_opts<T>(0.1, cost, 1.0, Reduction::BatchMean, gm);
      kdloss::Sinkhorn<T> warm(o), reserved(o);
      T sink = warm(S, Tt, G);  // the first call at the largest shape grows the workspace
      reserved.reserve(n, v);   // or reserve() does
      {
        kdtest::NoAllocScope scope;
        for (kdloss::Sinkhorn<T>* sk : {&warm, &reserved}) {
          sink += (*sk)(S, Tt);
          sink += (*sk)(S, Tt, G);
          sink += (*sk)(S, Tt, G, w);
          sink += sk->accumulate(S, Tt, G, T(1), T(1), w);
          sink += (*sk)(Ss, Ts, Gsmall);
          sink += (*sk)(S.topRows(40), Tt.topRows(40), G.topRows(40));
        }
        CHECK(scope.count() == 0);
      }
      CHECK(std::isfinite(static_cast<double>(sink)));
      // the early stop runs inside the same workspace
      o.tolerance = 1e-6;
      warm.set_options(o);
      kdtest::NoAllocScope scope;
      sink += warm(S, Tt, G);
      CHECK(scope.count() == 0);
    }
}
