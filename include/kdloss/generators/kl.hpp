// kdloss generators: forward and reverse Kullback–Leibler divergence.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <limits>

#include "../kernels/divergence_row.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace generators {

/// Forward KL, \f$f(r) = r\log r\f$: \f$L = KL(p\|q) = \sum_v p_v(\log p_v - \log q_v)\f$.
///
/// \f$g = f(r) - r f'(r) = -r\f$, so \f$h_v = q_v g_v = -p_v\f$ and
/// \f$c = \sum_v h_v = -1\f$: the gradient is \f$\partial L/\partial s = (q - p)/\tau\f$ and needs no
/// row reduction. The value comes from pass 1 alone (value-only calls read each logit once).
/// Limits: \f$p_v \to 0\f$ contributes 0; \f$q_v = 0 < p_v\f$ (student logit \f$-\infty\f$ where
/// the teacher has mass) gives \f$L = +\infty\f$, the true value, with the gradient still finite.
struct ForwardKL {
  static constexpr const char* name = "kdloss::ForwardKL";
  static constexpr kernels::ValueFrom value_from = kernels::ValueFrom::CrossTeacher;
  static constexpr kernels::CentreFrom centre_from = kernels::CentreFrom::Constant;
  static constexpr double centre_constant = -1.0;
  static constexpr bool masks_itself = true;  // h = -p is 0 wherever p is
  /// \f$p_v(\log p_v - \log q_v)\f$
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    return e.p * e.u;
  }
  /// \f$h_v = -p_v\f$
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    return -e.p;
  }
};

/// Reverse KL, \f$f(r) = -\log r\f$: \f$L = KL(q\|p) = \sum_v q_v(\log q_v - \log p_v)\f$ (MiniLLM).
///
/// \f$g = 1 - \log r\f$, \f$h_v = q_v(1 - u_v)\f$ with \f$u = \log p - \log q\f$, and
/// \f$c = L + 1\f$ is known from pass 1: \f$\partial L/\partial s_j = q_j(\log q_j - \log p_j - L)
/// /\tau\f$, two passes like forward KL. Limits: \f$q_v \to 0\f$ contributes 0;
/// \f$p_v = 0 < q_v\f$ (teacher logit \f$-\infty\f$ where the student has mass) gives
/// \f$L = +\infty\f$; its gradient is unbounded, so a gradient call reports that row as an error.
struct ReverseKL {
  static constexpr const char* name = "kdloss::ReverseKL";
  static constexpr kernels::ValueFrom value_from = kernels::ValueFrom::CrossStudent;
  static constexpr kernels::CentreFrom centre_from = kernels::CentreFrom::Value;
  static constexpr double centre_offset = 1.0;
  static constexpr bool masks_itself = true;  // min() maps u = +inf/NaN (q = 0) to a finite value
  /// \f$q_v(\log q_v - \log p_v)\f$
  template <class B>
  KDLOSS_INLINE B term(const kernels::Elem<B>& e) const {
    return -(e.q * e.u);
  }
  /// \f$h_v = q_v(1 - u_v)\f$
  template <class B>
  KDLOSS_INLINE B h(const kernels::Elem<B>& e) const {
    using T = typename B::value_type;
    const B u = min(e.u, B::splat(std::numeric_limits<T>::max()));
    return e.q * (B::splat(T(1)) - u);
  }
};

}  // namespace generators
KDLOSS_END_NAMESPACE
