// kdloss internals: the one row loop under every loss (weights, masking, reduction, scaling,
// accumulate form, optional OpenMP, deterministic summation, errors).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "checks.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

KDLOSS_BEGIN_NAMESPACE
namespace detail {

/// Where a call writes, and how (filled in by the API layer, read by the row loop).
template <class T>
struct RowOutputs {
  T* grad = nullptr;            ///< N x V gradient, or null for a value-only call
  Eigen::Index grad_stride = 0;
  T alpha = T(1);               ///< gradient (and returned value) scale: dS = alpha * dL + beta * dS
  T beta = T(0);
  T* per_row = nullptr;         ///< N per-row contributions, or null
  Eigen::Index per_row_stride = 1;
};


/// Scales a gradient row by beta (zero when beta == 0, never reading the old contents then).
template <class T>
void scale_row(T* g, Eigen::Index n, T beta) {
  if (beta == T(0)) {
    std::fill(g, g + n, T(0));
  } else if (beta != T(1)) {
    for (Eigen::Index j = 0; j < n; ++j) g[j] *= beta;
  }
}

/// The most threads `run_rows` may use with these options (1 without OpenMP): how many per-thread
/// scratch areas a loss with a workspace needs.
template <class T>
int max_threads(const Options<T>& opt) {
#if defined(_OPENMP)
  return opt.threads > 0 ? opt.threads : std::max(1, omp_get_max_threads());
#else
  (void)opt;
  return 1;
#endif
}

/// The calling thread's slot in [0, max_threads) inside `run_rows` (0 without OpenMP).
inline int thread_slot() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// The row loop. `row(i, out)` computes row i and, when `out.row` is not null, writes
/// \f$\mathrm{out.scale}\cdot\partial L_i/\partial s_i + \mathrm{out.beta}\cdot\mathrm{out.row}\f$.
///
/// \param n, v     rows and vocabulary size
/// \param k        inverse temperature \f$1/\tau\f$ (part of the gradient scale)
/// Returns \f$\alpha \cdot c \sum_i w_i L_i\f$ with \f$c = (\tau^2)/d\f$ per Options.
/// Rows with \f$w_i = 0\f$ are never computed. Rows are summed in a fixed order in double, so the
/// result is bitwise identical for every thread count.
/// \param weight \f$i \mapsto w_i\f$ (the caller's weights, possibly combined with a label mask)
template <class T, class WeightFn, class RowFn>
T run_rows(const char* who, const Options<T>& opt, Eigen::Index n, Eigen::Index v,
           WeightFn&& weight, const RowOutputs<T>& out, RowFn&& row) {
  double wsum = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const T wi = weight(i);
    KDLOSS_REQUIRE(std::isfinite(static_cast<double>(wi)) && wi >= T(0),
                   std::string(who) + ": weight " + std::to_string(i) + " is " +
                       std::to_string(static_cast<double>(wi)) + " (weights must be finite and >= 0)");
    wsum += static_cast<double>(wi);
  }
  double denom = 1;
  if (opt.reduction == Reduction::BatchMean)
    denom = opt.denominator > T(0) ? static_cast<double>(opt.denominator) : wsum;
  const double tau = static_cast<double>(opt.temperature);
  const double factor = (opt.scale_by_t2 ? tau * tau : 1.0) / denom;
  const bool nothing = !(wsum > 0);  // every row masked (or N = 0): loss 0, gradient 0

  auto masked_row = [&](Eigen::Index i) {
    if (out.grad) scale_row(out.grad + i * out.grad_stride, v, out.beta);
    if (out.per_row) out.per_row[i * out.per_row_stride] = T(0);
  };
  auto compute_row = [&](Eigen::Index i) -> kernels::RowResult {
    const T wi = weight(i);
    if (nothing || wi == T(0)) {
      masked_row(i);
      return {};
    }
    kernels::GradOut<T> g;
    g.row = out.grad ? out.grad + i * out.grad_stride : nullptr;
    g.scale = static_cast<T>(static_cast<double>(out.alpha) * factor * static_cast<double>(wi) / tau);
    g.beta = out.beta;
    kernels::RowResult r = row(i, g);
    r.value *= static_cast<double>(wi) * factor;
    if (out.per_row) out.per_row[i * out.per_row_stride] = static_cast<T>(r.value);
    return r;
  };

  // Rows go in fixed chunks; chunk sums land in a fixed-size table summed in order afterwards.
  // Neither the chunking nor the order depends on the thread count.
  constexpr Eigen::Index kChunk = 4, kTable = 256;
  double total = 0;
  for (Eigen::Index r0 = 0; r0 < n; r0 += kChunk * kTable) {
    const Eigen::Index chunks = std::min(kTable, (n - r0 + kChunk - 1) / kChunk);
    double partial[kTable];
    Eigen::Index bad_row[kTable];
    kernels::RowError bad[kTable];
    auto run_chunk = [&](Eigen::Index c) {
      double s = 0;
      bad[c] = kernels::RowError::None;
      bad_row[c] = 0;
      const Eigen::Index i1 = std::min(n, r0 + (c + 1) * kChunk);
      for (Eigen::Index i = r0 + c * kChunk; i < i1; ++i) {
        const kernels::RowResult r = compute_row(i);
        if (r.error != kernels::RowError::None) {
          bad[c] = r.error;
          bad_row[c] = i;
          break;
        }
        s += r.value;
      }
      partial[c] = s;
    };
#if defined(_OPENMP)
    const int threads = opt.threads;
    const bool parallel = threads != 1 && chunks > 1 && (n - r0) * v >= (Eigen::Index{1} << 16);
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads()) if (parallel)
    for (Eigen::Index c = 0; c < chunks; ++c) run_chunk(c);
#else
    for (Eigen::Index c = 0; c < chunks; ++c) run_chunk(c);
#endif
    for (Eigen::Index c = 0; c < chunks; ++c) {
      if (bad[c] != kernels::RowError::None) {
        if (bad[c] == kernels::RowError::BadLabel || bad[c] == kernels::RowError::BadTarget)
          internal::fail<std::invalid_argument>(row_error(who, bad[c], bad_row[c]));
        internal::fail<std::domain_error>(row_error(who, bad[c], bad_row[c]));
      }
      total += partial[c];
    }
  }
  return static_cast<T>(static_cast<double>(out.alpha) * total);
}

/// The weights' size must be N (or no weights at all).
template <class T>
void check_weights(const Weights<T>& w, Eigen::Index n, const char* who) {
  KDLOSS_REQUIRE(!w.has_value() || w.size() == n,
                 std::string(who) + ": " + std::to_string(w.size()) + " weights for " + std::to_string(n) +
                     " rows");
}

/// Validates a call's outputs against the student view and returns where the row loop writes:
/// the gradient (N x V, no overlap with the inputs), the per-row values (N), alpha and beta.
template <class T>
RowOutputs<T> outputs(const char* who, GradRef<T>* grad, RowValuesRef<T>* per_row, T alpha, T beta,
                      const MatView<T>& s, const MatView<T>* t) {
  KDLOSS_REQUIRE(std::isfinite(static_cast<double>(alpha)) && std::isfinite(static_cast<double>(beta)),
                 std::string(who) + ": accumulate() needs finite alpha and beta");
  RowOutputs<T> o;
  o.alpha = alpha;
  o.beta = beta;
  if (grad != nullptr) {
    const MatView<T> g = view<T>(*grad);
    check_grad(g, s, t, who);
    o.grad = grad->data();
    o.grad_stride = g.stride;
  }
  if (per_row != nullptr) {
    KDLOSS_REQUIRE(per_row->size() == s.rows, std::string(who) + ": per_row() output has " +
                                                  std::to_string(per_row->size()) + " entries for " +
                                                  std::to_string(s.rows) + " rows");
    o.per_row = per_row->data();
    o.per_row_stride = per_row->innerStride();
  }
  return o;
}

/// `Reduction::None` gives one value per row, so only `per_row()` accepts it.
template <class T>
void check_reduction(const Options<T>& opt, bool per_row_call, const char* who) {
  KDLOSS_REQUIRE(per_row_call || opt.reduction != Reduction::None,
                 std::string(who) + ": Reduction::None gives one value per row: call per_row()");
}

/// The checked inputs of a (student, teacher) call and where its row loop writes.
template <class T>
struct PairCall {
  MatView<T> s, t;
  RowOutputs<T> o;
  /// Row i's output `g` with row i + 1's inputs as its prefetch hint (`GradOut::next`; none after
  /// the last row).
  kernels::GradOut<T> with_next(kernels::GradOut<T> g, Eigen::Index i) const {
    if (i + 1 < s.rows) g.next = {t.row(i + 1), s.row(i + 1)};
    return g;
  }
};

/// The checks every (student, teacher) call makes, in this order: both views, equal shapes, the
/// reduction, `extra(s)` (a loss's own inputs, e.g. its labels), the weights, the outputs.
template <class T, class S, class U, class Extra>
PairCall<T> pair_call(const char* who, const Options<T>& opt, const Eigen::MatrixBase<S>& student,
                      const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad, T alpha, T beta, RowValuesRef<T>* out,
                      const Weights<T>& weights, bool per_row_call, Extra&& extra) {
  const MatView<T> s = view<T>(student, who, "student");
  const MatView<T> t = view<T>(teacher, who, "teacher");
  check_pair(s, t, who);
  check_reduction(opt, per_row_call, who);
  extra(s);
  check_weights(weights, s.rows, who);
  return {s, t, outputs(who, grad, out, alpha, beta, s, &t)};
}

/// `pair_call` for a loss with no inputs of its own.
template <class T, class S, class U>
PairCall<T> pair_call(const char* who, const Options<T>& opt, const Eigen::MatrixBase<S>& student,
                      const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad, T alpha, T beta, RowValuesRef<T>* out,
                      const Weights<T>& weights, bool per_row_call) {
  return pair_call(who, opt, student, teacher, grad, alpha, beta, out, weights, per_row_call,
                   [](const MatView<T>&) {});
}

}  // namespace detail
KDLOSS_END_NAMESPACE
