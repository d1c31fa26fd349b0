// kdloss: weighted forward + reverse KL, with a global ratio or per-row caller weights.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "detail/calls.hpp"
#include "detail/row_loop.hpp"
#include "generators/kl.hpp"
#include "kernels/divergence_row.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Weighted forward and reverse KL:
/// \f[ L_i = w_f\,KL(p\|q) + w_r\,KL(q\|p),\qquad
///     \frac{\partial L_i}{\partial s_j} = \frac{1}{\tau}\Big(w_f (q_j - p_j)
///     + w_r\, q_j\big(\log q_j - \log p_j - KL(q\|p)\big)\Big), \f]
/// one fused row pass pair (the f-divergence engine with `generators::WeightedKL`).
/// - Global weights: `SymmetricKL(opt, forward_weight)` gives \f$w_f\f$ = forward_weight and
///   \f$w_r = 1 - w_f\f$: torchtune's `SymmetricKLLoss(sym_kd_ratio)` is forward_weight =
///   sym_kd_ratio (default 0.5); DistiLLM's `symmetric_kl(lam = 0.9)`, \f$(1-\lambda)\f$ FKL +
///   \f$\lambda\f$ RKL, is `SymmetricKL::distillm(opt)` (forward_weight 0.1). Any two weights >= 0:
///   `SymmetricKL(opt, w_f, w_r)`.
/// - Per-row weights chosen by the caller (e.g. online distillation that balances the two
///   directions per sample): `skl.with_row_weights(wf, wr)` is the same loss with row i weighted
///   \f$(w_{f,i}, w_{r,i})\f$; the weights are treated as constants (no gradient through them) and
///   the two vectors (views, like `Weights`) must outlive the calls.
/// A zero weight drops its term (so \f$w_r = 0\f$ is exactly ForwardKL even on a masked vocabulary).
/// Options, calls, reductions and errors as every kdloss loss.
template <class T, class Arch = simd::best_arch>
class SymmetricKL : public detail::LossCalls<SymmetricKL<T, Arch>, T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  /// \f$w_f\f$ = forward_weight \f$\in [0, 1]\f$, \f$w_r = 1 - w_f\f$.
  explicit SymmetricKL(const Options<T>& opt = {}, double forward_weight = 0.5)
      : SymmetricKL(opt, ratio(forward_weight), 1 - forward_weight) {}
  /// Any two weights \f$w_f, w_r \ge 0\f$ (finite).
  SymmetricKL(const Options<T>& opt, double forward_weight, double reverse_weight) : m_opt(opt) {
    internal::check_options(m_opt, name());
    KDLOSS_REQUIRE(std::isfinite(forward_weight) && forward_weight >= 0 && std::isfinite(reverse_weight) &&
                       reverse_weight >= 0,
                   std::string(name()) + ": the weights must be finite and >= 0 (got " +
                       std::to_string(forward_weight) + ", " + std::to_string(reverse_weight) + ")");
    m_gen.wf = forward_weight;
    m_gen.wr = reverse_weight;
  }
  /// DistiLLM's `symmetric_kl(lam)`: \f$(1-\lambda)\,KL(p\|q) + \lambda\,KL(q\|p)\f$, \f$\lambda\f$ = 0.9.
  static SymmetricKL distillm(const Options<T>& opt = {}, double lam = 0.9) { return SymmetricKL(opt, 1 - lam); }

  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::SymmetricKL"; }
  const Options<T>& options() const noexcept { return m_opt; }
  double forward_weight() const noexcept { return m_gen.wf; }
  double reverse_weight() const noexcept { return m_gen.wr; }

  /// This loss with per-row weights \f$(w_{f,i}, w_{r,i})\f$ instead of the global ones: N finite
  /// values >= 0 each (checked at the call). The vectors are viewed, not copied.
  SymmetricKL with_row_weights(const Weights<T>& forward, const Weights<T>& reverse) const {
    KDLOSS_REQUIRE(forward.has_value() && reverse.has_value(),
                   std::string(name()) + ": with_row_weights() needs both weight vectors");
    SymmetricKL r = *this;
    r.m_row_wf = forward;
    r.m_row_wr = reverse;
    return r;
  }

 private:
  friend class detail::LossCalls<SymmetricKL, T>;

  template <class S, class U>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad,
        T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const bool rows = m_row_wf.has_value();
    const detail::PairCall<T> c = detail::pair_call(
        who, m_opt, student, teacher, grad, alpha, beta, out, weights, per_row_call, [&](const detail::MatView<T>& sv) {
          if (!rows) return;
          KDLOSS_REQUIRE(m_row_wf.size() == sv.rows && m_row_wr.size() == sv.rows,
                         std::string(who) + ": " + std::to_string(m_row_wf.size()) + " forward and " +
                             std::to_string(m_row_wr.size()) + " reverse row weights for " +
                             std::to_string(sv.rows) + " rows");
          for (Eigen::Index i = 0; i < sv.rows; ++i) {
            const double a = static_cast<double>(m_row_wf[i]), b = static_cast<double>(m_row_wr[i]);
            KDLOSS_REQUIRE(std::isfinite(a) && a >= 0 && std::isfinite(b) && b >= 0,
                           std::string(who) + ": row " + std::to_string(i) + ": KL weights must be finite and >= 0");
          }
        });
    const detail::MatView<T>&s = c.s, &t = c.t;
    const detail::RowOutputs<T>& o = c.o;
    const T k = T(1) / m_opt.temperature;
    const Eigen::Index v = s.cols;
    return detail::run_rows(who, m_opt, s.rows, v, [&](Eigen::Index i) { return weights[i]; }, o,
                            [&](Eigen::Index i, const kernels::GradOut<T>& g) {
                              generators::WeightedKL gen = m_gen;
                              if (rows) gen.wf = static_cast<double>(m_row_wf[i]), gen.wr = static_cast<double>(m_row_wr[i]);
                              return kernels::divergence_row<Arch>(gen, kernels::PlainRow<T>{t.row(i)}, s.row(i), v, k, g);
                            });
  }

  static double ratio(double forward_weight) {
    KDLOSS_REQUIRE(forward_weight >= 0 && forward_weight <= 1,
                   std::string(name()) + ": forward_weight must be in [0, 1] (got " + std::to_string(forward_weight) +
                       "); use SymmetricKL(opt, w_f, w_r) for other weights");
    return forward_weight;
  }

  Options<T> m_opt;
  generators::WeightedKL m_gen;
  Weights<T> m_row_wf, m_row_wr;
};

KDLOSS_END_NAMESPACE
