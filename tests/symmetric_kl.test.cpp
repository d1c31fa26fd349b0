// Tests of kdloss::SymmetricKL: the standard contract at several weights, per-row weights, limits.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/forward_kl.hpp>
#include <kdloss/reverse_kl.hpp>
#include <kdloss/symmetric_kl.hpp>

#include "support/reference_seed.hpp"
#include "support/suite.hpp"

namespace {
template <int WfX10, int WrX10>
struct SklSpec {
  static constexpr const char* name = "kdloss::SymmetricKL";
  static constexpr double wf = WfX10 / 10.0, wr = WrX10 / 10.0;
  template <class T, class Arch = kdloss::simd::best_arch>
  static kdloss::SymmetricKL<T, Arch> make(const kdloss::Options<T>& o) {
    return kdloss::SymmetricKL<T, Arch>(o, wf, wr);
  }
  static kdtest::ref::Row row(const double* s, const double* t, long v, double tau) {
    return kdtest::ref::weighted_kl(s, t, v, tau, wf, wr);
  }
};
using Sym = SklSpec<5, 5>;       // torchtune's default ratio
using SymDistillm = SklSpec<1, 9>;  // DistiLLM's lam = 0.9
using SymUneven = SklSpec<20, 3>;
}  // namespace

KDTEST_PAIR_LOSS_SUITE(Sym, "SymmetricKL", "[symmetric_kl]")
KDTEST_PAIR_LOSS_SUITE(SymDistillm, "SymmetricKL DistiLLM weights", "[symmetric_kl]")
KDTEST_PAIR_LOSS_SUITE(SymUneven, "SymmetricKL uneven weights", "[symmetric_kl]")
TEMPLATE_TEST_CASE("SymmetricKL with maxima rising along the row", "[symmetric_kl]", float, double) {
  kdtest::check_rising_maxima<Sym, TestType>(kdtest::seed(700));
  kdtest::check_rising_maxima<SymUneven, TestType>(kdtest::seed(701));
}

TEMPLATE_TEST_CASE("SymmetricKL with per-row weights", "[symmetric_kl]", float, double) {
  using T = TestType;
  const long n = 5, v = 1271;
  const kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, kdtest::seed(6000));
  const kdloss::RowMatrix<T> Tt = kdtest::random_logits<T>(n, v, kdtest::seed(6001));
  kdloss::Vector<T> wf(n), wr(n);
  wf << T(1), T(0), T(0.3), T(2), T(0.5);
  wr << T(0), T(1), T(0.7), T(0.5), T(0.5);
  kdloss::Options<T> o;
  o.reduction = kdloss::Reduction::None;
  const kdloss::SymmetricKL<T> base(o);
  const auto rows_loss = base.with_row_weights(wf, wr);
  kdloss::Vector<T> rows(n);
  kdloss::RowMatrix<T> G(n, v);
  rows_loss.per_row(S, Tt, rows, G);
  for (long i = 0; i < n; ++i) {
    INFO("row " << i);
    const kdloss::RowMatrix<T> Si = S.row(i), Ti = Tt.row(i);
    kdloss::Vector<T> one(1);
    kdloss::RowMatrix<T> Gi(1, v);
    kdloss::SymmetricKL<T>(o, static_cast<double>(wf[i]), static_cast<double>(wr[i])).per_row(Si, Ti, one, Gi);
    CHECK(rows[i] == one[0]);
    CHECK(G.row(i) == Gi.row(0));
  }
  // w_r = 0 is exactly ForwardKL and w_f = 0 exactly ReverseKL.
  kdloss::RowMatrix<T> G1(n, v), G2(n, v);
  CHECK(kdloss::SymmetricKL<T>({}, 1.0)(S, Tt, G1) == kdloss::ForwardKL<T>()(S, Tt, G2));
  CHECK(G1 == G2);
  CHECK(kdloss::SymmetricKL<T>({}, 0.0)(S, Tt, G1) == kdloss::ReverseKL<T>()(S, Tt, G2));
  CHECK(G1 == G2);
  // the DistiLLM convention
  CHECK(kdloss::SymmetricKL<T>::distillm().forward_weight() == Approx(0.1));
  CHECK(kdloss::SymmetricKL<T>::distillm().reverse_weight() == Approx(0.9));
  // bad weights
  using Catch::Contains;
  CHECK_THROWS_WITH(kdloss::SymmetricKL<T>({}, 1.5), Contains("forward_weight"));
  CHECK_THROWS_WITH(kdloss::SymmetricKL<T>({}, 1.0, -1.0), Contains("weights"));
  kdloss::Vector<T> bad = wf;
  bad[2] = T(-1);
  CHECK_THROWS_WITH(base.with_row_weights(bad, wr).per_row(S, Tt, rows), Contains("row 2"));
  const kdloss::Vector<T> short_w(3);
  CHECK_THROWS_WITH(base.with_row_weights(short_w, wr).per_row(S, Tt, rows), Contains("3 forward"));
  // a masked teacher entry under student mass: with w_r = 0 the loss is forward KL (finite
  // gradient); with w_r > 0 the gradient is unbounded.
  kdloss::RowMatrix<T> Tm = Tt;
  Tm(0, 3) = -std::numeric_limits<T>::infinity();
  CHECK_NOTHROW(kdloss::SymmetricKL<T>({}, 1.0, 0.0)(S, Tm, G1));
  CHECK_THROWS_WITH(kdloss::SymmetricKL<T>()(S, Tm, G1), Contains("unbounded"));
}
