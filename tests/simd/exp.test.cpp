// The vector exp of this binary's instruction set against std::exp: ULP error over the whole float
// range, a dense double sample, and the special values.
// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <kdloss/simd/simd.hpp>
#include <limits>
#include <random>

namespace {
namespace simd = kdloss::simd;
using Arch = simd::best_arch;

// Distance in units in the last place: floats mapped to a monotonic integer line.
std::int64_t ordinal(float f) {
  std::int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i < 0 ? std::int64_t{INT32_MIN} - i : i;
}
std::int64_t ordinal(double d) {
  std::int64_t i;
  std::memcpy(&i, &d, sizeof i);
  return i < 0 ? std::numeric_limits<std::int64_t>::min() - i : i;
}
template <class T>
std::int64_t ulp_distance(T a, T b) {
  const std::int64_t x = ordinal(a), y = ordinal(b);
  return x > y ? x - y : y - x;
}

// The floats whose bit patterns are u, u + stride, ... (capped at `last`), one per lane.
template <int W>
void fill_bits(float (&in)[W], std::uint64_t u, std::uint64_t stride, std::uint64_t last = 0xFFFFFFFFu) {
  for (int l = 0; l < W; ++l) {
    const auto bits = static_cast<std::uint32_t>(std::min<std::uint64_t>(u + static_cast<std::uint64_t>(l) * stride, last));
    std::memcpy(&in[l], &bits, sizeof bits);
  }
}

// f of a vector holding y in every lane: its first lane.
template <class B, class F>
typename B::value_type splat_call(typename B::value_type y, F f) {
  typename B::value_type v[B::size], o[B::size];
  for (int l = 0; l < B::size; ++l) v[l] = y;
  f(B::load(v)).store(o);
  return o[0];
}

template <class T>
T vexp_one(T x) {
  using B = simd::batch<T, Arch>;
  T in[B::size], out[B::size];
  for (int l = 0; l < B::size; ++l) in[l] = x;
  simd::exp(B::load(in)).store(out);
  return out[B::size - 1];
}
}  // namespace

TEST_CASE("vector exp (float) is within 1 ulp of std::exp over the whole float range", "[simd][exp]") {
  using B = simd::batch<float, Arch>;
  INFO("instruction set " << Arch::name);
  // Every 61st bit pattern of all 2^32 (70 million floats: every exponent, every sign, NaNs,
  // subnormal inputs and results, overflow), W lanes at a time.
  constexpr std::uint64_t kStride = 61;
  float in[B::size], out[B::size];
  std::int64_t worst = 0;
  float worst_x = 0;
  long nan_bad = 0;
  for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += kStride * B::size) {
    fill_bits(in, u, kStride);
    simd::exp(B::load(in)).store(out);
    for (int l = 0; l < B::size; ++l) {
      if (std::isnan(in[l])) {
        nan_bad += !std::isnan(out[l]);
        continue;
      }
      const std::int64_t d = ulp_distance(out[l], std::exp(in[l]));
      if (d > worst) worst = d, worst_x = in[l];
    }
  }
  INFO("worst at x = " << worst_x << ": " << vexp_one(worst_x) << " vs " << std::exp(worst_x));
  CHECK(worst <= 1);
  CHECK(nan_bad == 0);
}

TEST_CASE("vector exp (double) is within 1 ulp of std::exp", "[simd][exp]") {
  std::mt19937_64 gen(12345);
  std::uniform_real_distribution<double> range(-746.0, 710.0), small(-1.0, 1.0);
  std::int64_t worst = 0;
  double worst_x = 0;
  for (int k = 0; k < 2000000; ++k) {
    const double x = k % 4 == 0 ? small(gen) : range(gen);
    const std::int64_t d = ulp_distance(vexp_one(x), std::exp(x));
    if (d > worst) worst = d, worst_x = x;
  }
  INFO("worst at x = " << worst_x);
  CHECK(worst <= 1);
}

TEMPLATE_TEST_CASE("vector exp special values", "[simd][exp]", float, double) {
  using T = TestType;
  const T inf = std::numeric_limits<T>::infinity();
  CHECK(vexp_one(-inf) == T(0));
  CHECK(vexp_one(inf) == inf);
  CHECK(vexp_one(T(0)) == T(1));
  CHECK(vexp_one(-T(0)) == T(1));
  CHECK(std::isnan(vexp_one(std::numeric_limits<T>::quiet_NaN())));
  CHECK(vexp_one(std::numeric_limits<T>::lowest()) == T(0));
  CHECK(vexp_one(std::numeric_limits<T>::max()) == inf);
  // Largest finite result, the first overflowing input, subnormal results, underflow to 0.
  const T big = std::is_same<T, float>::value ? T(88.7) : T(709.7);
  CHECK(std::isfinite(vexp_one(big)));
  CHECK(ulp_distance(vexp_one(big), std::exp(big)) <= 1);
  const T over = std::is_same<T, float>::value ? T(88.73) : T(709.79);
  CHECK(vexp_one(over) == inf);
  const T sub = std::is_same<T, float>::value ? T(-95.5) : T(-725.5);
  CHECK(std::fpclassify(vexp_one(sub)) == FP_SUBNORMAL);
  CHECK(ulp_distance(vexp_one(sub), std::exp(sub)) <= 1);
  const T tiny = std::is_same<T, float>::value ? T(-103.9) : T(-745.1);
  CHECK(vexp_one(tiny) == std::exp(tiny));  // the least subnormal
  const T zero = std::is_same<T, float>::value ? T(-104.5) : T(-745.2);
  CHECK(vexp_one(zero) == T(0));
}

TEST_CASE("kernel exp2 (float, y <= 64) is within 3 ulp of std::exp2", "[simd][exp]") {
  using B = simd::batch<float, Arch>;
  INFO("instruction set " << Arch::name);
  // Every float in [-160, 0] (about 1.1 billion values) with a stride: 18 million values.
  float in[B::size], out[B::size];
  std::int64_t worst = 0;
  float worst_y = 0;
  double worst_sub = 0;
  const std::uint32_t lo = 0x80000000u, hi = 0xC3200000u;  // -0 .. -160
  for (std::uint64_t u = lo; u <= hi; u += 61u * B::size) {
    fill_bits(in, u, 61u, hi);
    simd::exp2_nonpositive(B::load(in)).store(out);
    for (int l = 0; l < B::size; ++l) {
      const float ref = std::exp2(in[l]);
      if (ref >= std::numeric_limits<float>::min()) {
        const std::int64_t d = ulp_distance(out[l], ref);
        if (d > worst) worst = d, worst_y = in[l];
      } else {  // subnormal results: the 3-ulp relative bound of FLT_MIN, plus the final rounding
        worst_sub = std::max(worst_sub, std::fabs(static_cast<double>(out[l]) - static_cast<double>(ref)));
      }
    }
  }
  // Pass 1 of the kernels takes exponentials relative to the maxima of the blocks before, which a
  // block may exceed: (0, 64] holds the same bound.
  for (std::uint64_t u = 1; u <= 0x42800000u; u += 61u * B::size) {
    fill_bits(in, u, 61u, 0x42800000u);
    simd::exp2_nonpositive(B::load(in)).store(out);
    for (int l = 0; l < B::size; ++l) {
      const std::int64_t d = ulp_distance(out[l], std::exp2(in[l]));
      if (d > worst) worst = d, worst_y = in[l];
    }
  }
  INFO("worst at y = " << worst_y);
  CHECK(worst <= 3);
  CHECK(worst_sub <= 4 * static_cast<double>(std::numeric_limits<float>::denorm_min()));
  auto one = [](B::value_type y) { return splat_call<B>(y, [](B v) { return simd::exp2_nonpositive(v); }); };
  CHECK(one(0.0f) == 1.0f);  // p = 1 exactly for a one-hot row
  CHECK(one(-1.0f) == 0.5f);
  CHECK(one(-std::numeric_limits<float>::infinity()) == 0.0f);  // masked entries are exactly 0
  CHECK(one(64.0f) == 0x1p64f);
  (void)one(std::numeric_limits<float>::infinity());  // defined (pass 1 discards it), no trap
  CHECK(one(-1e30f) == 0.0f);
  CHECK(std::isnan(one(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("exp2 for any y (float) is within 3 ulp of std::exp2 over the whole float range", "[simd][exp]") {
  // The powers x^c = 2^(c log2 x) of either sign of c (AlphaBeta's general case): every float
  // with a stride (11 million values), the kernels' exponential's bound where the result is a
  // normal float, +inf from y = 128 on, and the very value of exp2_nonpositive wherever that one
  // is defined (y <= 64).
  using B = simd::batch<float, Arch>;
  INFO("instruction set " << Arch::name);
  float in[B::size], out[B::size], kernel[B::size];
  std::int64_t worst = 0;
  float worst_y = 0;
  double worst_sub = 0;
  long nan_bad = 0, overflow_bad = 0, kernel_differs = 0;
  for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 389u * B::size) {
    fill_bits(in, u, 389u);
    simd::exp2(B::load(in)).store(out);
    simd::exp2_nonpositive(B::load(in)).store(kernel);
    for (int l = 0; l < B::size; ++l) {
      const float ref = std::exp2(in[l]);
      if (std::isnan(in[l])) {
        nan_bad += !std::isnan(out[l]);
        continue;
      }
      if (in[l] <= 64.0f) kernel_differs += std::memcmp(&out[l], &kernel[l], sizeof(float)) != 0;
      if (in[l] >= 128.0f) {
        overflow_bad += out[l] != std::numeric_limits<float>::infinity();
      } else if (ref >= std::numeric_limits<float>::min()) {
        const std::int64_t d = ulp_distance(out[l], ref);
        if (d > worst) worst = d, worst_y = in[l];
      } else {  // subnormal results, as the kernels' exponential's test bounds them
        worst_sub = std::max(worst_sub, std::fabs(static_cast<double>(out[l]) - static_cast<double>(ref)));
      }
    }
  }
  INFO("worst at y = " << worst_y);
  CHECK(worst <= 3);
  CHECK(worst_sub <= 4 * static_cast<double>(std::numeric_limits<float>::denorm_min()));
  CHECK(nan_bad == 0);
  CHECK(overflow_bad == 0);
  CHECK(kernel_differs == 0);
  auto one = [](B::value_type y) { return splat_call<B>(y, [](B v) { return simd::exp2(v); }); };
  constexpr float inf = std::numeric_limits<float>::infinity();
  CHECK(one(-inf) == 0.0f);
  CHECK(one(inf) == inf);
  CHECK(one(0.0f) == 1.0f);
  CHECK(one(100.0f) == 0x1p100f);
  CHECK(one(127.5f) == std::exp2(127.5f));
  CHECK(one(1e30f) == inf);
  CHECK(std::isnan(one(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("exp2_unbounded (float) is the kernel exponential wherever its result is finite", "[simd][exp]") {
  // Pass 1 sweeps a block with it and keeps the block's sums only where they are finite: so for
  // every y <= 64 its result must be exp2_nonpositive's, bit for bit, or not finite, and not
  // finite only where no ordinary logit gets (-inf, NaN, or finite y below -2^80).
  using B = simd::batch<float, Arch>;
  INFO("instruction set " << Arch::name << (simd::has_exp2_unbounded<B> ? " (unbounded)" : " (the bounded form)"));
  float in[B::size], out[B::size], kernel[B::size];
  long differs = 0, bad_nonfinite = 0, checked = 0;
  for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 97u * B::size) {
    fill_bits(in, u, 97u);
    simd::exp2_unbounded(B::load(in)).store(out);
    simd::exp2_nonpositive(B::load(in)).store(kernel);
    for (int l = 0; l < B::size; ++l) {
      if (!(in[l] <= 64.0f) || std::isinf(in[l])) continue;  // NaN, above the kernels' range, -inf
      ++checked;
      if (std::isfinite(out[l]))
        differs += std::memcmp(&out[l], &kernel[l], sizeof(float)) != 0;
      else
        bad_nonfinite += in[l] >= -0x1p80f;
    }
  }
  CHECK(checked > 10000000);
  CHECK(differs == 0);
  CHECK(bad_nonfinite == 0);
  auto one = [](B::value_type y) { return splat_call<B>(y, [](B v) { return simd::exp2_unbounded(v); }); };
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float at_ninf = one(-inf);  // 0, or NaN (the table's scalef of NaN by -inf, by processor)
  CHECK((std::isnan(at_ninf) || at_ninf == 0.0f));
  CHECK(one(-160.0f) == 0.0f);
  CHECK(one(-1e6f) == 0.0f);
  CHECK(one(-0x1p79f) == 0.0f);
  CHECK(one(0.0f) == 1.0f);
  CHECK(one(64.0f) == 0x1p64f);
  CHECK(std::isnan(one(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("exp2 for any y (double) is the full-range exponential", "[simd][exp]") {
  using B = simd::batch<double, Arch>;
  auto one = [](B::value_type y) { return splat_call<B>(y, [](B v) { return simd::exp2(v); }); };
  // e^(y ln 2): the product's rounding, relative |y| ln 2 eps, bounds the error, not the exp.
  for (const double y : {-1000.5, -3.25, 0.0, 0.5, 100.0, 1000.25, 1023.5}) {
    INFO("y = " << y);
    const double ref = std::exp2(y);
    CHECK(std::fabs(one(y) - ref) <= (std::fabs(y) + 2) * 2 * std::numeric_limits<double>::epsilon() * ref);
  }
  constexpr double inf = std::numeric_limits<double>::infinity();
  CHECK(one(1024.5) == inf);
  CHECK(one(inf) == inf);
  CHECK(one(-inf) == 0.0);
  CHECK(std::isnan(one(std::numeric_limits<double>::quiet_NaN())));
}

TEST_CASE("vector log, log2 and expm1 (float) over the whole float range", "[simd][log]") {
  using B = simd::batch<float, Arch>;
  float in[B::size], out[B::size], out_nn[B::size], out_2[B::size], out_lo[B::size];
  std::int64_t worst_log = 0, worst_expm1 = 0, worst_log2 = 0;
  float at_log = 0, at_expm1 = 0, at_log2 = 0;
  long nan_bad = 0, nn_differs = 0, at_least_differs = 0;
  for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 97u * B::size) {
    fill_bits(in, u, 97u);
    simd::log(B::load(in)).store(out);
    simd::log_nonnegative(B::load(in)).store(out_nn);
    simd::log2_nonnegative(B::load(in)).store(out_2);
    simd::log2_at_least(B::load(in), B::splat(-130.0f)).store(out_lo);
    for (int l = 0; l < B::size; ++l) {
      const float ref = std::log(in[l]);
      if (std::isnan(ref)) {
        nan_bad += !std::isnan(out[l]);
      } else if (const std::int64_t d = ulp_distance(out[l], ref); d > worst_log) {
        worst_log = d, at_log = in[l];
      }
      // Where its argument is allowed (finite, >= 0), log_nonnegative is log without the guards.
      if (in[l] >= 0 && std::isfinite(in[l])) {
        nn_differs += std::memcmp(&out[l], &out_nn[l], sizeof(float)) != 0;
        // log2_nonnegative on its domain, against the correctly rounded base-2 log.
        const auto ref2 = static_cast<float>(std::log2(static_cast<double>(in[l])));
        if (const std::int64_t d = ulp_distance(out_2[l], ref2); d > worst_log2) worst_log2 = d, at_log2 = in[l];
        const float bounded = std::max(out_2[l], -130.0f);  // log2_at_least is that, bit for bit
        at_least_differs += std::memcmp(&out_lo[l], &bounded, sizeof(float)) != 0;
      }
    }
    simd::expm1(B::load(in)).store(out);
    for (int l = 0; l < B::size; ++l) {
      const float ref = std::expm1(in[l]);
      if (std::isnan(ref)) {
        nan_bad += !std::isnan(out[l]);
      } else if (const std::int64_t d = ulp_distance(out[l], ref); d > worst_expm1) {
        worst_expm1 = d, at_expm1 = in[l];
      }
    }
  }
  INFO("log worst at " << at_log << ", log2 worst at " << at_log2 << ", expm1 worst at " << at_expm1);
  CHECK(worst_log <= 1);
  CHECK(worst_log2 <= 2);
  CHECK(worst_expm1 <= 2);
  CHECK(at_least_differs == 0);
  CHECK(nan_bad == 0);
  CHECK(nn_differs == 0);
}

TEMPLATE_TEST_CASE("vector log and expm1 special values and double accuracy", "[simd][log]", float, double) {
  using T = TestType;
  using B = simd::batch<T, Arch>;
  auto one = [](auto f, T x) {
    T v[B::size], o[B::size];
    for (int l = 0; l < B::size; ++l) v[l] = x;
    f(B::load(v)).store(o);
    return o[0];
  };
  auto lg = [](B x) { return simd::log(x); };
  auto em = [](B x) { return simd::expm1(x); };
  const T inf = std::numeric_limits<T>::infinity();
  CHECK(one(lg, T(0)) == -inf);
  CHECK(one(lg, inf) == inf);
  CHECK(one(lg, T(1)) == T(0));
  CHECK(std::isnan(one(lg, T(-1))));
  CHECK(std::isnan(one(lg, std::numeric_limits<T>::quiet_NaN())));
  CHECK(ulp_distance(one(lg, std::numeric_limits<T>::denorm_min()), std::log(std::numeric_limits<T>::denorm_min())) <= 2);
  auto lnn = [](B x) { return simd::log_nonnegative(x); };
  CHECK(one(lnn, T(0)) == -inf);
  CHECK(one(lnn, T(1)) == T(0));
  CHECK(one(lnn, std::numeric_limits<T>::denorm_min()) == one(lg, std::numeric_limits<T>::denorm_min()));
  CHECK(one(lnn, std::numeric_limits<T>::max()) == one(lg, std::numeric_limits<T>::max()));
  auto l2 = [](B x) { return simd::log2_nonnegative(x); };
  CHECK(one(l2, T(0)) == -inf);
  CHECK(one(l2, T(1)) == T(0));
  CHECK(one(l2, T(0.5)) == T(-1));
  CHECK(one(l2, std::numeric_limits<T>::denorm_min()) == T(std::numeric_limits<T>::min_exponent - std::numeric_limits<T>::digits));
  // log2_at_least: the bound where x is 0 (whatever the bound), else the larger.
  for (const T lo : {-inf, T(-1e30), T(-3), T(0), T(7), inf}) {
    auto at_least = [lo](B x) { return simd::log2_at_least(x, B::splat(lo)); };
    CHECK(one(at_least, T(0)) == lo);
    CHECK(one(at_least, T(1)) == std::max(T(0), lo));
    CHECK(one(at_least, T(0.25)) == std::max(T(-2), lo));
    CHECK(one(at_least, std::numeric_limits<T>::denorm_min()) == std::max(one(l2, std::numeric_limits<T>::denorm_min()), lo));
  }
  CHECK(one(em, T(0)) == T(0));
  CHECK(one(em, -inf) == T(-1));
  CHECK(one(em, inf) == inf);
  CHECK(ulp_distance(one(em, T(1e-10)), std::expm1(T(1e-10))) <= 1);
  std::mt19937_64 gen(777);
  std::uniform_real_distribution<double> wide(-700.0, 700.0), narrow(-8.0, 8.0);
  std::int64_t worst_log = 0, worst_expm1 = 0, worst_log2 = 0;
  long nn_differs = 0;
  for (int k = 0; k < 200000; ++k) {
    const T x = static_cast<T>(std::exp(wide(gen) / (sizeof(T) == 4 ? 8.0 : 1.0)));
    worst_log = std::max(worst_log, ulp_distance(one(lg, x), std::log(x)));
    nn_differs += one(lnn, x) != one(lg, x);
    worst_log2 = std::max(worst_log2, ulp_distance(one(l2, x), std::log2(x)));
    const T y = static_cast<T>(narrow(gen));
    worst_expm1 = std::max(worst_expm1, ulp_distance(one(em, y), std::expm1(y)));
  }
  CHECK(worst_log <= 2);
  CHECK(worst_log2 <= 2);
  CHECK(worst_expm1 <= 2);
  CHECK(nn_differs == 0);
}
