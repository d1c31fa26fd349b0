// The comparisons of a loss on a test binary's instruction set with the same loss on the scalar
// path (the oracle), shared by the path tests (tests/simd/paths*.test.cpp).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "support/contract.hpp"
#include "support/specs.hpp"

namespace kdtest::paths {
namespace simd = kdloss::simd;

template <class Spec, class T>
void compare_on(const kdloss::RowMatrix<T>& S, const kdloss::RowMatrix<T>& Tt, double tau) {
  const long n = S.rows(), v = S.cols();
  kdloss::Options<T> o;
  o.temperature = static_cast<T>(tau);
  o.reduction = kdloss::Reduction::Sum;
  const auto fast = Spec::template make<T>(o);
  const auto oracle = Spec::template make<T, simd::scalar>(o);
  kdloss::RowMatrix<T> G(n, v), Gs(n, v);
  const double value = static_cast<double>(fast(S, Tt, G));
  const double value_s = static_cast<double>(oracle(S, Tt, Gs));
  // Both are compared on the reference's error scale (what either computation rounds).
  const kdloss::RowMatrix<double> Sd = kdtest::to_double(S), Td = kdtest::to_double(Tt);
  const auto m = kdtest::ref::reduce(Spec::row, Sd.data(), Td.data(), n, v, nullptr, kdtest::reduce_of(o));
  const double e = kdtest::eps<T>(), tiny = static_cast<double>(std::numeric_limits<T>::min());
  CHECK(std::fabs(value - value_s) <= 2 * kdtest::kUlpFactor * e * m.value_scale + tiny);
  const std::string why = kdtest::compare(G, kdtest::rows_of(Gs), [&](long i, long j) {
    return 2 * kdtest::kUlpFactor * e * m.grad_scale[static_cast<size_t>(i)][static_cast<size_t>(j)] + tiny;
  });
  INFO(why);
  CHECK(why.empty());
}

/// Random student and teacher rows, with a fraction `mask` of the entries masked on both sides
/// (legal for every loss).
template <class T>
void random_pair(long n, long v, std::uint32_t s, double mask, kdloss::RowMatrix<T>& S, kdloss::RowMatrix<T>& Tt) {
  S = kdtest::random_logits<T>(n, v, s), Tt = kdtest::random_logits<T>(n, v, s + 1);
  if (mask <= 0) return;
  kdtest::mask_random(S, mask, s + 2);
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < v; ++j)
      if (std::isinf(static_cast<double>(S(i, j)))) Tt(i, j) = S(i, j);
}

template <class Spec, class T>
void compare_with_scalar(long n, long v, double tau, std::uint32_t s, double mask) {
  INFO(Spec::name << " on " << simd::best_arch::name << " vs scalar: N=" << n << " V=" << v
                  << " tau=" << tau << " mask=" << mask);
  kdloss::RowMatrix<T> S, Tt;
  random_pair(n, v, s, mask, S, Tt);
  compare_on<Spec>(S, Tt, tau);
}

/// Rows that take pass 1's other routes on a vector path: maxima rising along the row (at every
/// block by less than the rise pass 1 lets a block keep, 4 in base 2: at most 0.41 nats in 2048
/// entries, and by jumps beyond it, swept again), a first stretch of -inf on both sides,
/// logits in the thousands from the start (no fused exponent) and from part way (a stash whose
/// blocks mix references, which the gradient pass does not read). Every row spans several blocks.
template <class Spec, class T>
void compare_special_rows(double tau, std::uint32_t s) {
  INFO(Spec::name << " on " << simd::best_arch::name << " vs scalar: special rows, tau=" << tau);
  const long n = 5, v = 9000;
  kdloss::RowMatrix<T> S = kdtest::random_logits<T>(n, v, s, 2.0), Tt = kdtest::random_logits<T>(n, v, s + 1, 2.0);
  for (long j = 0; j < v; ++j) {
    const double x = static_cast<double>(j);
    S(0, j) = static_cast<T>(0.01 * static_cast<double>(S(0, j)) + 2e-4 * x);
    Tt(0, j) = static_cast<T>(0.01 * static_cast<double>(Tt(0, j)) + 1.5e-4 * x);
    if (j >= 3000) S(1, j) += T(80), Tt(1, j) += T(60);
    if (j < 2500) S(2, j) = Tt(2, j) = -std::numeric_limits<T>::infinity();
    S(3, j) += T(3000), Tt(3, j) += T(3000);
    if (j >= 4500) S(4, j) += T(3000), Tt(4, j) += T(3000);
  }
  compare_on<Spec>(S, Tt, tau);
}

/// Random rows of every vector-tail shape, a masked batch, and the rows of `compare_special_rows`.
template <class Spec, class T>
void compare_all_shapes() {
  std::uint32_t s = kdtest::seed(900);
  for (const long v : {1L, 2L, 3L, 7L, 8L, 9L, 15L, 16L, 17L, 31L, 33L, 63L, 65L, 1271L, 32000L, 65537L})
    for (const double tau : {1.0, 0.5})
      compare_with_scalar<Spec, T>(v > 10000 ? 2 : 3, v, tau, s++, 0.0);
  compare_with_scalar<Spec, T>(4, 1031, 2.0, s++, 0.3);
  compare_special_rows<Spec, T>(1.0, s++);
  compare_special_rows<Spec, T>(0.5, s++);
}
}  // namespace kdtest::paths
