// Element-wise comparison of matrices with a per-entry bound, reporting the worst entry.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace kdtest {

/// Compares actual(i, j) with expected[i][j]: passes when both are the same infinity or both NaN,
/// or |a - e| <= bound(i, j). Returns "" on success, else a description of the worst entry.
template <class A, class Bound>
std::string compare(const A& actual, const std::vector<std::vector<double>>& expected, Bound bound) {
  double worst = 0;
  long wi = -1, wj = -1;
  long bad = 0;
  std::ostringstream why;
  for (long i = 0; i < static_cast<long>(expected.size()); ++i) {
    for (long j = 0; j < static_cast<long>(expected[static_cast<size_t>(i)].size()); ++j) {
      const double a = static_cast<double>(actual(i, j));
      const double e = expected[static_cast<size_t>(i)][static_cast<size_t>(j)];
      if (std::isnan(a) || std::isnan(e)) {
        if (std::isnan(a) && std::isnan(e)) continue;
        if (bad++ == 0) why << "NaN mismatch at (" << i << "," << j << "): " << a << " vs " << e << "; ";
        continue;
      }
      if (std::isinf(a) || std::isinf(e)) {
        if (a == e) continue;
        if (bad++ == 0) why << "inf mismatch at (" << i << "," << j << "): " << a << " vs " << e << "; ";
        continue;
      }
      const double b = bound(i, j);
      const double err = std::fabs(a - e);
      if (err > b) {
        ++bad;
        if (err / (b > 0 ? b : 1e-300) > worst) {
          worst = err / (b > 0 ? b : 1e-300);
          wi = i;
          wj = j;
        }
      }
    }
  }
  if (bad == 0) return "";
  if (wi >= 0) {
    why.precision(10);
    why << bad << " entries out of bound; worst at (" << wi << "," << wj << "): actual "
        << static_cast<double>(actual(wi, wj)) << " expected "
        << expected[static_cast<size_t>(wi)][static_cast<size_t>(wj)] << " bound "
        << bound(wi, wj) << " (" << worst << "x)";
  }
  return why.str();
}

/// The entries of a matrix as rows of doubles: the `expected` of `compare` when it is another
/// path's result (a SIMD path against the scalar path) rather than a reference's.
template <class M>
std::vector<std::vector<double>> rows_of(const M& m) {
  std::vector<std::vector<double>> r(static_cast<size_t>(m.rows()), std::vector<double>(static_cast<size_t>(m.cols())));
  for (long i = 0; i < static_cast<long>(m.rows()); ++i)
    for (long j = 0; j < static_cast<long>(m.cols()); ++j)
      r[static_cast<size_t>(i)][static_cast<size_t>(j)] = static_cast<double>(m(i, j));
  return r;
}

/// Largest |a - e| / scale over the entries (for reporting the worst gradient error).
template <class A, class E>
double max_abs_diff(const A& a, const E& e) {
  double m = 0;
  for (long i = 0; i < a.rows(); ++i)
    for (long j = 0; j < a.cols(); ++j)
      m = std::max(m, std::fabs(static_cast<double>(a(i, j)) - static_cast<double>(e(i, j))));
  return m;
}

}  // namespace kdtest
