// kdloss kernels: the teacher's "head" of AdaptiveKL without sorting the row — the top tokens
// (logit descending, index ascending) whose inclusive cumulative probability stays <= mu.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sweep.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// Where the head ends, in sorted order: every entry whose key (teacher logit) is above `key`,
/// then the first `ties` entries (by index) whose key equals `key`.
template <class T>
struct HeadCut {
  T key;
  Index ties = 0;
  Index above = 0;  ///< number of entries strictly above `key`
  Index size() const { return above + ties; }
};

/// Scratch of the exact selection (three pairs of key/mass buffers of the row's length).
template <class T>
struct SelectScratch {
  std::vector<T> key[3], mass[3];
  void reserve(Index n) {
    // One batch of slack: vector partitions store full vectors at the write position.
    for (int i = 0; i < 3; ++i) key[i].resize(static_cast<size_t>(n) + 64), mass[i].resize(static_cast<size_t>(n) + 64);
  }
};

namespace detail_select {
/// Partitions (key, mass)[0, n) into keys > pivot (to g) and keys < pivot (to l); returns the
/// masses and counts of the three groups.
template <class Arch, class T>
void partition(const T* key, const T* mass, Index n, T pivot, T* gk, T* gm, T* lk, T* lm, Index& ng,
               Index& nl, double& mg, double& me, Index& ne) {
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  const B pb = B::splat(pivot);
  BlockSum<B> vg, ve;
  ng = nl = ne = 0;
  Index j = 0;
  for (; j + W <= n; j += W) {
    const B k = B::load(key + j), m = B::load(mass + j);
    const auto gt = k > pb, lt = k < pb, eq = k == pb;
    vg.add(select(gt, m, B::splat(0)));
    ve.add(select(eq, m, B::splat(0)));
    ne += count(eq);
    compress_store(gk + ng, gt, k);
    ng += compress_store(gm + ng, gt, m);
    compress_store(lk + nl, lt, k);
    nl += compress_store(lm + nl, lt, m);
  }
  mg = vg.value();
  me = ve.value();
  for (; j < n; ++j) {
    if (key[j] > pivot) {
      gk[ng] = key[j], gm[ng] = mass[j], mg += static_cast<double>(mass[j]), ++ng;
    } else if (key[j] < pivot) {
      lk[nl] = key[j], lm[nl] = mass[j], ++nl;
    } else {
      me += static_cast<double>(mass[j]), ++ne;
    }
  }
}
}  // namespace detail_select

/// Exact cut of the head: the entries in (key descending, index ascending) order are kept while
/// their inclusive cumulative mass stays <= mu; the first entry is always kept. `key` and `mass`
/// are the row's teacher logits and probabilities (contiguous, n entries). Expected O(n): a
/// mass-guided quickselect whose partitions are vectorised (one compress per group per vector).
template <class Arch, class T>
HeadCut<T> select_head(const T* key, const T* mass, Index n, double mu, SelectScratch<T>& s) {
  HeadCut<T> cut;
  double budget = mu;
  const T* ck = key;
  const T* cm = mass;
  Index cn = n;
  int in = -1;  // which scratch pair holds the current set (-1: the row itself)
  std::uint64_t seed = 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(n);
  while (cn > 0) {
    // Pivot: the median of three pseudo-random keys of the current set.
    auto pick = [&] {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      return ck[static_cast<Index>((seed >> 33) % static_cast<std::uint64_t>(cn))];
    };
    const T a = pick(), b = pick(), c = pick();
    const T pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));
    // The two scratch pairs that do not hold the current set receive its two sides.
    int g = 0, l = 1;
    if (in == 0) g = 1, l = 2;
    if (in == 1) g = 0, l = 2;
    Index ng, nl, ne;
    double mg, me;
    detail_select::partition<Arch>(ck, cm, cn, pivot, s.key[g].data(), s.mass[g].data(), s.key[l].data(),
                                   s.mass[l].data(), ng, nl, mg, me, ne);
    if (mg > budget) {  // the crossing is among the keys above the pivot
      ck = s.key[g].data(), cm = s.mass[g].data(), cn = ng, in = g;
      continue;
    }
    budget -= mg;
    cut.above += ng;
    if (me > budget) {  // it is among the ties at the pivot: keep them in index order while they fit
      const double each = me / static_cast<double>(ne);
      Index t = 0;
      double used = 0;
      while (t < ne && used + each <= budget) used += each, ++t;
      cut.key = pivot;
      cut.ties = t;
      return cut;
    }
    budget -= me;
    cut.above += ne;
    ck = s.key[l].data(), cm = s.mass[l].data(), cn = nl, in = l;
    cut.key = pivot;
  }
  // Everything fits (mu >= 1 up to rounding): the head is the whole row.
  cut.ties = 0;
  cut.key = -std::numeric_limits<T>::infinity();
  cut.above = n;
  return cut;
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
