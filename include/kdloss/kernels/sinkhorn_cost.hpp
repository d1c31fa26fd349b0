// kdloss kernels: the O(N^2 V) parts of Sinkhorn — softmax rows, the pairwise L1 cost between
// student and teacher probability rows, and its backward — vectorised and blocked for the caches.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>

#include "row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// Register tiles of the L1 kernels for an instruction set: the forward keeps `fi x fj`
/// accumulators (student rows x teacher rows), the backward `bi x bv` (student rows x vectors of
/// one strip). Chosen so accumulators, operands and temporaries fit the register file (32 vector
/// registers with AVX-512, 16 with AVX2 and SSE2).
template <class Arch>
struct l1_tiles {
  static constexpr int fi = 2, fj = 2, bi = 2, bv = 2;
};
template <>
struct l1_tiles<simd::sse2> {
  static constexpr int fi = 2, fj = 4, bi = 2, bv = 2;
};
template <>
struct l1_tiles<simd::avx2> {
  static constexpr int fi = 2, fj = 4, bi = 2, bv = 2;
};
template <>
struct l1_tiles<simd::avx512> {
  static constexpr int fi = 4, fj = 4, bi = 4, bv = 2;
};

/// Softmax of a teacher row and a student row at inverse temperature k, written as probabilities:
/// `pt = softmax(k t)`, `ps = softmax(k s)`. Pass 1 is the shared `row_stats` (max and sum-exp of
/// both rows together, with their O(1) validity checks); pass 2 writes
/// \f$2^{\,k\log_2 e\,(x - \max) - \log_2 \Sigma}\f$, whose exponent is \f$\le 0\f$. -inf logits give
/// probability 0. Returns the first defect of either row (nothing is written then).
template <class Arch, class T>
RowError softmax_pair_row(const T* teacher, const T* student, Index v, T k, T* pt, T* ps) {
  using B = simd::batch<T, Arch>;
  using Plan = StatsPlan<true, true, false, false>;
  const PairStats<T> st = row_stats<Arch, Plan>(PlainRow<T>{teacher}, student, v, k);
  if (const RowError e = st.t.check(true); e != RowError::None) return e;
  if (const RowError e = st.s.check(false); e != RowError::None) return e;
  const B kb = B::splat(static_cast<T>(exp2_scale(k)));
  auto write = [&](const T* x, T* out, const SideStats<T>& s) {
    const B mb = B::splat(s.max);
    const B lb = B::splat(static_cast<T>(std::log2(s.sum)));
    sweep<B::size>(0, v, [&](Index j, auto lanes) {
      const B xv = load<B>(x + j, lanes, T(0));
      store(out + j, simd::exp2_nonpositive(fms(xv - mb, kb, lb)), lanes);
    });
  };
  write(teacher, pt, st.t);
  write(student, ps, st.s);
  return RowError::None;
}

namespace detail_l1 {

/// One MI x MJ tile of the forward over columns [v0, v1): w[ii][jj] += sum |a_ii - b_jj|.
/// Accumulators are T within the column chunk (at most 64 terms per lane) and widened to double
/// once per chunk.
template <class B, int MI, int MJ, class T>
KDLOSS_INLINE void cost_tile(const T* a, Index as, const T* b, Index bs, Index v0, Index v1, double* w,
                             Index ws) {
  B acc[MI][MJ];
  for (int ii = 0; ii < MI; ++ii)
    for (int jj = 0; jj < MJ; ++jj) acc[ii][jj] = B::splat(T(0));
  sweep<B::size>(v0, v1, [&](Index v, auto lanes) {
    B bv[MJ];
    for (int jj = 0; jj < MJ; ++jj) bv[jj] = load<B>(b + jj * bs + v, lanes, T(0));
    for (int ii = 0; ii < MI; ++ii) {
      const B av = load<B>(a + ii * as + v, lanes, T(0));
      for (int jj = 0; jj < MJ; ++jj) acc[ii][jj] = acc[ii][jj] + abs(av - bv[jj]);
    }
  });
  for (int ii = 0; ii < MI; ++ii)
    for (int jj = 0; jj < MJ; ++jj) w[ii * ws + jj] += hsum_wide(acc[ii][jj]);
}

/// Dispatches a tile of mi <= MI rows and mj <= MJ columns to its compile-time instance.
template <class B, int MI, int MJ, class T>
KDLOSS_INLINE void cost_tile_n(int mi, int mj, const T* a, Index as, const T* b, Index bs, Index v0,
                               Index v1, double* w, Index ws) {
  if constexpr (MI > 1) {
    if (mi < MI) return cost_tile_n<B, MI - 1, MJ>(mi, mj, a, as, b, bs, v0, v1, w, ws);
  }
  if constexpr (MJ > 1) {
    if (mj < MJ) return cost_tile_n<B, MI, MJ - 1>(mi, mj, a, as, b, bs, v0, v1, w, ws);
  }
  cost_tile<B, MI, MJ>(a, as, b, bs, v0, v1, w, ws);
}

/// One MI x RV tile of the backward: for the student rows a_ii and the vectors of the strip
/// starting at v, g_ii = sum_j d[ii][j] sign(a_ii - b_j) (sign(0) = 0). `lanes[r]` is the number of
/// real lanes of vector r of the strip (W for a full strip; fewer at the end of a chunk).
template <class B, int MI, int RV, bool Edge, class T>
KDLOSS_INLINE void grad_tile(const T* a, Index as, const T* b, Index bs, Index nb, const T* d, Index ds,
                             Index v, const int* lanes, T* g, Index gs, Index gv) {
  constexpr int W = B::size;
  B acc[MI][RV], av[MI][RV];
  for (int ii = 0; ii < MI; ++ii)
    for (int r = 0; r < RV; ++r) {
      acc[ii][r] = B::splat(T(0));
      av[ii][r] = Edge ? B::load_partial(a + ii * as + v + r * W, lanes[r], T(0))
                       : B::load(a + ii * as + v + r * W);
    }
  for (Index j = 0; j < nb; ++j) {
    const T* bj = b + j * bs + v;
    B bv[RV];
    for (int r = 0; r < RV; ++r) bv[r] = Edge ? B::load_partial(bj + r * W, lanes[r], T(0)) : B::load(bj + r * W);
    for (int ii = 0; ii < MI; ++ii) {
      const B dd = B::splat(d[ii * ds + j]);
      for (int r = 0; r < RV; ++r) {
        acc[ii][r] = select(av[ii][r] > bv[r], acc[ii][r] + dd, acc[ii][r]);
        acc[ii][r] = select(av[ii][r] < bv[r], acc[ii][r] - dd, acc[ii][r]);
      }
    }
  }
  for (int ii = 0; ii < MI; ++ii)
    for (int r = 0; r < RV; ++r) {
      if (Edge)
        acc[ii][r].store_partial(g + ii * gs + gv + r * W, lanes[r]);
      else
        acc[ii][r].store(g + ii * gs + gv + r * W);
    }
}

template <class B, int MI, int RV, bool Edge, class T>
KDLOSS_INLINE void grad_tile_n(int mi, const T* a, Index as, const T* b, Index bs, Index nb, const T* d,
                               Index ds, Index v, const int* lanes, T* g, Index gs, Index gv) {
  if constexpr (MI > 1) {
    if (mi < MI) return grad_tile_n<B, MI - 1, RV, Edge>(mi, a, as, b, bs, nb, d, ds, v, lanes, g, gs, gv);
  }
  grad_tile<B, MI, RV, Edge>(a, as, b, bs, nb, d, ds, v, lanes, g, gs, gv);
}

}  // namespace detail_l1

/// Columns per chunk of the L1 forward (64 vectors): accumulators stay in T for at most 64 terms
/// per lane, then are widened to double.
template <class Arch, class T>
constexpr Index l1_cost_chunk() {
  return Index{64} * simd::batch<T, Arch>::size;
}

/// Pairwise L1 cost \f$w_{ij} = \sum_v |a_{iv} - b_{jv}|\f$ (double, `w` is overwritten) between
/// the rows of `a` (na rows, stride as) and of `b` (nb rows, stride bs), v columns: N^2 V work.
///
/// Blocking: the columns go in chunks of `l1_cost_chunk` entries; within a chunk the b rows go in
/// tiles of about 256 KiB (kept in L2 while every block of a rows passes over them), and each
/// fi x fj register tile reads fi + fj vectors per fi * fj absolute differences.
template <class Arch, class T>
void l1_cost(const T* a, Index as, Index na, const T* b, Index bs, Index nb, Index v, double* w, Index ws) {
  using B = simd::batch<T, Arch>;
  constexpr int MI = l1_tiles<Arch>::fi, MJ = l1_tiles<Arch>::fj;
  constexpr Index chunk = l1_cost_chunk<Arch, T>();
  constexpr Index tile_bytes = Index{256} * 1024;
  constexpr Index jtile = std::max<Index>(MJ, tile_bytes / (chunk * Index(sizeof(T))) / MJ * MJ);
  for (Index i = 0; i < na; ++i) std::fill(w + i * ws, w + i * ws + nb, 0.0);
  for (Index v0 = 0; v0 < v; v0 += chunk) {
    const Index v1 = std::min(v, v0 + chunk);
    for (Index j0 = 0; j0 < nb; j0 += jtile) {
      const Index j1 = std::min(nb, j0 + jtile);
      for (Index i = 0; i < na; i += MI) {
        const int mi = static_cast<int>(std::min<Index>(MI, na - i));
        for (Index j = j0; j < j1; j += MJ) {
          const int mj = static_cast<int>(std::min<Index>(MJ, j1 - j));
          detail_l1::cost_tile_n<B, MI, MJ>(mi, mj, a + i * as, as, b + j * bs, bs, v0, v1, w + i * ws + j, ws);
        }
      }
    }
  }
}

/// Backward of `l1_cost` for the a side over the columns [v0, v1):
/// \f$g_{iv} = \sum_j d_{ij}\,\mathrm{sign}(a_{iv} - b_{jv})\f$ with sign(0) = 0 (the subgradient
/// autograd uses), written to `g` (row i at `g + i*gs`, column v at offset v - v0). `d` is the
/// na x nb matrix \f$\partial L/\partial w\f$ in T.
///
/// Blocking: strips of bv vectors; a strip of every b row (nb x bv vectors, 32 KiB for 256 rows of
/// float with AVX-512) stays in L1 while each block of bi student rows accumulates over all j in
/// registers: per j, bv + bi loads for bi * bv entries (two compares and two masked adds each).
template <class Arch, class T>
void l1_cost_backward(const T* a, Index as, Index na, const T* b, Index bs, Index nb, const T* d, Index ds,
                      Index v0, Index v1, T* g, Index gs) {
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  constexpr int MI = l1_tiles<Arch>::bi, RV = l1_tiles<Arch>::bv;
  constexpr Index strip = Index{RV} * W;
  for (Index v = v0; v < v1; v += strip) {
    const bool edge = v + strip > v1;
    int lanes[RV];
    for (int r = 0; r < RV; ++r)
      lanes[r] = static_cast<int>(std::clamp<Index>(v1 - (v + Index{r} * W), 0, W));
    for (Index i = 0; i < na; i += MI) {
      const int mi = static_cast<int>(std::min<Index>(MI, na - i));
      if (edge)
        detail_l1::grad_tile_n<B, MI, RV, true>(mi, a + i * as, as, b, bs, nb, d + i * ds, ds, v, lanes, g + i * gs, gs, v - v0);
      else
        detail_l1::grad_tile_n<B, MI, RV, false>(mi, a + i * as, as, b, bs, nb, d + i * ds, ds, v, lanes, g + i * gs, gs, v - v0);
    }
  }
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
