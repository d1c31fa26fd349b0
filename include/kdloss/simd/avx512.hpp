// kdloss SIMD layer: 512-bit AVX-512F.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "avx2.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>

KDLOSS_AVX512_WARNINGS_BEGIN

KDLOSS_BEGIN_NAMESPACE
namespace simd {

template <>
struct batch<float, avx512> {
  using value_type = float;
  using arch = avx512;
  static constexpr int size = 16;
  __m512 v;
  static KDLOSS_INLINE __mmask16 lanes_below(int n) {
    return static_cast<__mmask16>((1u << static_cast<unsigned>(n)) - 1u);
  }
  static KDLOSS_INLINE batch splat(float x) { return {_mm512_set1_ps(x)}; }
  static KDLOSS_INLINE batch load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static KDLOSS_INLINE batch load_partial(const float* p, int n, float fill) {
    return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), lanes_below(n), p)};
  }
  KDLOSS_INLINE void store(float* p) const { _mm512_storeu_ps(p, v); }
  KDLOSS_INLINE void store_partial(float* p, int n) const { _mm512_mask_storeu_ps(p, lanes_below(n), v); }
};
template <>
struct batch_mask<float, avx512> {
  __mmask16 m;
};

template <>
struct batch<double, avx512> {
  using value_type = double;
  using arch = avx512;
  static constexpr int size = 8;
  __m512d v;
  static KDLOSS_INLINE __mmask8 lanes_below(int n) {
    return static_cast<__mmask8>((1u << static_cast<unsigned>(n)) - 1u);
  }
  static KDLOSS_INLINE batch splat(double x) { return {_mm512_set1_pd(x)}; }
  static KDLOSS_INLINE batch load(const double* p) { return {_mm512_loadu_pd(p)}; }
  static KDLOSS_INLINE batch load_partial(const double* p, int n, double fill) {
    return {_mm512_mask_loadu_pd(_mm512_set1_pd(fill), lanes_below(n), p)};
  }
  KDLOSS_INLINE void store(double* p) const { _mm512_storeu_pd(p, v); }
  KDLOSS_INLINE void store_partial(double* p, int n) const { _mm512_mask_storeu_pd(p, lanes_below(n), v); }
};
template <>
struct batch_mask<double, avx512> {
  __mmask8 m;
};

#define KDLOSS_AVX512_OPS(T, S, K)                                                                 \
  using Avx512B##S = batch<T, avx512>;                                                             \
  using Avx512M##S = batch_mask<T, avx512>;                                                        \
  KDLOSS_INLINE Avx512B##S operator+(Avx512B##S a, Avx512B##S b) { return {_mm512_add_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx512B##S operator-(Avx512B##S a, Avx512B##S b) { return {_mm512_sub_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx512B##S operator*(Avx512B##S a, Avx512B##S b) { return {_mm512_mul_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx512B##S operator/(Avx512B##S a, Avx512B##S b) { return {_mm512_div_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx512B##S operator-(Avx512B##S a) { return {_mm512_sub_##S(_mm512_setzero_##S(), a.v)}; } \
  KDLOSS_INLINE Avx512B##S fma(Avx512B##S a, Avx512B##S b, Avx512B##S c) { return {_mm512_fmadd_##S(a.v, b.v, c.v)}; } \
  KDLOSS_INLINE Avx512B##S fms(Avx512B##S a, Avx512B##S b, Avx512B##S c) { return {_mm512_fmsub_##S(a.v, b.v, c.v)}; } \
  KDLOSS_INLINE Avx512B##S fnma(Avx512B##S a, Avx512B##S b, Avx512B##S c) { return {_mm512_fnmadd_##S(a.v, b.v, c.v)}; } \
  KDLOSS_INLINE Avx512B##S max(Avx512B##S a, Avx512B##S b) { return {_mm512_max_##S(a.v, b.v)}; }  \
  KDLOSS_INLINE Avx512B##S min(Avx512B##S a, Avx512B##S b) { return {_mm512_min_##S(a.v, b.v)}; }  \
  KDLOSS_INLINE Avx512B##S sqrt(Avx512B##S a) { return {_mm512_sqrt_##S(a.v)}; }                \
  KDLOSS_INLINE Avx512B##S abs(Avx512B##S a) { return {_mm512_abs_##S(a.v)}; }                    \
  KDLOSS_INLINE Avx512M##S operator==(Avx512B##S a, Avx512B##S b) { return {_mm512_cmp_##S##_mask(a.v, b.v, _CMP_EQ_OQ)}; } \
  KDLOSS_INLINE Avx512M##S operator!=(Avx512B##S a, Avx512B##S b) { return {_mm512_cmp_##S##_mask(a.v, b.v, _CMP_NEQ_UQ)}; } \
  KDLOSS_INLINE Avx512M##S operator<(Avx512B##S a, Avx512B##S b) { return {_mm512_cmp_##S##_mask(a.v, b.v, _CMP_LT_OQ)}; } \
  KDLOSS_INLINE Avx512M##S operator<=(Avx512B##S a, Avx512B##S b) { return {_mm512_cmp_##S##_mask(a.v, b.v, _CMP_LE_OQ)}; } \
  KDLOSS_INLINE Avx512M##S operator>(Avx512B##S a, Avx512B##S b) { return {_mm512_cmp_##S##_mask(a.v, b.v, _CMP_GT_OQ)}; } \
  KDLOSS_INLINE Avx512M##S operator>=(Avx512B##S a, Avx512B##S b) { return {_mm512_cmp_##S##_mask(a.v, b.v, _CMP_GE_OQ)}; } \
  KDLOSS_INLINE Avx512M##S operator&(Avx512M##S a, Avx512M##S b) { return {static_cast<K>(a.m & b.m)}; } \
  KDLOSS_INLINE Avx512M##S operator|(Avx512M##S a, Avx512M##S b) { return {static_cast<K>(a.m | b.m)}; } \
  KDLOSS_INLINE Avx512M##S operator~(Avx512M##S a) { return {static_cast<K>(~a.m)}; }              \
  KDLOSS_INLINE Avx512B##S select(Avx512M##S m, Avx512B##S a, Avx512B##S b) {                      \
    return {_mm512_mask_blend_##S(m.m, b.v, a.v)};                                                 \
  }                                                                                                \
  KDLOSS_INLINE bool any(Avx512M##S m) { return m.m != 0; }                                        \
  KDLOSS_INLINE Avx512B##S round_nearest(Avx512B##S a) {                                           \
    return {_mm512_roundscale_##S(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};            \
  }                                                                                                \
  /* scalef computes p * 2^floor(n) with one rounding, subnormals and overflow included. */        \
  KDLOSS_INLINE Avx512B##S ldexp2(Avx512B##S p, Avx512B##S n) { return {_mm512_scalef_##S(p.v, n.v)}; } \
  KDLOSS_INLINE T hmax(Avx512B##S a) { return _mm512_reduce_max_##S(a.v); }                        \
  KDLOSS_INLINE T hsum(Avx512B##S a) { return _mm512_reduce_add_##S(a.v); }

KDLOSS_AVX512_OPS(float, ps, __mmask16)
KDLOSS_AVX512_OPS(double, pd, __mmask8)
#undef KDLOSS_AVX512_OPS

/// Number of set lanes.
KDLOSS_INLINE int count(batch_mask<float, avx512> m) { return __builtin_popcount(static_cast<unsigned>(m.m)); }
KDLOSS_INLINE int count(batch_mask<double, avx512> m) { return __builtin_popcount(static_cast<unsigned>(m.m)); }
/// Writes the lanes of v selected by m contiguously at dst (room for a full batch); returns how many.
/// (Compress into a register, then a full store: the memory form of vcompressps is slow on AMD.)
KDLOSS_INLINE int compress_store(float* dst, batch_mask<float, avx512> m, batch<float, avx512> v) {
  _mm512_storeu_ps(dst, _mm512_maskz_compress_ps(m.m, v.v));
  return count(m);
}
KDLOSS_INLINE int compress_store(double* dst, batch_mask<double, avx512> m, batch<double, avx512> v) {
  _mm512_storeu_pd(dst, _mm512_maskz_compress_pd(m.m, v.v));
  return count(m);
}

KDLOSS_INLINE double hsum_wide(batch<float, avx512> a) {
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a.v));
  const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)));
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}
KDLOSS_INLINE double hsum_wide(batch<double, avx512> a) { return hsum(a); }

/// Splits a finite x > 0 (normal or subnormal) into x = m * 2^e with m in [1, 2) and e integral
/// (getmant/getexp handle subnormals themselves).
KDLOSS_INLINE void decompose(batch<float, avx512> x, batch<float, avx512>& m, batch<float, avx512>& e) {
  m.v = _mm512_getmant_ps(x.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
  e.v = _mm512_getexp_ps(x.v);
}
KDLOSS_INLINE void decompose(batch<double, avx512> x, batch<double, avx512>& m, batch<double, avx512>& e) {
  m.v = _mm512_getmant_pd(x.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
  e.v = _mm512_getexp_pd(x.v);
}

}  // namespace simd
KDLOSS_END_NAMESPACE

KDLOSS_AVX512_WARNINGS_END

#endif
