// kdloss SIMD layer: transcendental functions written once over the primitives.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <limits>
#include <type_traits>

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

namespace detail {

template <class T>
struct log_constants;

template <>
struct log_constants<float> {
  static constexpr float ln2_hi = 0.693359375f;
  static constexpr float ln2_lo = -2.12194440e-4f;
  // log1p(f) = f - f^2/2 + f^3 P(f) on [sqrt(1/2) - 1, sqrt(2) - 1]: weighted least-squares fit,
  // max relative error 1.0e-8 in exact arithmetic.
  template <class B>
  static KDLOSS_INLINE B log1p_reduced(B f) {
    B p = fma(B::splat(-6.697528064e-02f), f, B::splat(1.223955825e-01f));
    p = fma(p, f, B::splat(-1.329059899e-01f));
    p = fma(p, f, B::splat(1.429479271e-01f));
    p = fma(p, f, B::splat(-1.661837399e-01f));
    p = fma(p, f, B::splat(1.999602169e-01f));
    p = fma(p, f, B::splat(-2.500086725e-01f));
    p = fma(p, f, B::splat(3.333342075e-01f));
    const B f2 = f * f;
    return fma(p, f2 * f, fnma(f2, B::splat(0.5f), f));
  }
};

template <>
struct log_constants<double> {
  static constexpr double ln2_hi = 0.6931471803691238164;
  static constexpr double ln2_lo = 1.9082149292705877e-10;
  // log1p(f) = 2 atanh(s), s = f / (2 + f), |s| <= 0.1716: Taylor series in s^2 to s^22
  // (truncation below 1e-18 relative).
  template <class B>
  static KDLOSS_INLINE B log1p_reduced(B f) {
    const B s = f / (B::splat(2.0) + f);
    const B z = s * s;
    B p = B::splat(1.0 / 23);
    for (int k = 10; k >= 0; --k) p = fma(p, z, B::splat(1.0 / (2 * k + 1)));
    return B::splat(2.0) * s * p;
  }
};

template <class T>
struct expm1_constants;

template <>
struct expm1_constants<float> {
  // |x| < 1/2: x + x^2/2 + x^3 (1/3! + x/4! + ... + x^6/9!), truncation < 1e-9 relative.
  template <class B>
  static KDLOSS_INLINE B small(B x) {
    B p = B::splat(1.0f / 362880);
    p = fma(p, x, B::splat(1.0f / 40320));
    p = fma(p, x, B::splat(1.0f / 5040));
    p = fma(p, x, B::splat(1.0f / 720));
    p = fma(p, x, B::splat(1.0f / 120));
    p = fma(p, x, B::splat(1.0f / 24));
    p = fma(p, x, B::splat(1.0f / 6));
    const B x2 = x * x;
    return fma(p, x2 * x, fma(x2, B::splat(0.5f), x));
  }
};

template <>
struct expm1_constants<double> {
  // |x| < 1/2: Taylor series to x^18 (truncation < 1e-21 relative).
  template <class B>
  static KDLOSS_INLINE B small(B x) {
    double c[16];
    double f = 6;  // 3!
    for (int k = 3; k <= 18; ++k) c[k - 3] = 1.0 / f, f *= (k + 1);
    B p = B::splat(c[15]);
    for (int k = 14; k >= 0; --k) p = fma(p, x, B::splat(c[k]));
    const B x2 = x * x;
    return fma(p, x2 * x, fma(x2, B::splat(0.5), x));
  }
};

/// The range reduction of the logs: a finite x > 0 (normal or subnormal) as \f$x = (1 + f) 2^e\f$
/// with \f$1 + f \in [\sqrt{1/2}, \sqrt 2)\f$; returns f (exact) and sets e.
template <class B>
KDLOSS_INLINE B log_reduce(B x, B& e) {
  using T = typename B::value_type;
  B m;
  decompose(x, m, e);
  const auto big = m > B::splat(T(1.41421356237309504880));
  m = select(big, m * B::splat(T(0.5)), m);
  e = select(big, e + B::splat(T(1)), e);
  return m - B::splat(T(1));
}

/// \f$\log x\f$ for a finite x > 0 (normal or subnormal), with no guards: `log_reduce`, then a
/// polynomial (float) or an atanh series (double) for \f$\log(1 + f)\f$, plus \f$e\ln 2\f$ in two
/// parts. The core of `log` and `log_nonnegative`.
template <class B>
KDLOSS_INLINE B log_positive(B x) {
  using K = log_constants<typename B::value_type>;
  B e;
  const B f = log_reduce(x, e);
  return fma(e, B::splat(K::ln2_hi), fma(e, B::splat(K::ln2_lo), K::log1p_reduced(f)));
}

/// \f$\log_2 x\f$ for a finite x > 0, as `log_positive`: the same reduction and series, then
/// \f$e + \log(1 + f)\log_2 e\f$ with one fused multiply-add.
template <class B>
KDLOSS_INLINE B log2_positive(B x) {
  using T = typename B::value_type;
  B e;
  const B f = log_reduce(x, e);
  return fma(log_constants<T>::log1p_reduced(f), B::splat(T(1.44269504088896340736)), e);
}

}  // namespace detail

/// Lane-wise natural logarithm. \f$\log 0 = -\infty\f$, \f$\log(+\infty) = +\infty\f$, negative
/// and NaN inputs give NaN, subnormal inputs are exact-range (`detail::log_positive` between the
/// guards). Accuracy bounded by `tests/simd/exp.test.cpp`.
template <class B>
KDLOSS_INLINE B log(B x) {
  using T = typename B::value_type;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const auto regular = (x > B::splat(T(0))) & (x < B::splat(kInf));
  B r = detail::log_positive(select(regular, x, B::splat(T(1))));
  r = select(x == B::splat(T(0)), B::splat(-kInf), r);
  r = select(x == B::splat(kInf), B::splat(kInf), r);
  return select((x < B::splat(T(0))) | (x != x), B::splat(std::numeric_limits<T>::quiet_NaN()), r);
}

/// Lane-wise natural logarithm of a finite, non-negative x (a probability or a mixture of
/// probabilities): `log` without its guards for negative, NaN and infinite inputs, which such an
/// argument never has (each costs a compare and a blend, a sixth of the mixture divergences' value
/// pass). The same values as `log` on [0, max]: \f$\log 0 = -\infty\f$, subnormals exact-range.
/// Undefined (but no undefined behaviour) for a negative, infinite or NaN x.
template <class B>
KDLOSS_INLINE B log_nonnegative(B x) {
  using T = typename B::value_type;
  return select(x == B::splat(T(0)), B::splat(-std::numeric_limits<T>::infinity()), detail::log_positive(x));
}

/// Lane-wise base-2 logarithm of a finite, non-negative x (a probability or a mixture of
/// probabilities), with the contract of `log_nonnegative`: \f$\log_2 0 = -\infty\f$, subnormals
/// exact-range; undefined (but no undefined behaviour) for a negative, infinite or NaN x. The
/// kernels' logs are base 2 (their exponentials are `exp2_nonpositive`): a mixture's log in base 2
/// meets the entry's base-2 logs without a multiply by \f$\ln 2\f$. Accuracy bounded by
/// `tests/simd/exp.test.cpp`.
template <class B>
KDLOSS_INLINE B log2_nonnegative(B x) {
  using T = typename B::value_type;
  return select(x == B::splat(T(0)), B::splat(-std::numeric_limits<T>::infinity()), detail::log2_positive(x));
}

/// Lane-wise \f$\max(\log_2 x, lo)\f$ for a finite \f$x \ge 0\f$ and any lo (x = 0 gives lo): a log
/// bounded below, as a mixture's log is by its components' (the mixture divergences). The same
/// values as `max(log2_nonnegative(x), lo)`; the AVX-512 float path lets the bound take the place
/// of the log at 0 without a test of its own.
template <class B>
KDLOSS_INLINE B log2_at_least(B x, B lo) {
  return max(log2_nonnegative(x), lo);
}

#if defined(__AVX512F__)
KDLOSS_AVX512_WARNINGS_BEGIN
namespace detail {
/// The table logarithm of the AVX-512 float log2_nonnegative, for a finite x > 0 (normal or
/// subnormal): \f$x = m 2^k\f$ with \f$m \in [0.75, 1.5)\f$ (getmant; k from two getexp), then
/// \f$\log_2 m = \log_2 c_i + \log_2(1 + r)\f$, \f$r = m/c_i - 1\f$ (one fused multiply-add by a
/// tabulated \f$1/c_i\f$), with \f$c_i\f$ the centre of the 32nd of [0.75, 1.5) that the top five
/// bits of m's mantissa name (two 32-entry tables, one vpermt2ps each), or 1 for the two 32nds
/// beside 1, so that near 1 the log is \f$r P(r)\f$ alone, to full relative accuracy. \f$|r| < 1/32\f$:
/// a cubic P (minimax fit of \f$\log_2(1+r)/r\f$ on [-1/64, 1/32], error 1.1e-8) suffices. A shorter
/// dependency chain than `log2_positive`'s (four multiplies or multiply-adds in sequence after the
/// lookups, against ten) and fewer of them (six against thirteen): the mixture divergences' value
/// pass waits on its log.
KDLOSS_INLINE __m512 log2_table(__m512 x) {
  alignas(64) static constexpr float kInv[32] = {  // 1/c_i, rounded
      1.000000000e+00f, 9.552238584e-01f, 9.275362492e-01f, 9.014084339e-01f, 8.767123222e-01f,
      8.533333540e-01f, 8.311688304e-01f, 8.101266026e-01f, 7.901234627e-01f, 7.710843086e-01f,
      7.529411912e-01f, 7.356321812e-01f, 7.191011310e-01f, 7.032967210e-01f, 6.881720424e-01f,
      6.736842394e-01f, 1.319587588e+00f, 1.292929292e+00f, 1.267326713e+00f, 1.242718458e+00f,
      1.219047666e+00f, 1.196261644e+00f, 1.174311876e+00f, 1.153153181e+00f, 1.132743359e+00f,
      1.113043427e+00f, 1.094017148e+00f, 1.075630307e+00f, 1.057851195e+00f, 1.040650368e+00f,
      1.024000049e+00f, 1.000000000e+00f};
  alignas(64) static constexpr float kLog[32] = {  // -log2 of the rounded 1/c_i
      0.000000000e+00f,  6.608922035e-02f,  1.085244268e-01f,  1.497471482e-01f,  1.898245662e-01f,
      2.288186550e-01f,  2.667865455e-01f,  3.037807047e-01f,  3.398499787e-01f,  3.750394881e-01f,
      4.093908966e-01f,  4.429435134e-01f,  4.757334292e-01f,  5.077946186e-01f,  5.391588211e-01f,
      5.698555708e-01f,  -4.000871181e-01f, -3.706433773e-01f, -3.417885005e-01f, -3.134994805e-01f,
      -2.857545316e-01f, -2.585329711e-01f, -2.318156064e-01f, -2.055841684e-01f, -1.798210293e-01f,
      -1.545098871e-01f, -1.296353489e-01f, -1.051823124e-01f, -8.113670349e-02f, -5.748544261e-02f,
      -3.421578556e-02f, 0.000000000e+00f};
  const __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_zero);
  // getexp(x) is floor(log2 x); m below 1 (getexp -1) took one more factor 2 from x.
  const __m512 k = _mm512_sub_ps(_mm512_getexp_ps(x), _mm512_getexp_ps(m));
  // vpermt2ps reads the low 5 bits of each index: m's top five mantissa bits (0-15 for [1, 1.5),
  // 16-31 for [0.75, 1)).
  const __m512i i = _mm512_srli_epi32(_mm512_castps_si512(m), 18);
  const __m512 inv = _mm512_permutex2var_ps(_mm512_load_ps(kInv), i, _mm512_load_ps(kInv + 16));
  const __m512 lc = _mm512_permutex2var_ps(_mm512_load_ps(kLog), i, _mm512_load_ps(kLog + 16));
  const __m512 r = _mm512_fmsub_ps(m, inv, _mm512_set1_ps(1.0f));
  // P(r) = (c0 + c1 r) + r^2 (c2 + c3 r): two multiply-adds deep, not three.
  const __m512 hi = _mm512_fmadd_ps(_mm512_set1_ps(-3.5192868114e-01f), r, _mm512_set1_ps(4.8095139861e-01f));
  const __m512 lo = _mm512_fmadd_ps(_mm512_set1_ps(-7.2134941816e-01f), r, _mm512_set1_ps(1.4426950216e+00f));
  const __m512 p = _mm512_fmadd_ps(hi, _mm512_mul_ps(r, r), lo);
  return _mm512_fmadd_ps(p, r, _mm512_add_ps(k, lc));
}
}  // namespace detail

/// AVX-512 float specialisation of log2_nonnegative (`detail::log2_table`).
KDLOSS_INLINE batch<float, avx512> log2_nonnegative(batch<float, avx512> x) {
  const __mmask16 zero = _mm512_cmp_ps_mask(x.v, _mm512_setzero_ps(), _CMP_EQ_OQ);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  return {_mm512_mask_blend_ps(zero, detail::log2_table(x.v), ninf)};
}

/// AVX-512 float specialisation of log2_at_least: `detail::log2_table` gives NaN at 0 (its
/// exponent is -inf - -inf), and vmaxps returns its second operand, the bound, where the first is
/// NaN.
KDLOSS_INLINE batch<float, avx512> log2_at_least(batch<float, avx512> x, batch<float, avx512> lo) {
  return {_mm512_max_ps(detail::log2_table(x.v), lo.v)};
}
KDLOSS_AVX512_WARNINGS_END
#endif

/// Lane-wise \f$e^x - 1\f$, accurate for small \f$|x|\f$ (a series below 1/2, `exp(x) - 1` above).
template <class B>
KDLOSS_INLINE B expm1(B x) {
  using T = typename B::value_type;
  const B small = detail::expm1_constants<T>::small(x);
  return select(abs(x) < B::splat(T(0.5)), small, exp(x) - B::splat(T(1)));
}

/// Lane-wise \f$2^y\f$ for \f$y \le 64\f$, the kernels' exponential (an exponent a softmax kernel
/// takes is \f$\le 0\f$ after subtracting a row maximum, or up to 64 in pass 1, which subtracts the
/// maxima of the blocks before). Cheaper than `exp`: the argument is
/// already in base 2 (the kernels fold \f$\log_2 e\f$ and \f$1/\tau\f$ into one multiplier), and the
/// polynomial is one degree lower. float: within 3 ulp of `std::exp2`, \f$2^0 = 1\f$ exactly,
/// \f$y = -\infty\f$ gives exactly 0, NaN propagates. double: the full-accuracy
/// `exp` of \f$y\ln 2\f$. A larger y, up to \f$+\infty\f$, gives some value without undefined
/// behaviour (pass 1 sweeps such a block again and discards what it summed).
template <class B>
KDLOSS_INLINE B exp2_nonpositive(B y) {
  using T = typename B::value_type;
  if constexpr (std::is_same<T, float>::value) {
    // Below -151 every result rounds to 0; the clamp keeps -inf (masked entries) exactly 0.
    y = max(B::splat(-160.0f), y);  // constant first: NaN survives
    const B n = round_nearest(y);
    const B f = y - n;  // exact, |f| <= 1/2
    // 2^f on [-1/2, 1/2] with 2^0 = 1 exactly: weighted least-squares fit, max relative error
    // 1.8e-7.
    B p = fma(B::splat(1.309864921e-03f), f, B::splat(9.675340727e-03f));
    p = fma(p, f, B::splat(5.551403761e-02f));
    p = fma(p, f, B::splat(2.402216494e-01f));
    p = fma(p, f, B::splat(6.931463480e-01f));
    p = fma(p, f, B::splat(1.0f));
    return ldexp2(p, n);
  } else {
    return exp(y * B::splat(T(0.69314718055994530942)));
  }
}

#if defined(__AVX512F__)
KDLOSS_AVX512_WARNINGS_BEGIN
namespace detail {
/// 2^(j/32), j = 0..31, correctly rounded: the table of the AVX-512 float exponentials below.
alignas(64) inline constexpr float kExp2Table[32] = {
    1.000000000e+00f, 1.021897197e+00f, 1.044273734e+00f, 1.067140460e+00f,
    1.090507746e+00f, 1.114386797e+00f, 1.138788581e+00f, 1.163724899e+00f,
    1.189207077e+00f, 1.215247393e+00f, 1.241857767e+00f, 1.269050956e+00f,
    1.296839595e+00f, 1.325236678e+00f, 1.354255557e+00f, 1.383909941e+00f,
    1.414213538e+00f, 1.445180774e+00f, 1.476826191e+00f, 1.509164453e+00f,
    1.542210817e+00f, 1.575980902e+00f, 1.610490322e+00f, 1.645755529e+00f,
    1.681792855e+00f, 1.718619347e+00f, 1.756252170e+00f, 1.794709086e+00f,
    1.834008098e+00f, 1.874167681e+00f, 1.915206552e+00f, 1.957144141e+00f};

/// The table exponential's last steps: \f$2^{\lfloor r\rfloor} \cdot 2^{j/32} \cdot 2^f\f$ from
/// z = y + 1.5 * 2^18 (whose low mantissa bits are j, the 32nds of r above floor(r)), |f| <= 1/64
/// (a quadratic suffices: minimax relative error 5.3e-8) and r = y - f.
KDLOSS_INLINE __m512 exp2_table_at(__m512 z, __m512 f, __m512 r) {
  // vpermt2ps reads the low 5 bits of each index.
  const __m512 t = _mm512_permutex2var_ps(_mm512_load_ps(kExp2Table), _mm512_castps_si512(z), _mm512_load_ps(kExp2Table + 16));
  const __m512 q = _mm512_mul_ps(_mm512_fmadd_ps(_mm512_set1_ps(2.4023181908e-01f), f, _mm512_set1_ps(6.9315739912e-01f)), f);
  return _mm512_scalef_ps(_mm512_fmadd_ps(q, t, t), r);
}

/// The table exponential of the AVX-512 float exp2_nonpositive and exp2, for an argument whose
/// infinities are already mapped to finite values: 2^y = 2^floor(r) * 2^(j/32) * 2^f with r the
/// nearest multiple of 1/32, j its 32nds (a 32-entry table in two registers, one vpermt2ps) and
/// |f| <= 1/64, where a quadratic suffices. r comes from the rounding of y + 1.5 * 2^18 (its ulp is
/// 1/32, and its low mantissa bits are j), and scalef applies 2^floor(r) exactly (subnormals
/// included, and overflow to +inf). Within 2 ulp of std::exp2 on [-126, 64]; one instruction fewer
/// than a 16-entry table with a cubic (5% faster alone), and the exponential is what the kernels
/// spend most of their time on.
KDLOSS_INLINE __m512 exp2_table(__m512 yc) {
  const __m512 magic = _mm512_set1_ps(393216.0f);  // 1.5 * 2^18
  const __m512 z = _mm512_add_ps(yc, magic);
  const __m512 r = _mm512_sub_ps(z, magic);  // exact: y rounded to 1/32
  return exp2_table_at(z, _mm512_sub_ps(yc, r), r);  // f exact
}

#if defined(__AVX512DQ__)
/// exp2_table for every y, infinities included, without a bound first: f comes from vreduceps (y
/// less its nearest multiple of 1/32, ties to even as the rounding of y + 1.5 * 2^18; 0 at +-inf),
/// and r = y - f (exact). So -inf gives scalef(t, -inf) = 0, +inf gives +inf and NaN propagates, in
/// one instruction fewer than a bound (or vfixupimmps) and exp2_table. The same z, r and f as
/// exp2_table's wherever |y| < 2^17, so the same values; below, 0 as there.
KDLOSS_INLINE __m512 exp2_table_any(__m512 y) {
  const __m512 z = _mm512_add_ps(y, _mm512_set1_ps(393216.0f));  // 1.5 * 2^18
  const __m512 f = _mm512_reduce_ps(y, (5 << 4) | _MM_FROUND_TO_NEAREST_INT);  // |f| <= 1/64
  return exp2_table_at(z, f, _mm512_sub_ps(y, f));
}
#endif
}  // namespace detail

/// AVX-512 float specialisation of exp2_nonpositive: `detail::exp2_table_any` with AVX512DQ (every
/// AVX-512 processor since Skylake-SP), else a bound and `detail::exp2_table`.
KDLOSS_INLINE batch<float, avx512> exp2_nonpositive(batch<float, avx512> y) {
#if defined(__AVX512DQ__)
  return {detail::exp2_table_any(y.v)};
#else
  // Below -160 every result is 0; the bound keeps -inf (masked entries) exactly 0 (constant first:
  // NaN survives).
  return {detail::exp2_table(_mm512_max_ps(_mm512_set1_ps(-160.0f), y.v))};
#endif
}
KDLOSS_AVX512_WARNINGS_END
#endif

/// Lane-wise \f$2^y\f$ for any y: a power \f$x^c = 2^{c\log_2 x}\f$ of either sign of c, with no
/// test of the sign per vector. float: the kernels' exponential (`exp2_nonpositive`) of y bounded
/// above by 192 (from 128 on, every result is \f$+\infty\f$): within 3 ulp of `std::exp2` wherever
/// that is a normal float, \f$+\infty\f$ from y = 128 on, 0 at \f$-\infty\f$, NaN propagates
/// (`tests/simd/exp.test.cpp`). double: the full-range `exp` of \f$y\ln 2\f$.
template <class B>
KDLOSS_INLINE B exp2(B y) {
  using T = typename B::value_type;
  if constexpr (std::is_same<T, float>::value)
    return exp2_nonpositive(min(B::splat(192.0f), y));  // constant first: NaN survives
  else
    return exp2_nonpositive(y);
}

#if defined(__AVX512F__)
KDLOSS_AVX512_WARNINGS_BEGIN
/// AVX-512 float specialisation of exp2: with AVX512DQ, `detail::exp2_table_any`, which takes every
/// float as it is; else one vfixupimmps maps -inf to the lowest float and +inf to the largest (which
/// the table exponential takes to 0 and +inf), in place of the two bounds. The same result as the
/// generic form for every float, and as fast as exp2_nonpositive.
KDLOSS_INLINE batch<float, avx512> exp2(batch<float, avx512> y) {
#if defined(__AVX512DQ__)
  return {detail::exp2_table_any(y.v)};
#else
  // A 4-bit response per class of y: QNaN, SNaN -> quiet y; 0, +1, finite -> y; -inf -> -FLT_MAX;
  // +inf -> +FLT_MAX.
  return {detail::exp2_table(_mm512_fixupimm_ps(y.v, y.v, _mm512_set1_epi32(0x11EF1121), 0))};
#endif
}
KDLOSS_AVX512_WARNINGS_END
#endif

/// Whether `exp2_unbounded` is cheaper than `exp2_nonpositive` on this batch type (the AVX-512
/// float path); elsewhere it is `exp2_nonpositive` itself.
template <class B>
inline constexpr bool has_exp2_unbounded = false;

/// `exp2_nonpositive` without its lower bound, for a loop that checks its sums and takes the bounded
/// form again where they are not finite (pass 1): the table exponential alone, which costs less than
/// a bound and the table, and less than `detail::exp2_table_any`'s vreduceps too (pass 1 in cache,
/// value only: 0.175 against 0.181 ns per entry). For every y <= 64 the result is
/// `exp2_nonpositive`'s, bit for bit, or not finite: -inf gives 0 or NaN (as the processor's scalef
/// takes a NaN by -inf), and only a finite y below -2^80 may give +inf. So a sum of them that is
/// finite is the bounded form's (`tests/simd/exp.test.cpp` checks every 97th float). NaN
/// propagates.
template <class B>
KDLOSS_INLINE B exp2_unbounded(B y) {
  return exp2_nonpositive(y);
}

#if defined(__AVX512F__)
KDLOSS_AVX512_WARNINGS_BEGIN
template <>
inline constexpr bool has_exp2_unbounded<batch<float, avx512>> = true;
/// AVX-512 float specialisation of exp2_unbounded: the table exponential alone (`detail::exp2_table`).
KDLOSS_INLINE batch<float, avx512> exp2_unbounded(batch<float, avx512> y) {
  return {detail::exp2_table(y.v)};
}
KDLOSS_AVX512_WARNINGS_END
#endif

/// Scalar convenience overload of the vector exp (the same algorithm at width 1).
template <class T>
KDLOSS_INLINE T exp_scalar(T x) {
  return exp(batch<T, scalar>::splat(x)).v;
}

}  // namespace simd
KDLOSS_END_NAMESPACE
