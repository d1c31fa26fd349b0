// kdloss SIMD layer: the portable width-1 implementation (the oracle of every vector path).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "arch.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace simd {

/// A register of `size` lanes of `T` for instruction set `Arch`; specialised per ISA.
template <class T, class Arch>
struct batch;
/// The result of a lane-wise comparison of two batch<T, Arch>; specialised per ISA.
template <class T, class Arch>
struct batch_mask;

template <class T>
struct batch<T, scalar> {
  using value_type = T;
  using arch = scalar;
  static constexpr int size = 1;
  T v;
  static KDLOSS_INLINE batch splat(T x) { return {x}; }
  static KDLOSS_INLINE batch load(const T* p) { return {*p}; }
  static KDLOSS_INLINE batch load_partial(const T* p, int n, T fill) { return {n > 0 ? *p : fill}; }
  KDLOSS_INLINE void store(T* p) const { *p = v; }
  KDLOSS_INLINE void store_partial(T* p, int n) const {
    if (n > 0) *p = v;
  }
};

template <class T>
struct batch_mask<T, scalar> {
  bool m;
};

namespace detail_scalar {
template <class T>
using B = batch<T, scalar>;
template <class T>
using M = batch_mask<T, scalar>;
}  // namespace detail_scalar

// Arithmetic. Lane semantics match the x86 instructions exactly; in particular max/min return the
// SECOND operand when either is NaN, which the kernels rely on to discard NaN on purpose.
template <class T> KDLOSS_INLINE batch<T, scalar> operator+(batch<T, scalar> a, batch<T, scalar> b) { return {a.v + b.v}; }
template <class T> KDLOSS_INLINE batch<T, scalar> operator-(batch<T, scalar> a, batch<T, scalar> b) { return {a.v - b.v}; }
template <class T> KDLOSS_INLINE batch<T, scalar> operator*(batch<T, scalar> a, batch<T, scalar> b) { return {a.v * b.v}; }
template <class T> KDLOSS_INLINE batch<T, scalar> operator/(batch<T, scalar> a, batch<T, scalar> b) { return {a.v / b.v}; }
template <class T> KDLOSS_INLINE batch<T, scalar> operator-(batch<T, scalar> a) { return {-a.v}; }
/// a*b + c
template <class T> KDLOSS_INLINE batch<T, scalar> fma(batch<T, scalar> a, batch<T, scalar> b, batch<T, scalar> c) { return {a.v * b.v + c.v}; }
/// a*b - c
template <class T> KDLOSS_INLINE batch<T, scalar> fms(batch<T, scalar> a, batch<T, scalar> b, batch<T, scalar> c) { return {a.v * b.v - c.v}; }
/// c - a*b
template <class T> KDLOSS_INLINE batch<T, scalar> fnma(batch<T, scalar> a, batch<T, scalar> b, batch<T, scalar> c) { return {c.v - a.v * b.v}; }
/// a > b ? a : b (b when either is NaN)
template <class T> KDLOSS_INLINE batch<T, scalar> max(batch<T, scalar> a, batch<T, scalar> b) { return {a.v > b.v ? a.v : b.v}; }
/// a < b ? a : b (b when either is NaN)
template <class T> KDLOSS_INLINE batch<T, scalar> min(batch<T, scalar> a, batch<T, scalar> b) { return {a.v < b.v ? a.v : b.v}; }
template <class T> KDLOSS_INLINE batch<T, scalar> abs(batch<T, scalar> a) { return {std::fabs(a.v)}; }
template <class T> KDLOSS_INLINE batch<T, scalar> sqrt(batch<T, scalar> a) { return {std::sqrt(a.v)}; }

// Comparisons: ordered (false on NaN) except neq, which is true on NaN.
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator==(batch<T, scalar> a, batch<T, scalar> b) { return {a.v == b.v}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator!=(batch<T, scalar> a, batch<T, scalar> b) { return {!(a.v == b.v)}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator<(batch<T, scalar> a, batch<T, scalar> b) { return {a.v < b.v}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator<=(batch<T, scalar> a, batch<T, scalar> b) { return {a.v <= b.v}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator>(batch<T, scalar> a, batch<T, scalar> b) { return {a.v > b.v}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator>=(batch<T, scalar> a, batch<T, scalar> b) { return {a.v >= b.v}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator&(batch_mask<T, scalar> a, batch_mask<T, scalar> b) { return {a.m && b.m}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator|(batch_mask<T, scalar> a, batch_mask<T, scalar> b) { return {a.m || b.m}; }
template <class T> KDLOSS_INLINE batch_mask<T, scalar> operator~(batch_mask<T, scalar> a) { return {!a.m}; }
/// m ? a : b, lane-wise
template <class T> KDLOSS_INLINE batch<T, scalar> select(batch_mask<T, scalar> m, batch<T, scalar> a, batch<T, scalar> b) { return {m.m ? a.v : b.v}; }
/// Whether any lane of m is set.
template <class T> KDLOSS_INLINE bool any(batch_mask<T, scalar> m) { return m.m; }

/// Number of set lanes.
template <class T> KDLOSS_INLINE int count(batch_mask<T, scalar> m) { return m.m ? 1 : 0; }
/// Writes the lanes of v selected by m contiguously at dst (dst must have room for a full batch);
/// returns how many.
template <class T> KDLOSS_INLINE int compress_store(T* dst, batch_mask<T, scalar> m, batch<T, scalar> v) {
  dst[0] = v.v;
  return m.m ? 1 : 0;
}

/// Largest lane.
template <class T> KDLOSS_INLINE T hmax(batch<T, scalar> a) { return a.v; }
/// Sum of the lanes.
template <class T> KDLOSS_INLINE T hsum(batch<T, scalar> a) { return a.v; }
/// Sum of the lanes, each widened to double first (for accumulating float partial sums).
template <class T> KDLOSS_INLINE double hsum_wide(batch<T, scalar> a) { return static_cast<double>(a.v); }

/// Round to the nearest integer, ties to even (|a| < 2^22 for float, 2^51 for double).
KDLOSS_INLINE batch<float, scalar> round_nearest(batch<float, scalar> a) {
  const float shifted = a.v + 12582912.0f;  // 1.5 * 2^23: the sum's ulp is 1
  return {shifted - 12582912.0f};
}
KDLOSS_INLINE batch<double, scalar> round_nearest(batch<double, scalar> a) {
  const double shifted = a.v + 6755399441055744.0;  // 1.5 * 2^52
  return {shifted - 6755399441055744.0};
}

/// p * 2^n for integral n (meant for the exp's range, [-150, 129] float, [-1075, 1025] double;
/// beyond it 0 or inf), with a single rounding: the scale is split in two normal powers of two so subnormal results and
/// overflow to inf come out right.
KDLOSS_INLINE batch<float, scalar> ldexp2(batch<float, scalar> p, batch<float, scalar> n) {
  if (std::isnan(n.v)) return {n.v};
  // Beyond [-160, 160] the result is 0 or inf anyway (and the int conversion stays defined).
  const int ni = static_cast<int>(std::min(160.0f, std::max(-160.0f, n.v)));
  const int n1 = ni / 2, n2 = ni - n1;
  auto pow2 = [](int e) {
    const std::uint32_t bits = static_cast<std::uint32_t>(e + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  };
  return {p.v * pow2(n1) * pow2(n2)};
}
KDLOSS_INLINE batch<double, scalar> ldexp2(batch<double, scalar> p, batch<double, scalar> n) {
  if (std::isnan(n.v)) return {n.v};
  const int ni = static_cast<int>(std::min(1100.0, std::max(-1100.0, n.v)));
  const int n1 = ni / 2, n2 = ni - n1;
  auto pow2 = [](int e) {
    const std::uint64_t bits = static_cast<std::uint64_t>(e + 1023) << 52;
    double f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  };
  return {p.v * pow2(n1) * pow2(n2)};
}

/// Splits a finite x > 0 (normal or subnormal) into x = m * 2^e with m in [1, 2) and e integral.
template <class T>
KDLOSS_INLINE void decompose(batch<T, scalar> x, batch<T, scalar>& m, batch<T, scalar>& e) {
  int ei = 0;
  const T f = std::frexp(x.v, &ei);  // f in [1/2, 1)
  m.v = f * T(2);
  e.v = static_cast<T>(ei - 1);
}

}  // namespace simd
KDLOSS_END_NAMESPACE
