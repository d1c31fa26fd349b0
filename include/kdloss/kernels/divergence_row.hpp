// kdloss kernels: the fused row of every divergence between p = softmax(t/tau) and
// q = softmax(s/tau), driven by a generator (see kdloss/generators/).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <type_traits>

#include "row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

/// Where a divergence's row value comes from.
enum class ValueFrom {
  CrossTeacher,  ///< \f$KL(p\|q)\f$ from the pass-1 cross sum: no second pass for the value
  CrossStudent,  ///< \f$KL(q\|p)\f$ from the pass-1 cross sum
  Elementwise,   ///< \f$\sum_v \mathrm{term}_v\f$ over a second pass
};

/// Where the centring constant \f$c = \sum_v q_v g_v\f$ of the gradient comes from.
enum class CentreFrom {
  Constant,  ///< a constant of the generator (forward KL: \f$c = -1\f$)
  Value,     ///< the row value plus a constant (reverse KL: \f$c = L + 1\f$)
  Reduce,    ///< summed over the row in the value pass
};

/// Per-entry quantities a generator sees in pass 2 (all lanes of one vector):
/// \f$a = \log p_v\f$, \f$b = \log q_v\f$, \f$p_v\f$, \f$q_v\f$ and the log-ratio
/// \f$u = \log p_v - \log q_v\f$. Entries masked on one side have \f$a\f$ or \f$b = -\infty\f$.
/// Everything is inlined, so what a generator does not use is never computed.
template <class B>
struct Elem {
  B a, b, p, q, u;
};

/// Compile-time facts about a generator, with the defaults of a plain user generator (which only
/// writes `term` and `h`): value and centre summed elementwise, masked entries zeroed by the engine.
template <class Gen, class = void>
struct gen_value_from {
  static constexpr ValueFrom value = ValueFrom::Elementwise;
};
template <class Gen>
struct gen_value_from<Gen, std::void_t<decltype(Gen::value_from)>> {
  static constexpr ValueFrom value = Gen::value_from;
};
template <class Gen, class = void>
struct gen_centre_from {
  static constexpr CentreFrom value = CentreFrom::Reduce;
};
template <class Gen>
struct gen_centre_from<Gen, std::void_t<decltype(Gen::centre_from)>> {
  static constexpr CentreFrom value = Gen::centre_from;
};
template <class Gen, class = void>
struct gen_masks_itself : std::false_type {};
template <class Gen>
struct gen_masks_itself<Gen, std::void_t<decltype(Gen::masks_itself)>>
    : std::integral_constant<bool, Gen::masks_itself> {};

/// The fused row: pass 1 (row_stats) for both rows, then — only if needed — a value pass, then the
/// gradient pass (the later passes run backwards over the row, so a row larger than L2 starts on
/// the lines pass 1 left in cache)
/// \f[ \partial L/\partial s_j = \mathrm{scale}\,(h_j - q_j c) + \beta\,\mathrm{row}_j,
///     \qquad h_j = q_j g_j,\ g = \partial L/\partial q, \f]
/// (`out.scale` carries \f$1/\tau\f$, weights and the reduction). `out.row == nullptr` computes the
/// value alone and never runs the gradient pass.
template <class Arch, class Gen, class T, class TeacherRow>
RowResult divergence_row(const Gen& gen, const TeacherRow& teacher, const T* student, Index n,
                         T k, const GradOut<T>& out) {
  T* const grad = out.row;
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  constexpr ValueFrom kValue = gen_value_from<Gen>::value;
  constexpr CentreFrom kCentre = gen_centre_from<Gen>::value;
  using Plan = StatsPlan<true, true, kValue == ValueFrom::CrossTeacher,
                         kValue == ValueFrom::CrossStudent>;
  const PairStats<T> st = row_stats<Arch, Plan>(teacher, student, n, k);
  if (RowError e = st.t.check(true); e != RowError::None) return {0, e};
  if (RowError e = st.s.check(false); e != RowError::None) return {0, e};
  const double lst = st.t.log_sum(), lss = st.s.log_sum();
  const double kd = static_cast<double>(k);
  const PlainRow<T> srow{student};

  // Per-entry view, relative to the row maxima (so z/tau never overflows for huge logits).
  // In base 2: log2 p = k log2(e) (t - max t) - log2 S_t, so p = 2^(log2 p) costs one fms + exp2.
  constexpr double kLog2e = 1.4426950408889634, kLn2 = 0.69314718055994530942;
  const B kb = B::splat(k), k2 = B::splat(static_cast<T>(kd * kLog2e));
  const B mtb = B::splat(st.t.max), msb = B::splat(st.s.max), ln2 = B::splat(static_cast<T>(kLn2));
  const B lst2 = B::splat(static_cast<T>(lst * kLog2e)), lss2 = B::splat(static_cast<T>(lss * kLog2e));
  const B dl = B::splat(static_cast<T>(lst - lss));
  auto elem = [&](Index j, auto lanes) {
    const B dt = teacher.template load<B>(j, lanes) - mtb;
    const B ds = srow.template load<B>(j, lanes) - msb;
    const B ya = fms(dt, k2, lst2), yb = fms(ds, k2, lss2);
    Elem<B> e;
    e.a = ya * ln2;
    e.b = yb * ln2;
    e.p = simd::exp2_nonpositive(ya);
    e.q = simd::exp2_nonpositive(yb);
    e.u = fms(dt - ds, kb, dl);
    return e;
  };

  double value = 0, centre = 0;
  if constexpr (kValue == ValueFrom::CrossTeacher) {
    value = st.teacher_uncovered ? std::numeric_limits<double>::infinity()
                                 : kd * st.cross_t / st.t.sum - lst + lss;
  } else if constexpr (kValue == ValueFrom::CrossStudent) {
    value = st.student_uncovered ? std::numeric_limits<double>::infinity()
                                 : -kd * st.cross_s / st.s.sum + lst - lss;
  } else {
    constexpr bool kReduce = kCentre == CentreFrom::Reduce;
    B vs = B::splat(0), cs = B::splat(0);
    const bool want_centre = kReduce && grad != nullptr;
    sweep_reverse<W>(0, n, [&](Index j, auto lanes) {
      const Elem<B> e = elem(j, lanes);
      // Entries masked on both sides (and tail lanes) contribute nothing, whatever the formula.
      const auto live = (e.p > B::splat(0)) | (e.q > B::splat(0));
      vs = vs + select(live, gen.term(e), B::splat(0));
      if (want_centre) cs = cs + select(live, gen.h(e), B::splat(0));
    });
    value = hsum_wide(vs);
    if (want_centre) centre = hsum_wide(cs);
  }
  // A divergence is >= 0; rounding may leave a few ulp below.
  value = std::max(value, 0.0);
  if (grad == nullptr) return {value, RowError::None};

  if constexpr (kCentre == CentreFrom::Constant) {
    centre = Gen::centre_constant;
  } else if constexpr (kCentre == CentreFrom::Value) {
    if (!std::isfinite(value)) return {value, RowError::UnboundedGradient};
    centre = value + Gen::centre_offset;
  }
  if (!std::isfinite(centre)) return {value, RowError::UnboundedGradient};

  const B cb = B::splat(static_cast<T>(centre)), gb = B::splat(out.scale);
  auto grad_entry = [&](Index j, auto lanes) {
    const Elem<B> e = elem(j, lanes);
    B h = gen.h(e);
    if constexpr (!gen_masks_itself<Gen>::value)
      h = select((e.p > B::splat(0)) | (e.q > B::splat(0)), h, B::splat(0));
    return gb * fnma(e.q, cb, h);
  };
  if (out.beta == T(0)) {
    sweep_reverse<W>(0, n, [&](Index j, auto lanes) { store(grad + j, grad_entry(j, lanes), lanes); });
  } else {
    const B bb = B::splat(out.beta);
    sweep_reverse<W>(0, n, [&](Index j, auto lanes) {
      const B old = load<B>(grad + j, lanes, T(0));
      store(grad + j, fma(old, bb, grad_entry(j, lanes)), lanes);
    });
  }
  return {value, RowError::None};
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
