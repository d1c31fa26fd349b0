// kdloss: row-wise log-softmax and log-sum-exp with temperature, the public building blocks.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "detail/checks.hpp"
#include "kernels/row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace detail {
template <class T>
void check_row(kernels::RowError e, Eigen::Index i, const char* who) {
  if (e != kernels::RowError::None) internal::fail<std::domain_error>(row_error(who, e, i));
}
}  // namespace detail

/// Row-wise log-softmax at temperature \f$\tau\f$:
/// \f$\mathrm{out}_{iv} = x_{iv}/\tau - \log\sum_u e^{x_{iu}/\tau}\f$, computed as
/// \f$(x_{iv} - \max_u x_{iu})/\tau - \log\sum_u e^{(x_{iu} - \max)/\tau}\f$ so huge logits and tiny
/// temperatures never overflow. Two passes per row (online max/sum-exp, then the write); no
/// allocation. `out` may be `in` itself (in place); other overlaps are rejected.
/// \param in  N x V row-major logits (-inf entries allowed and stay -inf)
/// \param out N x V result
/// \param temperature \f$\tau > 0\f$
/// \throws std::invalid_argument on a shape mismatch or a bad temperature; std::domain_error on a
///         row with NaN, +inf, or no finite entry (the output's contents are then unspecified).
template <class Arch = simd::best_arch, class S>
void log_softmax(const Eigen::MatrixBase<S>& in, GradRef<typename S::Scalar> out,
                 typename S::Scalar temperature = 1) {
  using T = typename S::Scalar;
  constexpr const char* who = "kdloss::log_softmax";
  const detail::MatView<T> x = detail::view<T>(in, who, "input");
  const detail::MatView<T> y = detail::view<T>(out);
  KDLOSS_REQUIRE(std::isfinite(static_cast<double>(temperature)) && temperature > T(0),
                 std::string(who) + ": temperature must be finite and > 0");
  KDLOSS_REQUIRE(y.rows == x.rows && y.cols == x.cols,
                 std::string(who) + ": output is " + detail::shape(y.rows, y.cols) +
                     " but the input is " + detail::shape(x.rows, x.cols));
  const bool in_place = y.data == x.data && y.stride == x.stride;
  KDLOSS_REQUIRE(in_place || x.rows == 0 || x.cols == 0 ||
                     !detail::overlaps(y.begin(), y.end(), x.begin(), x.end()),
                 std::string(who) + ": the output partially overlaps the input");
  using B = simd::batch<T, Arch>;
  // Pass 1 also copies the row into the output (in place, onto itself), so the output's lines come
  // into cache while pass 1 computes its exponentials, and the write pass reads them from there.
  using Plan = kernels::StatsPlan<false, true, false, false, false, false, kernels::Stash::StudentLogits>;
  const T k = T(1) / temperature;
  for (Eigen::Index i = 0; i < x.rows; ++i) {
    const T* xi = x.row(i);
    T* const yi = out.data() + i * y.stride;
    const auto st = kernels::row_stats<Arch, Plan>(kernels::PlainRow<T>{nullptr}, xi, x.cols, k,
                                                   kernels::ExpStash<T>{yi, nullptr});
    detail::check_row<T>(st.s.check(false), i, who);
    const B mb = B::splat(st.s.max), kb = B::splat(k);
    const B lb = B::splat(static_cast<T>(st.s.log_sum()));
    // From the end of the row, whose lines pass 1 left in cache last.
    kernels::sweep_reverse<B::size>(0, x.cols, [&](Eigen::Index j, auto lanes) {
      const B v = kernels::load<B>(yi + j, lanes, T(0));
      kernels::store(yi + j, fms(v - mb, kb, lb), lanes);
    });
  }
}

/// Row-wise log-sum-exp at temperature \f$\tau\f$: \f$\mathrm{out}_i = \log\sum_v e^{x_{iv}/\tau}\f$
/// (one pass per row, no allocation).
/// \throws std::invalid_argument on a size mismatch or a bad temperature; std::domain_error on a
///         row with NaN, +inf, or no finite entry.
template <class Arch = simd::best_arch, class S>
void logsumexp(const Eigen::MatrixBase<S>& in, RowValuesRef<typename S::Scalar> out,
               typename S::Scalar temperature = 1) {
  using T = typename S::Scalar;
  constexpr const char* who = "kdloss::logsumexp";
  const detail::MatView<T> x = detail::view<T>(in, who, "input");
  KDLOSS_REQUIRE(std::isfinite(static_cast<double>(temperature)) && temperature > T(0),
                 std::string(who) + ": temperature must be finite and > 0");
  KDLOSS_REQUIRE(out.size() == x.rows, std::string(who) + ": output has " +
                                           std::to_string(out.size()) + " entries for " +
                                           std::to_string(x.rows) + " rows");
  KDLOSS_REQUIRE(x.rows == 0 || x.cols > 0, std::string(who) + ": rows are empty (V = 0)");
  using Plan = kernels::StatsPlan<false, true, false, false>;
  const T k = T(1) / temperature;
  for (Eigen::Index i = 0; i < x.rows; ++i) {
    const auto st = kernels::row_stats<Arch, Plan>(kernels::PlainRow<T>{nullptr}, x.row(i), x.cols, k);
    detail::check_row<T>(st.s.check(false), i, who);
    out[i] = static_cast<T>(static_cast<double>(st.s.max) * static_cast<double>(k) + st.s.log_sum());
  }
}

KDLOSS_END_NAMESPACE
