// kdloss kernels: target logit rows formed on the fly from several caller matrices (never
// materialised as an N x V matrix).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "sweep.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// TAID's interpolated target logits \f$(1-\lambda)\,s + \lambda\,t\f$, \f$0 < \lambda < 1\f$, read
/// from the teacher and student rows, computed as \f$s + \lambda(t - s)\f$: exactly s where t = s
/// (so a student equal to its teacher has loss exactly 0). A \f$-\infty\f$ on either side gives
/// \f$-\infty\f$ (masked); NaN and \f$+\infty\f$ pass through to the row checks.
template <class T>
struct MixRow {
  const T* t;
  const T* s;
  T lambda;
  template <class B, class L>
  KDLOSS_INLINE B load(Index j, L lanes) const {
    constexpr T kNegInf = -std::numeric_limits<T>::infinity();
    const B tv = kernels::load<B>(t + j, lanes, kNegInf), sv = kernels::load<B>(s + j, lanes, kNegInf);
    const B mix = fma(B::splat(lambda), tv - sv, sv);
    return select(sv == B::splat(kNegInf), sv, mix);  // -inf - -inf and inf - inf would be NaN
  }
};

}  // namespace kernels
KDLOSS_END_NAMESPACE
