// The primitive set of this binary's instruction set: tails, selects, reductions, NaN semantics,
// rounding and exact power-of-two scaling.
// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>
#include <cmath>
#include <kdloss/simd/simd.hpp>
#include <limits>
#include <vector>

namespace {
namespace simd = kdloss::simd;
using Arch = simd::best_arch;
#define KDLOSS_STR2(x) #x
#define KDLOSS_STR(x) KDLOSS_STR2(x)
}  // namespace

TEST_CASE("the binary runs the instruction set it was built for", "[simd]") {
  CHECK(std::string(Arch::name) == KDLOSS_STR(KDLOSS_TEST_EXPECT_ARCH));
}

TEMPLATE_TEST_CASE("partial loads fill and partial stores never write past the tail", "[simd]", float, double) {
  using T = TestType;
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  for (int n = 0; n <= W; ++n) {
    std::vector<T> src(static_cast<size_t>(n) + 1), dst(W + 1, T(-7));
    for (int i = 0; i < n; ++i) src[static_cast<size_t>(i)] = T(i + 1);
    T lanes[W];
    B::load_partial(src.data(), n, T(99)).store(lanes);
    for (int i = 0; i < W; ++i) CHECK(lanes[i] == (i < n ? T(i + 1) : T(99)));
    B::splat(T(5)).store_partial(dst.data(), n);
    for (int i = 0; i <= W; ++i) CHECK(dst[static_cast<size_t>(i)] == (i < n ? T(5) : T(-7)));
  }
}

TEMPLATE_TEST_CASE("arithmetic and comparisons and select and reductions", "[simd]", float, double) {
  using T = TestType;
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  T a[W], b[W], out[W];
  for (int i = 0; i < W; ++i) a[i] = T(i) - T(1.5), b[i] = T(2 * i % 5);
  const B va = B::load(a), vb = B::load(b);
  fma(va, vb, B::splat(T(1))).store(out);
  for (int i = 0; i < W; ++i) CHECK(out[i] == a[i] * b[i] + T(1));
  fnma(va, vb, B::splat(T(1))).store(out);
  for (int i = 0; i < W; ++i) CHECK(out[i] == T(1) - a[i] * b[i]);
  select(va > vb, va, vb).store(out);
  for (int i = 0; i < W; ++i) CHECK(out[i] == std::max(a[i], b[i]));
  abs(va).store(out);
  for (int i = 0; i < W; ++i) CHECK(out[i] == std::fabs(a[i]));
  double sum = 0;
  T mx = -std::numeric_limits<T>::infinity();
  for (int i = 0; i < W; ++i) sum += static_cast<double>(a[i]), mx = std::max(mx, a[i]);
  CHECK(static_cast<double>(hsum(va)) == Approx(sum));
  CHECK(hsum_wide(va) == sum);
  CHECK(hmax(va) == mx);
  CHECK(any(va > B::splat(T(-100))));
  CHECK_FALSE(any(va > B::splat(T(1e6))));
  CHECK(any((va > B::splat(T(-100))) & ~(vb > B::splat(T(1e6)))));
}

TEMPLATE_TEST_CASE("max/min return the second operand on NaN (the kernels rely on it)", "[simd]", float, double) {
  using T = TestType;
  using B = simd::batch<T, Arch>;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  T out[B::size];
  max(B::splat(nan), B::splat(T(3))).store(out);
  CHECK(out[0] == T(3));
  max(B::splat(T(3)), B::splat(nan)).store(out);
  CHECK(std::isnan(out[0]));
  min(B::splat(nan), B::splat(T(3))).store(out);
  CHECK(out[0] == T(3));
  min(B::splat(T(3)), B::splat(nan)).store(out);
  CHECK(std::isnan(out[0]));
  // Comparisons are ordered except !=.
  CHECK_FALSE(any(B::splat(nan) == B::splat(nan)));
  CHECK(any(B::splat(nan) != B::splat(nan)));
  CHECK_FALSE(any(B::splat(nan) < B::splat(T(1))));
}

TEMPLATE_TEST_CASE("round_nearest ties to even; ldexp2 scales exactly", "[simd]", float, double) {
  using T = TestType;
  using B = simd::batch<T, Arch>;
  T out[B::size];
  for (const double x : {0.5, 1.5, 2.5, -0.5, -1.5, 3.49, -150.2, 128.7}) {
    round_nearest(B::splat(T(x))).store(out);
    CHECK(out[0] == std::nearbyint(T(x)));
  }
  const int lo = std::is_same<T, float>::value ? -150 : -1075;
  const int hi = std::is_same<T, float>::value ? 129 : 1025;
  for (int n = lo; n <= hi; ++n) {
    for (const double p : {1.0, 0.7071067811865476, 1.4142135623730951, 0.9999999}) {
      ldexp2(B::splat(T(p)), B::splat(T(n))).store(out);
      INFO("p=" << p << " n=" << n);
      CHECK(out[0] == std::ldexp(T(p), n));
    }
  }
}
