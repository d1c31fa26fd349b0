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

/// Delta-KD's target logits \f$t_{sft} + \alpha(s_{base} - t_{base})\f$ (\f$\alpha \ne 0\f$),
/// read from three rows. Masked (\f$-\infty\f$): where \f$t_{sft} = -\infty\f$, or both base
/// logits are \f$-\infty\f$. Otherwise the arithmetic decides: \f$s_{base} = -\infty\f$ masks the
/// entry for \f$\alpha > 0\f$; \f$t_{base} = -\infty\f$ below a finite \f$s_{base}\f$ gives
/// \f$+\infty\f$ (the ratio \f$\pi_{s0}/\pi_{t0}\f$ is unbounded), which the row checks report.
template <class T>
struct DeltaRow {
  const T* t_sft;
  const T* s_base;
  const T* t_base;
  T alpha;
  template <class B, class L>
  KDLOSS_INLINE B load(Index j, L lanes) const {
    constexpr T kNegInf = -std::numeric_limits<T>::infinity();
    const B a = kernels::load<B>(t_sft + j, lanes, kNegInf);
    const B sb = kernels::load<B>(s_base + j, lanes, kNegInf), tb = kernels::load<B>(t_base + j, lanes, kNegInf);
    const B ninf = B::splat(kNegInf);
    const B z = fma(B::splat(alpha), sb - tb, a);
    return select((a == ninf) | ((sb == ninf) & (tb == ninf)), ninf, z);
  }
};

}  // namespace kernels
KDLOSS_END_NAMESPACE
