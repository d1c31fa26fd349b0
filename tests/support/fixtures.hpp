// Seeded inputs for the tests: random logits, odd shapes, masks, ties, one-hot rows.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <catch2/catch.hpp>
#include <kdloss/types.hpp>
#include <limits>
#include <random>

namespace kdtest {

/// Base seed: Catch's --rng-seed (printed by Catch; 0 unless given) plus a per-test offset.
inline std::uint32_t seed(std::uint32_t offset) {
  return static_cast<std::uint32_t>(Catch::rngSeed()) * 7919u + offset;
}

/// N x V logits ~ scale * N(0,1) + shift, in type T.
template <class T>
kdloss::RowMatrix<T> random_logits(Eigen::Index n, Eigen::Index v, std::uint32_t s, double scale = 3.0,
                                   double shift = 0.0) {
  std::mt19937 gen(s);
  std::normal_distribution<double> nd(0.0, 1.0);
  kdloss::RowMatrix<T> m(n, v);
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < v; ++j) m(i, j) = static_cast<T>(scale * nd(gen) + shift);
  return m;
}

/// Sets about `fraction` of the entries of m to -inf, keeping at least one finite entry per row.
template <class T>
void mask_random(kdloss::RowMatrix<T>& m, double fraction, std::uint32_t s) {
  std::mt19937 gen(s);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 1; j < m.cols(); ++j)
      if (u(gen) < fraction) m(i, j) = -std::numeric_limits<T>::infinity();
  }
}

/// N x V logits drawn from `levels` integer values, so many entries tie exactly.
template <class T>
kdloss::RowMatrix<T> tied_logits(Eigen::Index n, Eigen::Index v, std::uint32_t s, int levels) {
  std::mt19937 gen(s);
  std::uniform_int_distribution<int> u(0, levels - 1);
  kdloss::RowMatrix<T> m(n, v);
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < v; ++j) m(i, j) = static_cast<T>(u(gen));
  return m;
}

/// Row-major double copy.
template <class M>
kdloss::RowMatrix<double> to_double(const M& m) {
  return m.template cast<double>();
}

}  // namespace kdtest
