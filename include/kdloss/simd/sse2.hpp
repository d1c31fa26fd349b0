// kdloss SIMD layer: 128-bit SSE2 (the x86-64 baseline).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "scalar.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>

KDLOSS_BEGIN_NAMESPACE
namespace simd {

template <>
struct batch<float, sse2> {
  using value_type = float;
  using arch = sse2;
  static constexpr int size = 4;
  __m128 v;
  static KDLOSS_INLINE batch splat(float x) { return {_mm_set1_ps(x)}; }
  static KDLOSS_INLINE batch load(const float* p) { return {_mm_loadu_ps(p)}; }
  static KDLOSS_INLINE batch load_partial(const float* p, int n, float fill) {
    alignas(16) float buf[4] = {fill, fill, fill, fill};
    for (int i = 0; i < n; ++i) buf[i] = p[i];
    return {_mm_load_ps(buf)};
  }
  KDLOSS_INLINE void store(float* p) const { _mm_storeu_ps(p, v); }
  KDLOSS_INLINE void store_partial(float* p, int n) const {
    alignas(16) float buf[4];
    _mm_store_ps(buf, v);
    for (int i = 0; i < n; ++i) p[i] = buf[i];
  }
};
template <>
struct batch_mask<float, sse2> {
  __m128 m;
};

template <>
struct batch<double, sse2> {
  using value_type = double;
  using arch = sse2;
  static constexpr int size = 2;
  __m128d v;
  static KDLOSS_INLINE batch splat(double x) { return {_mm_set1_pd(x)}; }
  static KDLOSS_INLINE batch load(const double* p) { return {_mm_loadu_pd(p)}; }
  static KDLOSS_INLINE batch load_partial(const double* p, int n, double fill) {
    if (n >= 2) return load(p);
    return {n > 0 ? _mm_loadl_pd(_mm_set1_pd(fill), p) : _mm_set1_pd(fill)};
  }
  KDLOSS_INLINE void store(double* p) const { _mm_storeu_pd(p, v); }
  KDLOSS_INLINE void store_partial(double* p, int n) const {
    if (n >= 2)
      store(p);
    else if (n > 0)
      _mm_storel_pd(p, v);
  }
};
template <>
struct batch_mask<double, sse2> {
  __m128d m;
};

#define KDLOSS_SSE2_OPS(T, S)                                                                    \
  using SseB##S = batch<T, sse2>;                                                                   \
  using SseM##S = batch_mask<T, sse2>;                                                              \
  KDLOSS_INLINE SseB##S operator+(SseB##S a, SseB##S b) { return {_mm_add_##S(a.v, b.v)}; }               \
  KDLOSS_INLINE SseB##S operator-(SseB##S a, SseB##S b) { return {_mm_sub_##S(a.v, b.v)}; }               \
  KDLOSS_INLINE SseB##S operator*(SseB##S a, SseB##S b) { return {_mm_mul_##S(a.v, b.v)}; }               \
  KDLOSS_INLINE SseB##S operator/(SseB##S a, SseB##S b) { return {_mm_div_##S(a.v, b.v)}; }               \
  KDLOSS_INLINE SseB##S operator-(SseB##S a) { return {_mm_xor_##S(a.v, _mm_set1_##S(T(-0.0)))}; }     \
  KDLOSS_INLINE SseB##S fma(SseB##S a, SseB##S b, SseB##S c) { return {_mm_add_##S(_mm_mul_##S(a.v, b.v), c.v)}; } \
  KDLOSS_INLINE SseB##S fms(SseB##S a, SseB##S b, SseB##S c) { return {_mm_sub_##S(_mm_mul_##S(a.v, b.v), c.v)}; } \
  KDLOSS_INLINE SseB##S fnma(SseB##S a, SseB##S b, SseB##S c) { return {_mm_sub_##S(c.v, _mm_mul_##S(a.v, b.v))}; } \
  KDLOSS_INLINE SseB##S max(SseB##S a, SseB##S b) { return {_mm_max_##S(a.v, b.v)}; }                    \
  KDLOSS_INLINE SseB##S min(SseB##S a, SseB##S b) { return {_mm_min_##S(a.v, b.v)}; }                    \
  KDLOSS_INLINE SseB##S sqrt(SseB##S a) { return {_mm_sqrt_##S(a.v)}; }                           \
  KDLOSS_INLINE SseB##S abs(SseB##S a) { return {_mm_andnot_##S(_mm_set1_##S(T(-0.0)), a.v)}; }       \
  KDLOSS_INLINE SseM##S operator==(SseB##S a, SseB##S b) { return {_mm_cmpeq_##S(a.v, b.v)}; }            \
  KDLOSS_INLINE SseM##S operator!=(SseB##S a, SseB##S b) { return {_mm_cmpneq_##S(a.v, b.v)}; }           \
  KDLOSS_INLINE SseM##S operator<(SseB##S a, SseB##S b) { return {_mm_cmplt_##S(a.v, b.v)}; }             \
  KDLOSS_INLINE SseM##S operator<=(SseB##S a, SseB##S b) { return {_mm_cmple_##S(a.v, b.v)}; }            \
  KDLOSS_INLINE SseM##S operator>(SseB##S a, SseB##S b) { return {_mm_cmpgt_##S(a.v, b.v)}; }             \
  KDLOSS_INLINE SseM##S operator>=(SseB##S a, SseB##S b) { return {_mm_cmpge_##S(a.v, b.v)}; }            \
  KDLOSS_INLINE SseM##S operator&(SseM##S a, SseM##S b) { return {_mm_and_##S(a.m, b.m)}; }               \
  KDLOSS_INLINE SseM##S operator|(SseM##S a, SseM##S b) { return {_mm_or_##S(a.m, b.m)}; }                \
  KDLOSS_INLINE SseM##S operator~(SseM##S a) {                                                         \
    return {_mm_xor_##S(a.m, _mm_castsi128_##S(_mm_set1_epi32(-1)))};                            \
  }                                                                                              \
  KDLOSS_INLINE SseB##S select(SseM##S m, SseB##S a, SseB##S b) {                                            \
    return {_mm_or_##S(_mm_and_##S(m.m, a.v), _mm_andnot_##S(m.m, b.v))};                        \
  }                                                                                              \
  KDLOSS_INLINE bool any(SseM##S m) { return _mm_movemask_##S(m.m) != 0; }

KDLOSS_SSE2_OPS(float, ps)
KDLOSS_SSE2_OPS(double, pd)
#undef KDLOSS_SSE2_OPS


/// Number of set lanes.
KDLOSS_INLINE int count(batch_mask<float, sse2> m) { return __builtin_popcount(static_cast<unsigned>(_mm_movemask_ps(m.m))); }
/// Writes the lanes of v selected by m contiguously at dst (room for a full batch); returns how many.
KDLOSS_INLINE int compress_store(float* dst, batch_mask<float, sse2> m, batch<float, sse2> v) {
  alignas(64) float lanes[4];
  v.store(lanes);
  unsigned bits = static_cast<unsigned>(_mm_movemask_ps(m.m));
  int c = 0;
  for (int l = 0; l < 4; ++l)
    if (bits >> l & 1u) dst[c++] = lanes[l];
  return c;
}

/// Number of set lanes.
KDLOSS_INLINE int count(batch_mask<double, sse2> m) { return __builtin_popcount(static_cast<unsigned>(_mm_movemask_pd(m.m))); }
/// Writes the lanes of v selected by m contiguously at dst (room for a full batch); returns how many.
KDLOSS_INLINE int compress_store(double* dst, batch_mask<double, sse2> m, batch<double, sse2> v) {
  alignas(64) double lanes[2];
  v.store(lanes);
  unsigned bits = static_cast<unsigned>(_mm_movemask_pd(m.m));
  int c = 0;
  for (int l = 0; l < 2; ++l)
    if (bits >> l & 1u) dst[c++] = lanes[l];
  return c;
}

KDLOSS_INLINE float hmax(batch<float, sse2> a) {
  __m128 t = _mm_max_ps(a.v, _mm_movehl_ps(a.v, a.v));
  t = _mm_max_ss(t, _mm_shuffle_ps(t, t, 1));
  return _mm_cvtss_f32(t);
}
KDLOSS_INLINE float hsum(batch<float, sse2> a) {
  __m128 t = _mm_add_ps(a.v, _mm_movehl_ps(a.v, a.v));
  t = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
  return _mm_cvtss_f32(t);
}
KDLOSS_INLINE double hsum_wide(batch<float, sse2> a) {
  __m128d s = _mm_add_pd(_mm_cvtps_pd(a.v), _mm_cvtps_pd(_mm_movehl_ps(a.v, a.v)));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}
KDLOSS_INLINE double hmax(batch<double, sse2> a) {
  return _mm_cvtsd_f64(_mm_max_sd(a.v, _mm_unpackhi_pd(a.v, a.v)));
}
KDLOSS_INLINE double hsum(batch<double, sse2> a) {
  return _mm_cvtsd_f64(_mm_add_sd(a.v, _mm_unpackhi_pd(a.v, a.v)));
}
KDLOSS_INLINE double hsum_wide(batch<double, sse2> a) { return hsum(a); }

// SSE2 has no round instruction: adding 1.5 * 2^23 leaves a sum whose ulp is 1 (|a| < 2^22).
KDLOSS_INLINE batch<float, sse2> round_nearest(batch<float, sse2> a) {
  const __m128 magic = _mm_set1_ps(12582912.0f);
  return {_mm_sub_ps(_mm_add_ps(a.v, magic), magic)};
}
KDLOSS_INLINE batch<double, sse2> round_nearest(batch<double, sse2> a) {
  const __m128d magic = _mm_set1_pd(6755399441055744.0);
  return {_mm_sub_pd(_mm_add_pd(a.v, magic), magic)};
}

KDLOSS_INLINE batch<float, sse2> ldexp2(batch<float, sse2> p, batch<float, sse2> n) {
  const __m128 n1 = round_nearest(batch<float, sse2>{_mm_mul_ps(n.v, _mm_set1_ps(0.5f))}).v;
  const __m128 n2 = _mm_sub_ps(n.v, n1);
  const __m128i bias = _mm_set1_epi32(127);
  const __m128i e1 = _mm_slli_epi32(_mm_add_epi32(_mm_cvtps_epi32(n1), bias), 23);
  const __m128i e2 = _mm_slli_epi32(_mm_add_epi32(_mm_cvtps_epi32(n2), bias), 23);
  return {_mm_mul_ps(_mm_mul_ps(p.v, _mm_castsi128_ps(e1)), _mm_castsi128_ps(e2))};
}
KDLOSS_INLINE batch<double, sse2> ldexp2(batch<double, sse2> p, batch<double, sse2> n) {
  const __m128d magic = _mm_set1_pd(6755399441055744.0);
  const __m128d n1 = round_nearest(batch<double, sse2>{_mm_mul_pd(n.v, _mm_set1_pd(0.5))}).v;
  const __m128d n2 = _mm_sub_pd(n.v, n1);
  // bits(x + 1.5*2^52) - bits(1.5*2^52) is x as a two's-complement int64 for |x| < 2^51.
  const __m128i mb = _mm_castpd_si128(magic);
  const __m128i bias = _mm_set1_epi64x(1023);
  const __m128i i1 = _mm_sub_epi64(_mm_castpd_si128(_mm_add_pd(n1, magic)), mb);
  const __m128i i2 = _mm_sub_epi64(_mm_castpd_si128(_mm_add_pd(n2, magic)), mb);
  const __m128i e1 = _mm_slli_epi64(_mm_add_epi64(i1, bias), 52);
  const __m128i e2 = _mm_slli_epi64(_mm_add_epi64(i2, bias), 52);
  return {_mm_mul_pd(_mm_mul_pd(p.v, _mm_castsi128_pd(e1)), _mm_castsi128_pd(e2))};
}

/// Splits a finite x > 0 (normal or subnormal) into x = m * 2^e with m in [1, 2) and e integral.
KDLOSS_INLINE void decompose(batch<float, sse2> x, batch<float, sse2>& m, batch<float, sse2>& e) {
  // Subnormals are scaled by 2^23 first, then their exponent corrected.
  const __m128 sub = _mm_cmplt_ps(x.v, _mm_set1_ps(1.17549435e-38f));
  const __m128 xs = _mm_or_ps(_mm_and_ps(sub, _mm_mul_ps(x.v, _mm_set1_ps(8388608.0f))), _mm_andnot_ps(sub, x.v));
  const __m128i bits = _mm_castps_si128(xs);
  const __m128i ef = _mm_sub_epi32(_mm_srli_epi32(bits, 23), _mm_set1_epi32(127));
  e.v = _mm_sub_ps(_mm_cvtepi32_ps(ef), _mm_and_ps(sub, _mm_set1_ps(23.0f)));
  m.v = _mm_castsi128_ps(_mm_or_si128(_mm_and_si128(bits, _mm_set1_epi32(0x007FFFFF)), _mm_set1_epi32(0x3F800000)));
}
KDLOSS_INLINE void decompose(batch<double, sse2> x, batch<double, sse2>& m, batch<double, sse2>& e) {
  const __m128d sub = _mm_cmplt_pd(x.v, _mm_set1_pd(2.2250738585072014e-308));
  const __m128d xs = _mm_or_pd(_mm_and_pd(sub, _mm_mul_pd(x.v, _mm_set1_pd(4503599627370496.0))), _mm_andnot_pd(sub, x.v));
  const __m128i bits = _mm_castpd_si128(xs);
  // The 11-bit exponent field as a double: OR it into the mantissa of 2^52, subtract 2^52.
  const __m128d two52 = _mm_set1_pd(4503599627370496.0);
  const __m128d ef = _mm_sub_pd(_mm_castsi128_pd(_mm_or_si128(_mm_srli_epi64(bits, 52), _mm_castpd_si128(two52))), two52);
  e.v = _mm_sub_pd(_mm_sub_pd(ef, _mm_set1_pd(1023.0)), _mm_and_pd(sub, _mm_set1_pd(52.0)));
  m.v = _mm_castsi128_pd(_mm_or_si128(_mm_and_si128(bits, _mm_set1_epi64x(0x000FFFFFFFFFFFFFll)),
                                      _mm_set1_epi64x(0x3FF0000000000000ll)));
}

}  // namespace simd
KDLOSS_END_NAMESPACE

#endif
