// kdloss: PlackettLuce (PLD), the teacher-ranking Plackett-Luce distillation loss.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "detail/labeled_calls.hpp"
#include "detail/row_loop.hpp"
#include "kernels/plackett_luce_row.hpp"
#include "types.hpp"

KDLOSS_BEGIN_NAMESPACE

/// Plackett-Luce Distillation (Bassam, Zhu, Bian, "PLD: A Choice-Theoretic List-Wise Knowledge
/// Distillation", arXiv 2506.12542, NeurIPS 2025): a weighted list-wise loss of the student
/// logits against the teacher's ranking of the classes, with the label first. It replaces
/// CE + KD (its first stage is a CE on the label weighted by \f$p_y\f$), so it is used alone.
///
/// Per row, with V classes, label y, teacher logits t and student logits s:
/// - the ranking \f$\pi\f$ = (y, then every other class by teacher logit descending, ties by
///   lower class index first);
/// - the weights \f$\alpha_k = \mathrm{softmax}(t/\tau_T)_{\pi_k}\f$ (the teacher softmax over all
///   V classes, so \f$\sum_k \alpha_k = 1\f$ and \f$\alpha_1 = p_y\f$), where \f$\tau_T\f$ is
///   `Options::temperature` (1 by default, the paper's recommendation);
/// - \f[ L_i = \sum_{k=1}^{V} \alpha_k \Big(\log\sum_{l \ge k} e^{s_{\pi_l}} - s_{\pi_k}\Big),
///   \qquad \frac{\partial L_i}{\partial s_{\pi_m}} = \sum_{k \le m} \alpha_k\,
///   \frac{e^{s_{\pi_m}}}{\sum_{l \ge k} e^{s_{\pi_l}}} - \alpha_m, \f]
///   the student logits NOT softened (\f$\tau_T\f$ applies to the teacher only, so the gradient
///   has no \f$1/\tau\f$ factor; `scale_by_t2` keeps its meaning and multiplies both by
///   \f$\tau_T^2\f$). No gradient flows to the teacher. \f$L_i \ge 0\f$ is convex in s and its
///   gradient rows sum to 0. Special cases: \f$\alpha = (1, 0, \dots)\f$ is the cross-entropy on
///   y, uniform \f$\alpha\f$ is ListMLE.
///
/// The gradient is computed in O(V) after the sort by the paper's recurrence (App. A), with every
/// exponent taken relative to the row's student maximum so nothing overflows (see
/// `kernels::plackett_luce_row`). The ranking is an O(V) stable LSD radix sort of the teacher row
/// (3 passes of 11 bits for float logits, up to 6 for double; a pass whose digit is the same for
/// every class is skipped), never a comparison sort. The value follows the paper's
/// cross-entropy form (no teacher-entropy constant is subtracted).
///
/// Labels: one per row (int32 or int64); rows whose label is `ignore_index` (-100 by default)
/// are masked (weight 0), on top of any row weights; a label outside [0, V) that is not the
/// ignore index is a std::invalid_argument naming the row. Weights, reductions, accumulate form,
/// per-row values, the finite checks (NaN or +inf logits in a weighted row are errors naming the
/// row) and the layouts (Maps, blocks with outer stride, a `leftCols(V)` teacher) are those of
/// every kdloss loss.
///
/// Masked vocabulary (\f$-\infty\f$ logits), as in DESIGN.md §1:
/// - a \f$-\infty\f$ teacher logit gives \f$\alpha = 0\f$ (the class ranks last, ties among such
///   classes by index): its stage adds nothing, while its student logit still counts in the
///   earlier stages' log-sum-exps;
/// - a \f$-\infty\f$ student logit adds nothing to any log-sum-exp and its gradient is
///   \f$-\alpha\f$ at its rank;
/// - a class with a finite teacher logit and a \f$-\infty\f$ student logit (the label included)
///   makes \f$L_i = +\infty\f$, the true value (the student gives the teacher's ranking
///   probability 0), with a finite gradient: a stage whose remaining classes all have
///   \f$-\infty\f$ student logits adds nothing to it;
/// - so a label whose teacher logit is \f$-\infty\f$ has \f$\alpha_1 = 0\f$ and its stage adds
///   nothing; classes \f$-\infty\f$ on both sides contribute 0 and get gradient 0.
/// A row whose student logits span so wide a range that a weighted suffix sum would underflow the
/// fast path's scale (roughly: more than 40 nats in float, 620 in double, below the maximum at
/// every remaining class of a weighted stage) is computed by an exact O(V) double path, slower
/// but with the same result.
///
/// **Workspace.** PlackettLuce keeps per-thread scratch of O(V) (the radix sort's two item
/// buffers, the ranked weights and suffix sums: about 40 bytes per class for float); it grows on
/// the first call at a new largest V, or up front with `reserve(N, V)`, after which calls never
/// allocate. So unlike the stateless losses an instance must not be called from two threads at
/// once (use one instance per thread; `Options::threads` parallelises a single call).
template <class T, class Arch = simd::best_arch>
class PlackettLuce : public detail::LabeledLossCalls<PlackettLuce<T, Arch>, T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  using arch_type = Arch;

  /// \param opt          options (validated: throws std::invalid_argument); `temperature` is the
  ///                     teacher temperature \f$\tau_T\f$
  /// \param ignore_index label of rows to skip
  explicit PlackettLuce(const Options<T>& opt = {}, std::int64_t ignore_index = -100)
      : m_opt(opt), m_ignore(ignore_index) {
    internal::check_options(m_opt, name());
  }

  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::PlackettLuce"; }
  /// Current options.
  const Options<T>& options() const noexcept { return m_opt; }
  /// The label of masked rows.
  std::int64_t ignore_index() const noexcept { return m_ignore; }

  /// Sizes the workspace for calls of up to `rows` x `vocab` (and the current thread setting), so
  /// that no later call of at most that shape allocates.
  void reserve(Eigen::Index rows, Eigen::Index vocab) const {
    KDLOSS_REQUIRE(rows >= 0 && vocab >= 0, std::string(name()) + ": reserve() needs sizes >= 0");
    check_vocab(vocab);
    const auto slots = static_cast<size_t>(detail::max_threads(m_opt));
    if (m_scratch.size() < slots) m_scratch.resize(slots);
    for (auto& s : m_scratch) s.reserve(vocab);
  }

 private:
  friend class detail::LabeledLossCalls<PlackettLuce, T>;

  static void check_vocab(Eigen::Index v) {
    KDLOSS_REQUIRE(v <= Eigen::Index{0xFFFFFFFF},
                   std::string(name()) + ": the vocabulary has " + std::to_string(v) +
                       " classes; at most 2^32 - 1 are supported (32-bit class indices)");
  }

  template <class S, class U, class L>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, const Eigen::MatrixBase<L>& labels,
        GradRef<T>* grad, T alpha, T beta, RowValuesRef<T>* out, const Weights<T>& weights,
        bool per_row_call) const {
    const T k = T(1) / m_opt.temperature;
    // The row loop's gradient scale carries 1/tau (it assumes q = softmax(s/tau)); PLD's student
    // is not softened, so the kernel multiplies it back by tau.
    const double tau = static_cast<double>(m_opt.temperature);
    return detail::run_labeled(
        name(), m_opt, m_ignore, student, teacher, labels, grad, alpha, beta, out, weights, per_row_call,
        [&](Eigen::Index, const T* s, const T* t, Eigen::Index y, const kernels::GradOut<T>& g) {
          auto& ws = m_scratch[static_cast<size_t>(detail::thread_slot())];
          return kernels::plackett_luce_row<Arch>(t, s, student.cols(), y, k, tau, g, ws);
        },
        [&](const detail::MatView<T>& s) { reserve(s.rows, s.cols); });
  }

  Options<T> m_opt;
  std::int64_t m_ignore;
  mutable std::vector<kernels::PldScratch<T>> m_scratch;
};

KDLOSS_END_NAMESPACE
