// kdloss: version, ISA namespace and the error helpers every header uses.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdexcept>
#include <string>

/// Library version (semantic versioning).
#define KDLOSS_VERSION_MAJOR 0
#define KDLOSS_VERSION_MINOR 1
#define KDLOSS_VERSION_PATCH 0

// kdloss relies on IEEE semantics: -inf logits are legal masks, NaN must propagate to the checks,
// and the vector exp uses exact rounding tricks. -ffast-math silently breaks all three.
#if (defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)) && \
    !defined(KDLOSS_ALLOW_FAST_MATH)
#error "kdloss needs IEEE floating point: do not compile it with -ffast-math/-ffinite-math-only \
(define KDLOSS_ALLOW_FAST_MATH to override at your own risk)"
#endif

// Every ISA-dependent entity lives in an inline namespace named after the instruction set chosen
// from the compiler flags. Translation units built with different -m flags then instantiate
// differently-mangled functions, so the linker can never pick an AVX-512 copy for an SSE2 caller
// (the classic header-only SIMD ODR hazard). User code still writes kdloss::ForwardKL.
#if defined(KDLOSS_SIMD_FORCE_SCALAR)
#define KDLOSS_ISA_NAMESPACE isa_scalar
#elif defined(__AVX512F__)
#define KDLOSS_ISA_NAMESPACE isa_avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define KDLOSS_ISA_NAMESPACE isa_avx2
#elif defined(__SSE2__) || defined(_M_X64)
#define KDLOSS_ISA_NAMESPACE isa_sse2
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define KDLOSS_ISA_NAMESPACE isa_neon
#else
#define KDLOSS_ISA_NAMESPACE isa_scalar
#endif

#define KDLOSS_BEGIN_NAMESPACE \
  namespace kdloss {           \
  inline namespace KDLOSS_ISA_NAMESPACE {
#define KDLOSS_END_NAMESPACE \
  }                          \
  }

#if defined(__GNUC__) || defined(__clang__)
#define KDLOSS_INLINE inline __attribute__((always_inline))
/// For a lambda, after its parameter list: `[&](Index j, auto lanes) KDLOSS_INLINE_LAMBDA { ... }`.
#define KDLOSS_INLINE_LAMBDA __attribute__((always_inline))
#define KDLOSS_NOINLINE __attribute__((noinline))
#define KDLOSS_COLD __attribute__((cold))
#define KDLOSS_RESTRICT __restrict__
#define KDLOSS_LIKELY(x) __builtin_expect(!!(x), 1)
#define KDLOSS_UNLIKELY(x) __builtin_expect(!!(x), 0)
/// A hint to bring the line at `p` into the cache for reading (never faults; no-op elsewhere).
#define KDLOSS_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define KDLOSS_INLINE inline
#define KDLOSS_INLINE_LAMBDA
#define KDLOSS_NOINLINE
#define KDLOSS_COLD
#define KDLOSS_RESTRICT
#define KDLOSS_LIKELY(x) (x)
#define KDLOSS_UNLIKELY(x) (x)
#define KDLOSS_PREFETCH(p) ((void)(p))
#endif

// g++ 12 implements _mm512_undefined_*() as a self-initialised variable, and the masked builtins
// behind _mm512_min_ps & co. then trip -Wuninitialized once inlined into user code (GCC PR 105593,
// fixed in g++ 13). The values are never read; these silence the false positive for our code only.
#if defined(__GNUC__) && !defined(__clang__)
#define KDLOSS_AVX512_WARNINGS_BEGIN                          \
  _Pragma("GCC diagnostic push")                              \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")       \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define KDLOSS_AVX512_WARNINGS_END _Pragma("GCC diagnostic pop")
#else
#define KDLOSS_AVX512_WARNINGS_BEGIN
#define KDLOSS_AVX512_WARNINGS_END
#endif

namespace kdloss::internal {

/// Throws `E` with `msg`. Out of line and cold so the checks cost one predictable branch.
template <class E>
[[noreturn]] KDLOSS_NOINLINE KDLOSS_COLD void fail(const std::string& msg) {
  throw E(msg);
}

}  // namespace kdloss::internal

/// Always-on precondition check: throws std::invalid_argument (bad shape, option, weight).
#define KDLOSS_REQUIRE(cond, msg)                                            \
  do {                                                                       \
    if (KDLOSS_UNLIKELY(!(cond))) ::kdloss::internal::fail<std::invalid_argument>(msg); \
  } while (false)
