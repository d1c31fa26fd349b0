// kdloss kernels: row sources and the vector sweep every kernel loop is written with.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>

#include "../simd/simd.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

using Index = std::ptrdiff_t;

/// Lane selector of a full vector.
struct Full {};
/// Lane selector of the last, partial vector of a row: its first `n` lanes are real.
struct Tail {
  int n;
};

/// Loads `W` lanes at `p`; a Tail fills the missing lanes with `fill` (never reads past the row).
template <class B, class T>
KDLOSS_INLINE B load(const T* p, Full, T) {
  return B::load(p);
}
template <class B, class T>
KDLOSS_INLINE B load(const T* p, Tail t, T fill) {
  return B::load_partial(p, t.n, fill);
}
template <class B, class T>
KDLOSS_INLINE void store(T* p, B v, Full) {
  v.store(p);
}
template <class B, class T>
KDLOSS_INLINE void store(T* p, B v, Tail t) {
  v.store_partial(p, t.n);
}

/// The inputs of the row a thread computes after this one (null: none, or not known). A pass that
/// is bound by its arithmetic, not by memory (the family's value pass, AdaptiveKL's pass 2),
/// prefetches them as it goes, one line of each per vector it computes, so that the next row's
/// pass 1, which is bound by memory, reads from cache instead.
template <class T>
struct NextRow {
  const T* teacher = nullptr;
  const T* student = nullptr;
  /// Prefetches the lines holding entry `j` of both rows (nothing when there is no next row).
  KDLOSS_INLINE void prefetch(std::ptrdiff_t j) const {
    if (teacher != nullptr) {
      KDLOSS_PREFETCH(teacher + j);
      KDLOSS_PREFETCH(student + j);
    }
  }
};

/// Where a row kernel writes its gradient: `row = scale * dL/ds + beta * row` (with beta = 0 the
/// old contents are never read). A null `row` means a value-only call. `next` is a hint only: the
/// row after this one, for a pass to prefetch (see NextRow); it never changes a result.
template <class T>
struct GradOut {
  T* row = nullptr;
  T scale = T(1);
  T beta = T(0);
  NextRow<T> next{};
};

/// Calls `f(j, lanes)` for every vector of the range [j0, j1): full vectors, then one Tail.
template <int W, class F>
KDLOSS_INLINE void sweep(Index j0, Index j1, F&& f) {
  Index j = j0;
  for (; j + W <= j1; j += W) f(j, Full{});
  if (j < j1) f(j, Tail{static_cast<int>(j1 - j)});
}

/// The same vectors as `sweep`, last first (the Tail, then full vectors downwards). A second pass
/// over a row that does not fit in L2 runs backwards so it starts on the lines the first pass
/// touched last, which are still cached.
template <int W, class F>
KDLOSS_INLINE void sweep_reverse(Index j0, Index j1, F&& f) {
  const Index full = (j1 - j0) / W;
  const Index tail = j0 + full * W;
  if (tail < j1) f(tail, Tail{static_cast<int>(j1 - tail)});
  for (Index j = tail - W; j >= j0; j -= W) f(j, Full{});
}

/// A sum over a long row kept accurate in float: vectors accumulate in T for `Steps` steps at a
/// time, then into a double total (a float running sum over 150k entries would lose digits).
template <class B, int Steps = 64>
struct BlockSum {
  B acc = B::splat(0);
  int count = 0;
  double total = 0;
  KDLOSS_INLINE void add(B x) {
    acc = acc + x;
    if (++count == Steps) flush();
  }
  KDLOSS_INLINE void flush() {
    total += hsum_wide(acc);
    acc = B::splat(0);
    count = 0;
  }
  /// The sum so far.
  double value() {
    flush();
    return total;
  }
};

/// A logit row read straight from memory (the common teacher and every student).
template <class T>
struct PlainRow {
  const T* p;
  template <class B, class L>
  KDLOSS_INLINE B load(Index j, L lanes) const {
    return kernels::load<B>(p + j, lanes, -std::numeric_limits<T>::infinity());
  }
};

/// A logit row with one entry (the label's) read as -inf: the row of the "non-target" classes,
/// renormalised over the others (DKD, NKD). A label outside [0, n) masks nothing.
template <class T>
struct LabelMaskedRow {
  const T* p;
  Index label;
  template <class B, class L>
  KDLOSS_INLINE B load(Index j, L lanes) const {
    const B v = kernels::load<B>(p + j, lanes, -std::numeric_limits<T>::infinity());
    if (label < j || label >= j + B::size) return v;
    alignas(64) T lane[B::size];
    v.store(lane);
    lane[label - j] = -std::numeric_limits<T>::infinity();
    return B::load(lane);
  }
};

}  // namespace kernels
KDLOSS_END_NAMESPACE
