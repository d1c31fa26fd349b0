// kdloss SIMD layer: instruction-set tags and the compile-time choice of the best one.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <type_traits>

#include "../config.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace simd {

/// Portable width-1 implementation of every primitive; the oracle the vector paths are tested
/// against, and the fallback on any architecture without a vector path.
struct scalar {
  static constexpr const char* name = "scalar";
  /// Whether `fma`/`fms` round once (a hardware fused multiply-add). Without it they are a multiply
  /// and an add, and a kernel that relies on the exact product inside them takes another route.
  static constexpr bool fused_multiply_add = false;
};
/// x86-64 baseline: 128-bit SSE2 (every x86-64 CPU).
struct sse2 : scalar {
  static constexpr const char* name = "sse2";
};
/// 256-bit AVX2 with FMA3 (compile with `-mavx2 -mfma` or a `-march` that has them).
struct avx2 : sse2 {
  static constexpr const char* name = "avx2";
  static constexpr bool fused_multiply_add = true;
};
/// 512-bit AVX-512F (compile with `-mavx512f` or a `-march` that has it).
struct avx512 : avx2 {
  static constexpr const char* name = "avx512";
};

/// Whether the primitives of `Arch` can be compiled in this translation unit.
template <class Arch>
struct is_available : std::false_type {};
template <>
struct is_available<scalar> : std::true_type {};
#if defined(__SSE2__) || defined(_M_X64)
template <>
struct is_available<sse2> : std::true_type {};
#endif
#if defined(__AVX2__) && defined(__FMA__)
template <>
struct is_available<avx2> : std::true_type {};
#endif
#if defined(__AVX512F__)
template <>
struct is_available<avx512> : std::true_type {};
#endif

/// The instruction set every kdloss functor uses by default: the widest one the compiler flags
/// enable (`-march=native` on an AVX-512 machine gives avx512; a plain x86-64 build gives sse2).
/// `-DKDLOSS_SIMD_FORCE_SCALAR` forces the portable scalar path.
#if defined(KDLOSS_SIMD_FORCE_SCALAR)
using best_arch = scalar;
#elif defined(__AVX512F__)
using best_arch = avx512;
#elif defined(__AVX2__) && defined(__FMA__)
using best_arch = avx2;
#elif defined(__SSE2__) || defined(_M_X64)
using best_arch = sse2;
#else
using best_arch = scalar;
#endif

}  // namespace simd
KDLOSS_END_NAMESPACE
