// kdloss internals: the calls of a loss of (student, teacher, labels), written once (CRTP).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>

#include "../types.hpp"
#include "checks.hpp"
#include "row_loop.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace detail {

/// The calls of a loss that needs the labels besides the two logit matrices (DKD, NKD, PLD):
/// the same five as `LossCalls` with `labels` (an integer vector of N entries, each in [0, V) or
/// the ignore index; ignored rows are masked) after the teacher. Forwards to
/// `Derived::run(student, teacher, labels, grad*, alpha, beta, per_row*, weights, per_row_call)`.
template <class Derived, class T>
class LabeledLossCalls {
 public:
  /// Value only.
  template <class S, class U, class L>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
               const Eigen::MatrixBase<L>& labels, const Weights<T>& weights = {}) const {
    return self().run(student, teacher, labels, nullptr, T(1), T(0), nullptr, weights, false);
  }
  /// Value and gradient (overwrites `grad`).
  template <class S, class U, class L>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
               const Eigen::MatrixBase<L>& labels, GradRef<T> grad, const Weights<T>& weights = {}) const {
    return self().run(student, teacher, labels, &grad, T(1), T(0), nullptr, weights, false);
  }
  /// `grad = alpha * dL/ds + beta * grad`, returns \f$\alpha L\f$ (beta = 0 never reads grad).
  template <class S, class U, class L>
  T accumulate(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
               const Eigen::MatrixBase<L>& labels, GradRef<T> grad, T alpha, T beta,
               const Weights<T>& weights = {}) const {
    return self().run(student, teacher, labels, &grad, alpha, beta, nullptr, weights, false);
  }
  /// Per-row contributions (the only call that accepts `Reduction::None`); returns their sum.
  template <class S, class U, class L>
  T per_row(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
            const Eigen::MatrixBase<L>& labels, RowValuesRef<T> out, const Weights<T>& weights = {}) const {
    return self().run(student, teacher, labels, nullptr, T(1), T(0), &out, weights, true);
  }
  /// Per-row contributions and the gradient of their sum.
  template <class S, class U, class L>
  T per_row(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
            const Eigen::MatrixBase<L>& labels, RowValuesRef<T> out, GradRef<T> grad,
            const Weights<T>& weights = {}) const {
    return self().run(student, teacher, labels, &grad, T(1), T(0), &out, weights, true);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

/// Labels are an integer vector of N entries, each in [0, V) or equal to the ignore index.
template <class L>
void check_labels(const Eigen::MatrixBase<L>& labels, Eigen::Index n, Eigen::Index v,
                  std::int64_t ignore_index, const char* who) {
  static_assert(std::is_integral<typename L::Scalar>::value,
                "kdloss: labels must be an integer vector (int32 or int64)");
  KDLOSS_REQUIRE(labels.size() == n, std::string(who) + ": " + std::to_string(labels.size()) +
                                         " labels for " + std::to_string(n) + " rows");
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto y = static_cast<std::int64_t>(labels(i));
    KDLOSS_REQUIRE(y == ignore_index || (y >= 0 && y < v),
                   std::string(who) + ": row " + std::to_string(i) + ": label " + std::to_string(y) +
                       " is outside [0, " + std::to_string(v) + ") and is not the ignore index (" +
                       std::to_string(ignore_index) + ")");
  }
}

/// The body of a (student, teacher, labels) loss: shape, label, weight and output checks
/// (`pair_call`), then `prepare(student_view)` (e.g. growing a workspace), then the row loop over
/// the rows whose label is not the ignore index, calling `row(i, student_row, teacher_row, label,
/// grad_out)`.
template <class T, class S, class U, class L, class RowFn, class Prepare>
T run_labeled(const char* who, const Options<T>& opt, std::int64_t ignore_index, const Eigen::MatrixBase<S>& student,
              const Eigen::MatrixBase<U>& teacher, const Eigen::MatrixBase<L>& labels, GradRef<T>* grad, T alpha,
              T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call, RowFn&& row,
              Prepare&& prepare) {
  const PairCall<T> c =
      pair_call(who, opt, student, teacher, grad, alpha, beta, out, weights, per_row_call,
                [&](const MatView<T>& s) { check_labels(labels, s.rows, s.cols, ignore_index, who); });
  prepare(c.s);
  auto label = [&](Eigen::Index i) { return static_cast<std::int64_t>(labels(i)); };
  auto weight = [&](Eigen::Index i) { return label(i) == ignore_index ? T(0) : weights[i]; };
  return run_rows(who, opt, c.s.rows, c.s.cols, weight, c.o, [&](Eigen::Index i, const kernels::GradOut<T>& g) {
    return row(i, c.s.row(i), c.t.row(i), static_cast<Eigen::Index>(label(i)), g);
  });
}

/// `run_labeled` for a loss with nothing to prepare.
template <class T, class S, class U, class L, class RowFn>
T run_labeled(const char* who, const Options<T>& opt, std::int64_t ignore_index, const Eigen::MatrixBase<S>& student,
              const Eigen::MatrixBase<U>& teacher, const Eigen::MatrixBase<L>& labels, GradRef<T>* grad, T alpha,
              T beta, RowValuesRef<T>* out, const Weights<T>& weights, bool per_row_call, RowFn&& row) {
  return run_labeled(who, opt, ignore_index, student, teacher, labels, grad, alpha, beta, out, weights, per_row_call,
                     row, [](const MatView<T>&) {});
}

}  // namespace detail
KDLOSS_END_NAMESPACE
