// Tests of kdloss::Taid: the interpolated-target loss and its schedule.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/taid.hpp>

#include "support/suite.hpp"

using kdtest::specs::Taid;
using Taid09 = kdtest::specs::TaidAt<900>;

KDTEST_PAIR_LOSS_SUITE_NO_FD(Taid, "Taid", "[taid]")
KDTEST_PAIR_LOSS_SUITE_NO_FD(Taid09, "Taid lambda 0.9", "[taid]")

namespace {
kdloss::TaidSchedule schedule(double t_start, long total_steps, double alpha = 5e-4, double beta = 0.99,
                              bool adaptive = true) {
  kdloss::TaidSchedule s;
  s.t_start = t_start;
  s.total_steps = total_steps;
  s.alpha = alpha;
  s.beta = beta;
  s.adaptive = adaptive;
  return s;
}
}  // namespace

TEST_CASE("Taid gradient equals finite differences with the target held fixed", "[taid]") {
  // The target's logits (1 - lambda) s + lambda t are formed once at the current s and frozen
  // (stop-gradient); the loss is then a plain KL(p_target || softmax(x / tau)) of x.
  for (const double lambda : {0.4, 0.75}) {
    for (const double tau : {1.0, 2.0}) {
      const long n = 3, v = 23;
      kdloss::RowMatrix<double> S = kdtest::random_logits<double>(n, v, kdtest::seed(2000), 2.0);
      const kdloss::RowMatrix<double> Tt = kdtest::random_logits<double>(n, v, kdtest::seed(2001), 2.0);
      kdloss::Options<double> o;
      o.temperature = tau;
      o.scale_by_t2 = true;
      const kdloss::Taid<double> taid(o, schedule(lambda, 100));
      kdloss::Vector<double> w(n);
      w << 1.0, 0.0, 3.0;
      kdloss::RowMatrix<double> G(n, v);
      taid(S, Tt, G, w);
      kdloss::RowMatrix<double> Z(n, v);
      for (long i = 0; i < n; ++i) {
        const auto z = kdtest::ref::taid_target(S.row(i).data(), Tt.row(i).data(), v, lambda);
        for (long j = 0; j < v; ++j) Z(i, j) = z[static_cast<size_t>(j)];
      }
      const double c = tau * tau / w.sum();
      auto fixed = [&](const kdloss::RowMatrix<double>& x) {
        double total = 0;
        for (long i = 0; i < n; ++i)
          if (w[i] != 0) total += w[i] * c * kdtest::ref::forward_kl(x.row(i).data(), Z.row(i).data(), v, tau).value;
        return total;
      };
      double worst = 0;
      for (long i = 0; i < n; ++i) {
        for (long j = 0; j < v; ++j) {
          const double x0 = S(i, j), h = 1e-5 * std::max(1.0, std::fabs(x0));
          S(i, j) = x0 + h;
          const double fp = fixed(S);
          S(i, j) = x0 - h;
          const double fm = fixed(S);
          S(i, j) = x0;
          const double fd = (fp - fm) / (2 * h);
          INFO("lambda " << lambda << " tau " << tau << " entry (" << i << "," << j << "): analytic " << G(i, j)
                         << " fd " << fd);
          CHECK(std::fabs(G(i, j) - fd) <= 1e-8 + 1e-6 * std::fabs(fd));
          worst = std::max(worst, std::fabs(G(i, j) - fd));
        }
      }
      kdtest::report("kdloss::Taid finite-difference max abs error", worst);
    }
  }
}

TEMPLATE_TEST_CASE("Taid at lambda 1 is ForwardKL and at lambda 0 is zero", "[taid]", float, double) {
  using T = TestType;
  const long n = 4, v = 3001;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(2100));
  kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(2101));
  Tt(1, 5) = -std::numeric_limits<T>::infinity();
  kdloss::Options<T> o;
  o.temperature = T(1.5);
  const kdloss::Taid<T> one(o, schedule(1.0, 10));
  const kdloss::ForwardKL<T> fkl(o);
  kdloss::RowMatrix<T> G1(n, v), G2(n, v);
  CHECK(one(S, Tt, G1) == fkl(S, Tt, G2));
  CHECK(G1 == G2);
  // lambda reached 1 through the schedule: the same.
  kdloss::Taid<T> moving(o, schedule(0.4, 2, 5e-4, 0.99, false));
  for (const double loss : {3.0, 2.0, 1.5}) moving.advance(loss);
  CHECK(moving.lambda() == 1.0);
  CHECK(moving(S, Tt, G1) == fkl(S, Tt, G2));
  CHECK(G1 == G2);
  // lambda 0: the target is the student itself.
  const kdloss::Taid<T> zero(o, schedule(0.0, 10));
  CHECK(zero(S, Tt, G1) == T(0));
  CHECK(G1.cwiseAbs().maxCoeff() == T(0));
}

TEST_CASE("Taid's schedule follows a hand-computed sequence", "[taid]") {
  const double losses[] = {2.0, 1.8, 1.7, 1.75, 1.5, 1.5, 1.4};
  // alpha 0.5, beta 0.9, 100 steps: the adaptive term leads. By hand, call 1:
  // delta = (2 - 1.8) / 2 = 0.1, m = 0.1 * 0.1 = 0.01, floor = 0.4 + 0.6 / 100 = 0.406,
  // lambda = 0.4 + 0.5 * sigmoid(0.01) * 0.6 = 0.55074999375...; later calls likewise (python).
  {
    kdloss::Taid<float> taid({}, schedule(0.4, 100, 0.5, 0.9));
    const double lam[] = {0.4, 0.5507499937500625, 0.663879866309665, 0.7483367192019026,
                          0.8119895222280837, 0.859487666991088, 0.8950661356956102};
    const double mom[] = {0, 0.01, 0.014555555555555547, 0.010158823529411758, 0.023428655462184856,
                          0.02108578991596637, 0.025643877591036396};
    CHECK(taid.lambda() == 0.4);
    for (int g = 0; g < 7; ++g) {
      INFO("call " << g);
      CHECK(taid.advance(losses[g]) == Approx(lam[g]).epsilon(1e-14));
      CHECK(taid.momentum() == Approx(mom[g]).epsilon(1e-13).margin(1e-300));
      CHECK(taid.step() == g + 1);
    }
  }
  // Default alpha and beta over 4 steps: the linear floor leads and caps at t_end.
  {
    kdloss::Taid<float> taid({}, schedule(0.4, 4));
    const double lam[] = {0.4, 0.55, 0.7, 0.85, 1.0, 1.0, 1.0};
    for (int g = 0; g < 7; ++g) CHECK(taid.advance(losses[g]) == Approx(lam[g]).epsilon(1e-14));
    CHECK(taid.momentum() == Approx(0.003266081964885996).epsilon(1e-12));
  }
  // Not adaptive: the floor alone (capped at t_end past total_steps, where the reference would
  // extrapolate beyond the teacher).
  {
    kdloss::Taid<float> taid({}, schedule(0.4, 4, 5e-4, 0.99, false));
    const double lam[] = {0.4, 0.55, 0.7, 0.85, 1.0, 1.0, 1.0};
    for (int g = 0; g < 7; ++g) CHECK(taid.advance(losses[g]) == Approx(lam[g]).epsilon(1e-14));
  }
  // A long run against the transcription of the reference's update_t.
  {
    kdloss::Taid<float> taid({}, schedule(0.2, 500, 0.01, 0.95));
    kdtest::ref::TaidScheduleRef ref;
    ref.t_start = ref.t = 0.2, ref.total_steps = 500, ref.alpha = 0.01, ref.beta = 0.95;
    std::mt19937 gen(kdtest::seed(2200));
    std::uniform_real_distribution<double> u(0.9, 1.05);
    double loss = 5;
    for (long g = 0; g < 600; ++g) {
      loss *= u(gen);
      ref.update(loss, g);
      taid.advance(loss);
      INFO("step " << g);
      CHECK(taid.lambda() == Approx(std::min(ref.t, 1.0)).epsilon(1e-12));
      CHECK(taid.momentum() == Approx(ref.m).epsilon(1e-12).margin(1e-15));
    }
  }
}

TEST_CASE("Taid's state saves and restores", "[taid]") {
  kdloss::Taid<float> a({}, schedule(0.3, 50, 0.05, 0.9));
  double loss = 4;
  for (int g = 0; g < 10; ++g) a.advance(loss *= 0.95);
  const kdloss::TaidState saved = a.state();
  std::vector<double> next;
  for (int g = 0; g < 5; ++g) next.push_back(a.advance(loss *= 0.97));
  kdloss::Taid<float> b({}, schedule(0.3, 50, 0.05, 0.9));
  b.set_state(saved);
  CHECK(b.lambda() == saved.lambda);
  CHECK(b.momentum() == saved.momentum);
  CHECK(b.step() == 10);
  loss = 4;
  for (int g = 0; g < 10; ++g) loss *= 0.95;
  for (int g = 0; g < 5; ++g) CHECK(b.advance(loss *= 0.97) == next[static_cast<size_t>(g)]);
  // The loss uses the lambda of the state.
  const kdloss::RowMatrix<float> S = kdtest::random_logits<float>(2, 50, 1), Tt = kdtest::random_logits<float>(2, 50, 2);
  CHECK(a(S, Tt) == b(S, Tt));
}

TEST_CASE("Taid rejects bad schedules, states and losses", "[taid]") {
  using Catch::Contains;
  auto make = [](kdloss::TaidSchedule s) { return kdloss::Taid<float>({}, s); };
  kdloss::TaidSchedule s = schedule(0.4, 100);
  s.t_start = 0.9;
  s.t_end = 0.8;
  CHECK_THROWS_AS(make(s), std::invalid_argument);
  CHECK_THROWS_WITH(make(s), Contains("Taid") && Contains("t_start") && Contains("greater than t_end"));
  s = schedule(0.4, 0);
  CHECK_THROWS_WITH(make(s), Contains("total_steps"));
  s = schedule(0.4, -3);
  CHECK_THROWS_WITH(make(s), Contains("total_steps"));
  s = schedule(-0.1, 10);
  CHECK_THROWS_WITH(make(s), Contains("t_start"));
  s = schedule(0.4, 10);
  s.t_end = 1.5;
  CHECK_THROWS_WITH(make(s), Contains("t_end"));
  s = schedule(0.4, 10, 2.0);
  CHECK_THROWS_WITH(make(s), Contains("alpha"));
  s = schedule(0.4, 10, 5e-4, 1.0);
  CHECK_THROWS_WITH(make(s), Contains("beta"));
  s = schedule(0.4, 10);
  s.t_start = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(make(s), Contains("t_start"));
  kdloss::Taid<float> taid({}, schedule(0.4, 10));
  CHECK_THROWS_WITH(taid.advance(std::numeric_limits<double>::quiet_NaN()), Contains("finite loss"));
  CHECK_THROWS_WITH(taid.advance(std::numeric_limits<double>::infinity()), Contains("finite loss"));
  CHECK(taid.step() == 0);
  kdloss::TaidState st;
  st.lambda = 1.2;
  CHECK_THROWS_WITH(taid.set_state(st), Contains("lambda"));
  st.lambda = 0.5;
  st.step = -1;
  CHECK_THROWS_WITH(taid.set_state(st), Contains("step"));
}
