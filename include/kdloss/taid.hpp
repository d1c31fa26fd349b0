// kdloss: TAID, forward KL toward a target interpolated from the student to the teacher, with the
// adaptive schedule of the reference.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "detail/calls.hpp"
#include "detail/row_loop.hpp"
#include "generators/kl.hpp"
#include "kernels/divergence_row.hpp"
#include "kernels/target_rows.hpp"
#include "types.hpp"

KDLOSS_BEGIN_NAMESPACE

/// TAID's schedule of the interpolation weight \f$\lambda\f$ (reference defaults, SakanaAI/TAID).
struct TaidSchedule {
  double t_start = 0.4;   ///< \f$\lambda\f$ before the first step, and the linear floor's start
  double t_end = 1.0;     ///< the final \f$\lambda\f$ (and the cap)
  double alpha = 5e-4;    ///< adaptive step size
  double beta = 0.99;     ///< momentum of the relative loss decrease
  long total_steps = 0;   ///< optimizer steps of the run (required, > 0): the floor reaches t_end there
  bool adaptive = true;   ///< false: \f$\lambda\f$ follows the linear floor only
};

/// TAID's schedule state, for checkpoints (`Taid::state()` / `Taid::set_state()`).
struct TaidState {
  double lambda = 0;      ///< the current \f$\lambda\f$
  double momentum = 0;    ///< \f$m\f$
  double prev_loss = 0;   ///< the loss passed to the last `advance()`
  long step = 0;          ///< `advance()` calls so far
};

/// TAID (Shing et al., "Temporally adaptive interpolated distillation", ICLR 2025): forward KL
/// toward a target that moves from the student to the teacher during training,
/// \f[ p_\lambda = \mathrm{softmax}\Big(\frac{(1-\lambda)\,\mathrm{sg}(s) + \lambda\,t}{\tau}\Big),\qquad
///     L_i = KL(p_\lambda\|q),\qquad \frac{\partial L_i}{\partial s_j} = \frac{q_j - p_{\lambda,j}}{\tau}, \f]
/// the target held fixed (stop-gradient, as the reference). The interpolated logits are formed in
/// the row kernel as the rows are read, never stored. With \f$\lambda = 1\f$ it is exactly
/// `ForwardKL`; with \f$\lambda = 0\f$ the target is the student and the loss is 0. Options, calls,
/// reductions and errors as every kdloss loss; a \f$-\infty\f$ on either side masks the entry
/// of the target.
///
/// The schedule (`advance(loss)`, once per optimizer step with that step's loss), as the reference:
/// the first call only records the loss; call number \f$g\f$ (0-based) then does
/// \f[ \delta = \frac{L_{prev} - L}{L_{prev} + 10^{-15}},\quad m \leftarrow \beta m + (1-\beta)\delta,\quad
///     \lambda_{lin} = t_{start} + (t_{end} - t_{start})\,\frac{g}{\mathrm{total\_steps}}, \f]
/// \f[ \lambda \leftarrow \min\big(t_{end},\ \max(\lambda_{lin},\ \lambda + \alpha\,\sigma(m)(1-\lambda))\big) \f]
/// (\f$\lambda = \min(t_{end}, \lambda_{lin})\f$ when not adaptive), and records L. A trainer
/// checkpoints `state()` and restores it with `set_state()`.
///
/// The functor is stateless during a call (const, thread-safe, no allocation); `advance()` and
/// `set_state()` modify it.
template <class T, class Arch = simd::best_arch>
class Taid : public detail::LossCalls<Taid<T, Arch>, T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  using arch_type = Arch;

  /// \param opt      options (validated: throws std::invalid_argument)
  /// \param schedule the schedule (validated: \f$0 \le t_{start} \le t_{end} \le 1\f$,
  ///                 \f$\alpha \in [0, 1]\f$, \f$\beta \in [0, 1)\f$, total_steps > 0)
  explicit Taid(const Options<T>& opt, const TaidSchedule& schedule) : m_opt(opt), m_sched(schedule) {
    internal::check_options(m_opt, name());
    const std::string who = name();
    auto num = [](double x) { return std::to_string(x); };
    const TaidSchedule& c = schedule;
    KDLOSS_REQUIRE(c.t_start >= 0 && c.t_start <= 1,
                   who + ": t_start must be in [0, 1] (got " + num(c.t_start) + ")");
    KDLOSS_REQUIRE(c.t_end >= 0 && c.t_end <= 1, who + ": t_end must be in [0, 1] (got " + num(c.t_end) + ")");
    KDLOSS_REQUIRE(c.t_start <= c.t_end, who + ": t_start (" + num(c.t_start) + ") is greater than t_end (" +
                                             num(c.t_end) + ")");
    KDLOSS_REQUIRE(c.alpha >= 0 && c.alpha <= 1, who + ": alpha must be in [0, 1] (got " + num(c.alpha) + ")");
    KDLOSS_REQUIRE(c.beta >= 0 && c.beta < 1, who + ": beta must be in [0, 1) (got " + num(c.beta) + ")");
    KDLOSS_REQUIRE(c.total_steps > 0, who + ": total_steps must be > 0 (got " +
                                          std::to_string(c.total_steps) + ")");
    m_state.lambda = c.t_start;
  }

  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::Taid"; }
  /// Current options.
  const Options<T>& options() const noexcept { return m_opt; }
  /// Replaces the options (validated: throws std::invalid_argument).
  void set_options(const Options<T>& opt) {
    internal::check_options(opt, name());
    m_opt = opt;
  }
  /// The schedule.
  const TaidSchedule& schedule() const noexcept { return m_sched; }
  /// The current interpolation weight \f$\lambda\f$ (used by the next call).
  double lambda() const noexcept { return m_state.lambda; }
  /// The momentum \f$m\f$ of the relative loss decrease.
  double momentum() const noexcept { return m_state.momentum; }
  /// `advance()` calls so far.
  long step() const noexcept { return m_state.step; }

  /// One step of the schedule with the loss of the step just taken (the value this functor
  /// returned, or any loss the trainer prefers). Returns the new \f$\lambda\f$. A non-finite loss
  /// is a std::invalid_argument (it would poison the momentum for the rest of the run).
  double advance(double loss) {
    KDLOSS_REQUIRE(std::isfinite(loss), std::string(name()) + ": advance() needs a finite loss (got " +
                                            std::to_string(loss) + ")");
    TaidState& s = m_state;
    if (s.step > 0) {
      const TaidSchedule& c = m_sched;
      const double delta = (s.prev_loss - loss) / (s.prev_loss + 1e-15);
      s.momentum = c.beta * s.momentum + (1 - c.beta) * delta;
      const double lin = c.t_start + (c.t_end - c.t_start) * static_cast<double>(s.step) /
                                         static_cast<double>(c.total_steps);
      if (c.adaptive) {
        const double sigmoid = 1 / (1 + std::exp(-s.momentum));
        s.lambda = std::min(c.t_end, std::max(lin, s.lambda + c.alpha * sigmoid * (1 - s.lambda)));
      } else {
        s.lambda = std::min(c.t_end, lin);
      }
    }
    s.prev_loss = loss;
    ++s.step;
    return s.lambda;
  }

  /// The schedule's state (for checkpoints).
  const TaidState& state() const noexcept { return m_state; }
  /// Restores a state saved by `state()` (validated: \f$\lambda \in [0, 1]\f$, finite values,
  /// step >= 0).
  void set_state(const TaidState& s) {
    const std::string who = std::string(name()) + ": set_state(): ";
    KDLOSS_REQUIRE(s.lambda >= 0 && s.lambda <= 1, who + "lambda must be in [0, 1] (got " +
                                                       std::to_string(s.lambda) + ")");
    KDLOSS_REQUIRE(std::isfinite(s.momentum) && std::isfinite(s.prev_loss) && s.step >= 0,
                   who + "momentum and prev_loss must be finite and step >= 0");
    m_state = s;
  }

 private:
  friend class detail::LossCalls<Taid, T>;

  template <class S, class U>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad,
        T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const detail::PairCall<T> c =
        detail::pair_call(who, m_opt, student, teacher, grad, alpha, beta, out, weights, per_row_call);
    const detail::MatView<T>&s = c.s, &t = c.t;
    const detail::RowOutputs<T>& o = c.o;
    const T k = T(1) / m_opt.temperature;
    const Eigen::Index v = s.cols;
    const T lam = static_cast<T>(m_state.lambda);
    const generators::ForwardKL gen{};
    return detail::run_rows(who, m_opt, s.rows, v, [&](Eigen::Index i) { return weights[i]; }, o,
                            [&](Eigen::Index i, const kernels::GradOut<T>& g) {
                              // The end points read one matrix only (and are exact there).
                              if (lam == T(1))
                                return kernels::divergence_row<Arch>(gen, kernels::PlainRow<T>{t.row(i)},
                                                                     s.row(i), v, k, g);
                              if (lam == T(0))
                                return kernels::divergence_row<Arch>(gen, kernels::PlainRow<T>{s.row(i)},
                                                                     s.row(i), v, k, g);
                              return kernels::divergence_row<Arch>(
                                  gen, kernels::MixRow<T>{t.row(i), s.row(i), lam}, s.row(i), v, k, g);
                            });
  }

  Options<T> m_opt;
  TaidSchedule m_sched;
  TaidState m_state;
};

KDLOSS_END_NAMESPACE
