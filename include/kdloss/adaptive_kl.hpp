// kdloss: AdaptiveKL (AKL), the head/tail-weighted mix of forward and reverse KL.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "detail/calls.hpp"
#include "detail/row_loop.hpp"
#include "kernels/adaptive_kl_row.hpp"
#include "types.hpp"

KDLOSS_BEGIN_NAMESPACE

/// What AdaptiveKL decided for one row, for logging: `w_head`, `w_tail` (\f$w_h + w_t = 1\f$) and
/// `head_size` (tokens in the head). Rows masked by a zero weight report zeros.
using AdaptiveKLRow = kernels::AklRowInfo;

/// Adaptive KL (Wu et al., "Rethinking KL divergence in KD for LLMs", arXiv 2404.02657; reference
/// wutaiqiang/LLM_KD_AKL): forward KL on the teacher's head and reverse KL on its tail, weighted by
/// how far the student is from the teacher on each.
///
/// With \f$p = \mathrm{softmax}(t/\tau)\f$ and \f$q = \mathrm{softmax}(s/\tau)\f$, the head \f$H\f$
/// is the top tokens of p (teacher logit descending, ties by lower index first, as a stable
/// descending sort) whose inclusive cumulative teacher mass is \f$\le \mu\f$, plus the top-1 token
/// always; the tail is the rest. Then
/// \f[ g_h = \sum_{v\in H} |p_v - q_v|,\quad g_t = \sum_{v\notin H} |p_v - q_v|,\quad
///     w_h = \frac{g_h}{g_h + g_t},\ w_t = 1 - w_h \ (\tfrac12, \tfrac12 \text{ when both are } 0), \f]
/// \f[ L_i = w_h\,KL(p\|q) + w_t\,KL(q\|p),\qquad
///     \frac{\partial L_i}{\partial s_j} = \frac{1}{\tau}\Big(w_h (q_j - p_j)
///     + w_t\, q_j\big(\log q_j - \log p_j - KL(q\|p)\big)\Big), \f]
/// the weights being detached (no gradient flows through them, as in the reference). Weights,
/// reductions, temperature, calls and errors are those of every kdloss loss; \f$\mu \notin (0,1)\f$
/// is a std::invalid_argument. A term whose weight is exactly 0 is left out (its KL may be
/// \f$+\infty\f$ on a masked vocabulary without making the loss infinite).
///
/// The row is never sorted: the mean and spread of the teacher logits under p (from pass 1) place
/// six thresholds around where the head should end; pass 2 keeps the entries above the lowest one
/// (up to max(512, V/8) of them), the teacher mass above each threshold says between which two the
/// head ends, and an exact O(V) expected-time selection cuts it inside that bracket: among the
/// kept entries (a peaked or typical teacher), or among the row's entries gathered by one more pass
/// (a flat teacher, which keeps more). A cumulative mass within float rounding of \f$\mu\f$ may
/// fall either side, as it does in the reference's float cumsum.
///
/// Differences from the reference, by design: the reference takes no temperature (here \f$\tau\f$
/// applies to both sides, \f$\tau = 1\f$ reproduces it); it replaces \f$\pm\infty\f$ logits by 0
/// when choosing the weights, while here a \f$-\infty\f$ logit is a masked token with probability 0
/// everywhere; and it gives NaN weights when \f$q = p\f$ on a row, here \f$\tfrac12, \tfrac12\f$.
///
/// **Workspace.** AdaptiveKL keeps per-thread scratch of O(V) floats (the row's p and q, the
/// selection buffers) and the per-row decisions of the last call; they grow on the first call at
/// a new largest shape, or up front with `reserve(N, V)`, after which calls never allocate. So
/// unlike the stateless losses an instance must not be called from two threads at once (use one
/// instance per thread; `Options::threads` parallelises a single call).
template <class T, class Arch = simd::best_arch>
class AdaptiveKL : public detail::LossCalls<AdaptiveKL<T, Arch>, T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  using arch_type = Arch;

  /// \param opt options (validated: throws std::invalid_argument)
  /// \param mu  head mass \f$\mu \in (0, 1)\f$ (the reference's 0.5 by default)
  explicit AdaptiveKL(const Options<T>& opt = {}, double mu = 0.5) : m_opt(opt), m_mu(mu) {
    internal::check_options(m_opt, name());
    KDLOSS_REQUIRE(mu > 0 && mu < 1, std::string(name()) + ": mu must be in (0, 1) (got " +
                                         std::to_string(mu) + ")");
  }

  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::AdaptiveKL"; }
  /// Current options.
  const Options<T>& options() const noexcept { return m_opt; }
  /// Replaces the options (validated: throws std::invalid_argument).
  void set_options(const Options<T>& opt) {
    internal::check_options(opt, name());
    m_opt = opt;
  }
  /// The head mass \f$\mu\f$.
  double mu() const noexcept { return m_mu; }

  /// Sizes the workspace for calls of up to `rows` x `vocab` (and the current thread setting), so
  /// that no later call of at most that shape allocates.
  void reserve(Eigen::Index rows, Eigen::Index vocab) const {
    KDLOSS_REQUIRE(rows >= 0 && vocab >= 0, std::string(name()) + ": reserve() needs sizes >= 0");
    const auto slots = static_cast<size_t>(detail::max_threads(m_opt));
    if (m_scratch.size() < slots) m_scratch.resize(slots);
    for (auto& s : m_scratch) s.reserve(vocab);
    if (static_cast<Eigen::Index>(m_rows.capacity()) < rows) m_rows.reserve(static_cast<size_t>(rows));
  }

  /// The decisions of the last call, one per row (\f$w_h\f$, \f$w_t\f$, head size).
  const std::vector<AdaptiveKLRow>& last_rows() const noexcept { return m_rows; }

 private:
  friend class detail::LossCalls<AdaptiveKL, T>;

  template <class S, class U>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad,
        T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call) const {
    const char* who = name();
    const detail::PairCall<T> c =
        detail::pair_call(who, m_opt, student, teacher, grad, alpha, beta, out, weights, per_row_call);
    const detail::MatView<T>&s = c.s, &t = c.t;
    const detail::RowOutputs<T>& o = c.o;
    reserve(s.rows, s.cols);
    m_rows.assign(static_cast<size_t>(s.rows), AdaptiveKLRow{});
    const T k = T(1) / m_opt.temperature;
    const Eigen::Index v = s.cols;
    return detail::run_rows(who, m_opt, s.rows, v, [&](Eigen::Index i) { return weights[i]; }, o,
                            [&](Eigen::Index i, const kernels::GradOut<T>& g) {
                              auto& ws = m_scratch[static_cast<size_t>(detail::thread_slot())];
                              return kernels::adaptive_kl_row<Arch>(t.row(i), s.row(i), v, k, m_mu, c.with_next(g, i), ws,
                                                                    m_rows[static_cast<size_t>(i)]);
                            });
  }

  Options<T> m_opt;
  double m_mu;
  mutable std::vector<kernels::AklScratch<T>> m_scratch;
  mutable std::vector<AdaptiveKLRow> m_rows;
};

KDLOSS_END_NAMESPACE
