// kdloss kernels: the O(V) stable LSD radix sort of a logit row, descending (a ranking of classes).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "sweep.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// The unsigned integer of a float type's width (the sort key).
template <class T>
using RadixKey = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

/// An order-reversing map of a non-NaN float to an unsigned key: \f$x < y \Leftrightarrow
/// \mathrm{key}(x) > \mathrm{key}(y)\f$, and \f$-0 = +0\f$ map to the same key (the sum with +0
/// turns -0 into +0). \f$-\infty\f$ gets the largest key of any value, so it sorts last.
template <class T>
KDLOSS_INLINE RadixKey<T> descending_key(T x) {
  using K = RadixKey<T>;
  constexpr int kTop = 8 * sizeof(K) - 1;
  x += T(0);
  K u;
  std::memcpy(&u, &x, sizeof u);
  // Ascending map: a negative value flips every bit, a positive one its sign bit only.
  const K flip = static_cast<K>(static_cast<K>(0) - (u >> kTop)) | (static_cast<K>(1) << kTop);
  return static_cast<K>(~(u ^ flip));
}

/// The value of a key made by `descending_key` (the inverse, with -0 read back as +0).
template <class T>
KDLOSS_INLINE T descending_key_value(RadixKey<T> key) {
  using K = RadixKey<T>;
  constexpr int kTop = 8 * sizeof(K) - 1;
  const K asc = static_cast<K>(~key);
  // asc's top bit set: a positive value (flip the sign bit back); clear: a negative one (flip all).
  const K flip = static_cast<K>(~(static_cast<K>(0) - (asc >> kTop))) | (static_cast<K>(1) << kTop);
  const K u = static_cast<K>(asc ^ flip);
  T x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

/// One sorted entry: its key and its class index. float rows pack both in 64 bits (key high,
/// index low), double rows use a pair.
template <class T>
struct RadixItems;

template <>
struct RadixItems<float> {
  using Item = std::uint64_t;
  static KDLOSS_INLINE Item make(std::uint32_t key, std::uint32_t index) {
    return (static_cast<std::uint64_t>(key) << 32) | index;
  }
  static KDLOSS_INLINE std::uint32_t key(Item it) { return static_cast<std::uint32_t>(it >> 32); }
  static KDLOSS_INLINE std::uint32_t index(Item it) { return static_cast<std::uint32_t>(it); }
};

template <>
struct RadixItems<double> {
  struct Item {
    std::uint64_t key;
    std::uint64_t index;
  };
  static KDLOSS_INLINE Item make(std::uint64_t key, std::uint32_t index) { return {key, index}; }
  static KDLOSS_INLINE std::uint64_t key(const Item& it) { return it.key; }
  static KDLOSS_INLINE std::uint32_t index(const Item& it) { return static_cast<std::uint32_t>(it.index); }
};

/// Digits of the LSD sort: 11 bits (2048 buckets), so a float key takes 3 passes and a double
/// key 6.
constexpr int kRadixBits = 11;
constexpr Index kRadixBuckets = Index{1} << kRadixBits;
/// Copies of the top digit's histogram: logits share few sign/exponent patterns, so consecutive
/// entries hit the same counter and one copy would serialise on store-to-load forwarding.
constexpr int kRadixTopCopies = 4;
static_assert(kRadixTopCopies >= 2, "the passes keep the bucket ends in the second copy");

template <class T>
constexpr int radix_passes() {
  return (8 * static_cast<int>(sizeof(T)) + kRadixBits - 1) / kRadixBits;
}

/// Scratch of `sort_descending` for rows of up to `capacity()` entries: two item buffers and the
/// histograms of every digit. Grows only in `reserve`.
template <class T>
struct RadixScratch {
  using Item = typename RadixItems<T>::Item;
  std::vector<Item> a, b;
  std::vector<std::uint32_t> hist;
  Index capacity() const { return static_cast<Index>(a.size()); }
  void reserve(Index n) {
    if (hist.empty()) hist.resize(static_cast<size_t>((radix_passes<T>() + kRadixTopCopies - 1) * kRadixBuckets));
    if (capacity() < n) {
      a.resize(static_cast<size_t>(n));
      b.resize(static_cast<size_t>(n));
    }
  }
};

/// Entries of x keyed per block of the pre-pass (the keys stay in L1 for the histogram loop).
constexpr Index kRadixBlock = 256;

/// Pre-pass of `sort_descending`: the (key, index) items of x[0, n) except `skip`, in index
/// order, and the histograms of every digit. Returns the number of items.
template <class T>
Index radix_prepare(const T* x, Index n, Index skip, RadixScratch<T>& ws) {
  using R = RadixItems<T>;
  using Item = typename R::Item;
  using K = RadixKey<T>;
  constexpr int P = radix_passes<T>();
  constexpr int kTopShift = (P - 1) * kRadixBits;
  constexpr K kMask = static_cast<K>(kRadixBuckets - 1);
  std::uint32_t* const hist = ws.hist.data();
  std::fill(hist, hist + (P + kRadixTopCopies - 1) * kRadixBuckets, 0u);
  std::uint32_t* const top = hist + (P - 1) * kRadixBuckets;  // kRadixTopCopies copies from here
  Item* const items = ws.a.data();
  K keys[kRadixBlock];
  Index m = 0;
  auto fill = [&](Index j0, Index j1) {
    for (Index b0 = j0; b0 < j1; b0 += kRadixBlock) {
      const Index len = std::min(kRadixBlock, j1 - b0);
      Item* const out = items + m;
      for (Index j = 0; j < len; ++j) {  // a loop the compiler vectorises
        const K key = descending_key(x[b0 + j]);
        keys[j] = key;
        out[j] = R::make(key, static_cast<std::uint32_t>(b0 + j));
      }
      m += len;
      Index j = 0;
      for (; j + kRadixTopCopies <= len; j += kRadixTopCopies) {
        for (int c = 0; c < kRadixTopCopies; ++c) {
          const K key = keys[j + c];
          for (int p = 0; p + 1 < P; ++p) ++hist[p * kRadixBuckets + static_cast<Index>((key >> (p * kRadixBits)) & kMask)];
          ++top[c * kRadixBuckets + static_cast<Index>(key >> kTopShift)];
        }
      }
      for (; j < len; ++j) {
        const K key = keys[j];
        for (int p = 0; p + 1 < P; ++p) ++hist[p * kRadixBuckets + static_cast<Index>((key >> (p * kRadixBits)) & kMask)];
        ++top[static_cast<Index>(key >> kTopShift)];
      }
    }
  };
  if (skip >= 0 && skip < n) {
    fill(0, skip);
    fill(skip + 1, n);
  } else {
    fill(0, n);
  }
  for (Index d = 0; d < kRadixBuckets; ++d)
    for (int c = 1; c < kRadixTopCopies; ++c) top[d] += top[c * kRadixBuckets + d];
  return m;
}

/// The passes of `sort_descending` after `radix_prepare` (which left `count` items).
template <class T, class Place>
void radix_finish(RadixScratch<T>& ws, Index count, Place&& place) {
  using R = RadixItems<T>;
  using Item = typename R::Item;
  using K = RadixKey<T>;
  constexpr int P = radix_passes<T>();
  constexpr K kMask = static_cast<K>(kRadixBuckets - 1);
  if (count == 0) return;
  std::uint32_t* const hist = ws.hist.data();
  Item* src = ws.a.data();
  Item* dst = ws.b.data();

  // One stable counting pass per digit; a digit shared by every item leaves the order as it is.
  bool needed[P];
  int last = -1;
  for (int p = 0; p < P; ++p) {
    const int shift = p * kRadixBits;
    needed[p] = hist[p * kRadixBuckets + static_cast<Index>((R::key(src[0]) >> shift) & kMask)] !=
                static_cast<std::uint32_t>(count);
    if (needed[p]) last = p;
  }
  // Each pass runs two streams at once, so that items of the same bucket in a row do not queue
  // on one counter: the first half of the items forward from each bucket's start, the second
  // half backward from its end (both keep the order, and they meet exactly).
  std::uint32_t* const ends = hist + P * kRadixBuckets;  // a spare copy of the top histogram
  for (int p = 0; p < P; ++p) {
    if (!needed[p]) continue;
    std::uint32_t* const h = hist + p * kRadixBuckets;
    const int shift = p * kRadixBits;
    std::uint32_t sum = 0;
    for (Index d = 0; d < kRadixBuckets; ++d) {
      const std::uint32_t c = h[d];
      h[d] = sum;
      sum += c;
      ends[d] = sum;
    }
    auto digit = [&](const Item& it) { return static_cast<Index>((R::key(it) >> shift) & kMask); };
    const Index half = count / 2;
    if (p == last) {
      for (Index i = 0, j = count - 1; i < half; ++i, --j) {
        const Item a = src[i], b = src[j];
        place(static_cast<Index>(h[digit(a)]++), a);
        place(static_cast<Index>(--ends[digit(b)]), b);
      }
      if (count % 2 != 0) place(static_cast<Index>(h[digit(src[half])]++), src[half]);
      return;
    }
    for (Index i = 0, j = count - 1; i < half; ++i, --j) {
      const Item a = src[i], b = src[j];
      dst[h[digit(a)]++] = a;
      dst[--ends[digit(b)]] = b;
    }
    if (count % 2 != 0) dst[h[digit(src[half])]++] = src[half];
    std::swap(src, dst);
  }
  for (Index i = 0; i < count; ++i) place(i, src[i]);  // every digit constant: already in order
}

/// Sorts the indices of x[0, n) except `skip` (or none if skip is outside [0, n)) by x
/// descending, ties by lower index first (a stable descending sort), in O(n): an LSD radix sort
/// of (key, index) items on `descending_key`, 11-bit digits, every histogram from one pre-pass
/// (`radix_prepare`), and a pass skipped when all items share its digit (`radix_finish`). The
/// last pass hands each item to `place(rank, item)` instead of storing it (rank 0 is the largest
/// x), so the caller lays out what it needs in ranked order without another pass. x must hold no
/// NaN; n < 2^32 and `ws.capacity() >= n`. Returns how many items were placed: n - 1 when `skip`
/// is a valid index, else n.
template <class T, class Place>
Index sort_descending(const T* x, Index n, Index skip, RadixScratch<T>& ws, Place&& place) {
  const Index count = radix_prepare(x, n, skip, ws);
  radix_finish(ws, count, place);
  return count;
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
