// kdloss SIMD layer: transcendental functions written once over the primitives.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "avx512.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace simd {

/// The batch type of `T` on `Arch`.
template <class T, class Arch>
using batch_t = batch<T, Arch>;

namespace detail {

template <class T>
struct exp_constants;

// Range reduction x = n ln2 + r, |r| <= ln2/2, with ln2 split so that n * ln2_hi is exact.
template <>
struct exp_constants<float> {
  static constexpr float lo = -104.0f;  // e^-104 rounds to 0 (below half the least subnormal)
  static constexpr float hi = 88.8f;    // above ln(FLT_MAX) = 88.7228: the result overflows to inf
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f;
  static constexpr float ln2_lo = -2.12194440e-4f;
  // e^r = 1 + r + r^2 P(r): weighted least-squares fit of the relative error on [-ln2/2, ln2/2]
  // (max relative error 3.6e-9 in exact arithmetic, far below float's half-ulp).
  template <class B>
  static KDLOSS_INLINE B poly(B r) {
    B p = fma(B::splat(1.375140739e-03f), r, B::splat(8.368915878e-03f));
    p = fma(p, r, B::splat(4.166953266e-02f));
    p = fma(p, r, B::splat(1.666651815e-01f));
    p = fma(p, r, B::splat(4.999998808e-01f));
    return fma(p, r * r, r + B::splat(1.0f));
  }
};

template <>
struct exp_constants<double> {
  static constexpr double lo = -746.0;  // e^-746 rounds to 0
  static constexpr double hi = 709.8;   // above ln(DBL_MAX) = 709.7827: overflows to inf
  static constexpr double log2e = 1.4426950408889634;
  static constexpr double ln2_hi = 0.6931467056274414;
  static constexpr double ln2_lo = 4.7493250390316726e-07;
  // Taylor series to r^13: truncation error r^14/14! < 5e-18 relative on |r| <= ln2/2.
  template <class B>
  static KDLOSS_INLINE B poly(B r) {
    B p = fma(B::splat(1.60590438368216133e-10), r, B::splat(2.08767569878681002e-09));
    p = fma(p, r, B::splat(2.50521083854417202e-08));
    p = fma(p, r, B::splat(2.75573192239858883e-07));
    p = fma(p, r, B::splat(2.75573192239858925e-06));
    p = fma(p, r, B::splat(2.48015873015873016e-05));
    p = fma(p, r, B::splat(1.98412698412698413e-04));
    p = fma(p, r, B::splat(1.38888888888888894e-03));
    p = fma(p, r, B::splat(8.33333333333333322e-03));
    p = fma(p, r, B::splat(4.16666666666666644e-02));
    p = fma(p, r, B::splat(1.66666666666666657e-01));
    p = fma(p, r, B::splat(0.5));
    return fma(p, r * r, r + B::splat(1.0));
  }
};

}  // namespace detail

/// Lane-wise \f$e^x\f$ for float or double batches on any instruction set.
///
/// Cody–Waite range reduction \f$x = n\ln 2 + r\f$, a polynomial for \f$e^r\f$, and an exact
/// power-of-two scaling, so subnormal results and overflow to \f$+\infty\f$ come out right.
/// Special values: \f$e^{-\infty} = 0\f$, \f$e^{+\infty} = +\infty\f$, NaN propagates.
/// Accuracy against `std::exp` is bounded by the tests in `tests/simd/exp.test.cpp`.
template <class B>
KDLOSS_INLINE B exp(B x) {
  using T = typename B::value_type;
  using K = detail::exp_constants<T>;
  // Constant first: min/max return their second operand on NaN, so NaN survives the clamp.
  x = max(B::splat(K::lo), min(B::splat(K::hi), x));
  const B n = round_nearest(x * B::splat(K::log2e));
  B r = fnma(n, B::splat(K::ln2_hi), x);
  r = fnma(n, B::splat(K::ln2_lo), r);
  return ldexp2(K::poly(r), n);
}

/// Scalar convenience overload of the vector exp (the same algorithm at width 1).
template <class T>
KDLOSS_INLINE T exp_scalar(T x) {
  return exp(batch<T, scalar>::splat(x)).v;
}

}  // namespace simd
KDLOSS_END_NAMESPACE
