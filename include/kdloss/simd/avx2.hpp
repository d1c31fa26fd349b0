// kdloss SIMD layer: 256-bit AVX2 + FMA3.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "sse2.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

KDLOSS_BEGIN_NAMESPACE
namespace simd {

template <>
struct batch<float, avx2> {
  using value_type = float;
  using arch = avx2;
  static constexpr int size = 8;
  __m256 v;
  static KDLOSS_INLINE batch splat(float x) { return {_mm256_set1_ps(x)}; }
  static KDLOSS_INLINE batch load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static KDLOSS_INLINE __m256i lanes_below(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static KDLOSS_INLINE batch load_partial(const float* p, int n, float fill) {
    const __m256i m = lanes_below(n);
    return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))};
  }
  KDLOSS_INLINE void store(float* p) const { _mm256_storeu_ps(p, v); }
  KDLOSS_INLINE void store_partial(float* p, int n) const { _mm256_maskstore_ps(p, lanes_below(n), v); }
};
template <>
struct batch_mask<float, avx2> {
  __m256 m;
};

template <>
struct batch<double, avx2> {
  using value_type = double;
  using arch = avx2;
  static constexpr int size = 4;
  __m256d v;
  static KDLOSS_INLINE batch splat(double x) { return {_mm256_set1_pd(x)}; }
  static KDLOSS_INLINE batch load(const double* p) { return {_mm256_loadu_pd(p)}; }
  static KDLOSS_INLINE __m256i lanes_below(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static KDLOSS_INLINE batch load_partial(const double* p, int n, double fill) {
    const __m256i m = lanes_below(n);
    return {_mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m))};
  }
  KDLOSS_INLINE void store(double* p) const { _mm256_storeu_pd(p, v); }
  KDLOSS_INLINE void store_partial(double* p, int n) const { _mm256_maskstore_pd(p, lanes_below(n), v); }
};
template <>
struct batch_mask<double, avx2> {
  __m256d m;
};

#define KDLOSS_AVX2_OPS(T, S)                                                                     \
  using Avx2B##S = batch<T, avx2>;                                                                \
  using Avx2M##S = batch_mask<T, avx2>;                                                           \
  KDLOSS_INLINE Avx2B##S operator+(Avx2B##S a, Avx2B##S b) { return {_mm256_add_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx2B##S operator-(Avx2B##S a, Avx2B##S b) { return {_mm256_sub_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx2B##S operator*(Avx2B##S a, Avx2B##S b) { return {_mm256_mul_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx2B##S operator/(Avx2B##S a, Avx2B##S b) { return {_mm256_div_##S(a.v, b.v)}; } \
  KDLOSS_INLINE Avx2B##S operator-(Avx2B##S a) { return {_mm256_xor_##S(a.v, _mm256_set1_##S(T(-0.0)))}; } \
  KDLOSS_INLINE Avx2B##S fma(Avx2B##S a, Avx2B##S b, Avx2B##S c) { return {_mm256_fmadd_##S(a.v, b.v, c.v)}; } \
  KDLOSS_INLINE Avx2B##S fms(Avx2B##S a, Avx2B##S b, Avx2B##S c) { return {_mm256_fmsub_##S(a.v, b.v, c.v)}; } \
  KDLOSS_INLINE Avx2B##S fnma(Avx2B##S a, Avx2B##S b, Avx2B##S c) { return {_mm256_fnmadd_##S(a.v, b.v, c.v)}; } \
  KDLOSS_INLINE Avx2B##S max(Avx2B##S a, Avx2B##S b) { return {_mm256_max_##S(a.v, b.v)}; }       \
  KDLOSS_INLINE Avx2B##S min(Avx2B##S a, Avx2B##S b) { return {_mm256_min_##S(a.v, b.v)}; }       \
  KDLOSS_INLINE Avx2B##S sqrt(Avx2B##S a) { return {_mm256_sqrt_##S(a.v)}; }                    \
  KDLOSS_INLINE Avx2B##S abs(Avx2B##S a) { return {_mm256_andnot_##S(_mm256_set1_##S(T(-0.0)), a.v)}; } \
  KDLOSS_INLINE Avx2M##S operator==(Avx2B##S a, Avx2B##S b) { return {_mm256_cmp_##S(a.v, b.v, _CMP_EQ_OQ)}; } \
  KDLOSS_INLINE Avx2M##S operator!=(Avx2B##S a, Avx2B##S b) { return {_mm256_cmp_##S(a.v, b.v, _CMP_NEQ_UQ)}; } \
  KDLOSS_INLINE Avx2M##S operator<(Avx2B##S a, Avx2B##S b) { return {_mm256_cmp_##S(a.v, b.v, _CMP_LT_OQ)}; } \
  KDLOSS_INLINE Avx2M##S operator<=(Avx2B##S a, Avx2B##S b) { return {_mm256_cmp_##S(a.v, b.v, _CMP_LE_OQ)}; } \
  KDLOSS_INLINE Avx2M##S operator>(Avx2B##S a, Avx2B##S b) { return {_mm256_cmp_##S(a.v, b.v, _CMP_GT_OQ)}; } \
  KDLOSS_INLINE Avx2M##S operator>=(Avx2B##S a, Avx2B##S b) { return {_mm256_cmp_##S(a.v, b.v, _CMP_GE_OQ)}; } \
  KDLOSS_INLINE Avx2M##S operator&(Avx2M##S a, Avx2M##S b) { return {_mm256_and_##S(a.m, b.m)}; } \
  KDLOSS_INLINE Avx2M##S operator|(Avx2M##S a, Avx2M##S b) { return {_mm256_or_##S(a.m, b.m)}; }  \
  KDLOSS_INLINE Avx2M##S operator~(Avx2M##S a) {                                                  \
    return {_mm256_xor_##S(a.m, _mm256_castsi256_##S(_mm256_set1_epi32(-1)))};                    \
  }                                                                                               \
  KDLOSS_INLINE Avx2B##S select(Avx2M##S m, Avx2B##S a, Avx2B##S b) {                             \
    return {_mm256_blendv_##S(b.v, a.v, m.m)};                                                    \
  }                                                                                               \
  KDLOSS_INLINE bool any(Avx2M##S m) { return _mm256_movemask_##S(m.m) != 0; }                   \
  KDLOSS_INLINE Avx2B##S round_nearest(Avx2B##S a) {                                              \
    return {_mm256_round_##S(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};                \
  }

KDLOSS_AVX2_OPS(float, ps)
KDLOSS_AVX2_OPS(double, pd)
#undef KDLOSS_AVX2_OPS


/// Number of set lanes.
KDLOSS_INLINE int count(batch_mask<float, avx2> m) { return __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(m.m))); }
/// Writes the lanes of v selected by m contiguously at dst (room for a full batch); returns how many.
KDLOSS_INLINE int compress_store(float* dst, batch_mask<float, avx2> m, batch<float, avx2> v) {
  alignas(64) float lanes[8];
  v.store(lanes);
  unsigned bits = static_cast<unsigned>(_mm256_movemask_ps(m.m));
  int c = 0;
  for (int l = 0; l < 8; ++l)
    if (bits >> l & 1u) dst[c++] = lanes[l];
  return c;
}

/// Number of set lanes.
KDLOSS_INLINE int count(batch_mask<double, avx2> m) { return __builtin_popcount(static_cast<unsigned>(_mm256_movemask_pd(m.m))); }
/// Writes the lanes of v selected by m contiguously at dst (room for a full batch); returns how many.
KDLOSS_INLINE int compress_store(double* dst, batch_mask<double, avx2> m, batch<double, avx2> v) {
  alignas(64) double lanes[4];
  v.store(lanes);
  unsigned bits = static_cast<unsigned>(_mm256_movemask_pd(m.m));
  int c = 0;
  for (int l = 0; l < 4; ++l)
    if (bits >> l & 1u) dst[c++] = lanes[l];
  return c;
}

KDLOSS_INLINE float hmax(batch<float, avx2> a) {
  return hmax(batch<float, sse2>{_mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1))});
}
KDLOSS_INLINE float hsum(batch<float, avx2> a) {
  return hsum(batch<float, sse2>{_mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1))});
}
KDLOSS_INLINE double hsum_wide(batch<float, avx2> a) {
  const __m256d s = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a.v)),
                                  _mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1)));
  return hsum(batch<double, sse2>{_mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1))});
}
KDLOSS_INLINE double hmax(batch<double, avx2> a) {
  return hmax(batch<double, sse2>{_mm_max_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1))});
}
KDLOSS_INLINE double hsum(batch<double, avx2> a) {
  return hsum(batch<double, sse2>{_mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1))});
}
KDLOSS_INLINE double hsum_wide(batch<double, avx2> a) { return hsum(a); }

KDLOSS_INLINE batch<float, avx2> ldexp2(batch<float, avx2> p, batch<float, avx2> n) {
  const __m256 n1 = round_nearest(batch<float, avx2>{_mm256_mul_ps(n.v, _mm256_set1_ps(0.5f))}).v;
  const __m256 n2 = _mm256_sub_ps(n.v, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256i e1 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n1), bias), 23);
  const __m256i e2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n2), bias), 23);
  return {_mm256_mul_ps(_mm256_mul_ps(p.v, _mm256_castsi256_ps(e1)), _mm256_castsi256_ps(e2))};
}
KDLOSS_INLINE batch<double, avx2> ldexp2(batch<double, avx2> p, batch<double, avx2> n) {
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);
  const __m256d n1 = round_nearest(batch<double, avx2>{_mm256_mul_pd(n.v, _mm256_set1_pd(0.5))}).v;
  const __m256d n2 = _mm256_sub_pd(n.v, n1);
  const __m256i mb = _mm256_castpd_si256(magic);
  const __m256i bias = _mm256_set1_epi64x(1023);
  const __m256i i1 = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(n1, magic)), mb);
  const __m256i i2 = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(n2, magic)), mb);
  const __m256i e1 = _mm256_slli_epi64(_mm256_add_epi64(i1, bias), 52);
  const __m256i e2 = _mm256_slli_epi64(_mm256_add_epi64(i2, bias), 52);
  return {_mm256_mul_pd(_mm256_mul_pd(p.v, _mm256_castsi256_pd(e1)), _mm256_castsi256_pd(e2))};
}

/// Splits a finite x > 0 (normal or subnormal) into x = m * 2^e with m in [1, 2) and e integral.
KDLOSS_INLINE void decompose(batch<float, avx2> x, batch<float, avx2>& m, batch<float, avx2>& e) {
  const __m256 sub = _mm256_cmp_ps(x.v, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
  const __m256 xs = _mm256_blendv_ps(x.v, _mm256_mul_ps(x.v, _mm256_set1_ps(8388608.0f)), sub);
  const __m256i bits = _mm256_castps_si256(xs);
  const __m256i ef = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
  e.v = _mm256_sub_ps(_mm256_cvtepi32_ps(ef), _mm256_and_ps(sub, _mm256_set1_ps(23.0f)));
  m.v = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)),
                                            _mm256_set1_epi32(0x3F800000)));
}
KDLOSS_INLINE void decompose(batch<double, avx2> x, batch<double, avx2>& m, batch<double, avx2>& e) {
  const __m256d sub = _mm256_cmp_pd(x.v, _mm256_set1_pd(2.2250738585072014e-308), _CMP_LT_OQ);
  const __m256d xs = _mm256_blendv_pd(x.v, _mm256_mul_pd(x.v, _mm256_set1_pd(4503599627370496.0)), sub);
  const __m256i bits = _mm256_castpd_si256(xs);
  const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
  const __m256d ef = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(bits, 52), _mm256_castpd_si256(two52))), two52);
  e.v = _mm256_sub_pd(_mm256_sub_pd(ef, _mm256_set1_pd(1023.0)), _mm256_and_pd(sub, _mm256_set1_pd(52.0)));
  m.v = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFll)),
                                            _mm256_set1_epi64x(0x3FF0000000000000ll)));
}

}  // namespace simd
KDLOSS_END_NAMESPACE

#endif
