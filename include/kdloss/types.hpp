// kdloss: matrix aliases, reductions and the options every loss shares.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "config.hpp"

namespace kdloss {

/// Row-major dynamic matrix: one row per token, one column per vocabulary entry (N x V).
template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Column vector (per-row weights, per-row loss values, labels).
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Writable view of a caller-owned N x V gradient buffer: a RowMatrix, a Map over a trainer's buffer,
/// or a row-major block with outer stride (`G.leftCols(V)`, `G.middleRows(a, n)`). Never a copy:
/// a column-major buffer or a read-only expression is a compile error. A column vector never
/// converts (it would be taken for the weights), so a one-column gradient is an N x 1 RowMatrix.
template <class T>
class GradRef {
 public:
  template <class D, class = std::enable_if_t<D::ColsAtCompileTime != 1>>
  GradRef(const Eigen::DenseBase<D>& g)  // NOLINT(google-explicit-constructor): like Eigen::Ref
  {
    static_assert(std::is_same<typename D::Scalar, T>::value,
                  "kdloss: the gradient buffer must have the loss's Scalar type");
    static_assert(bool(D::IsRowMajor) || D::RowsAtCompileTime == 1,
                  "kdloss: the gradient buffer must be row-major (kdloss::RowMatrix, a Map of one, "
                  "or a row-major block)");
    static_assert((int(Eigen::internal::traits<D>::Flags) & Eigen::DirectAccessBit) != 0 &&
                      (int(Eigen::internal::traits<D>::Flags) & Eigen::LvalueBit) != 0,
                  "kdloss: the gradient buffer must be writable memory, not an expression");
    // Eigen's idiom for writable temporaries such as G.leftCols(V): the expression is a view.
    D& d = const_cast<D&>(g.derived());
    KDLOSS_REQUIRE(d.innerStride() == 1, "kdloss: the gradient buffer must have unit inner stride");
    m_data = d.data();
    m_rows = d.rows();
    m_cols = d.cols();
    m_stride = d.rows() <= 1 ? d.cols() : d.outerStride();
  }
  T* data() const noexcept { return m_data; }
  Eigen::Index rows() const noexcept { return m_rows; }
  Eigen::Index cols() const noexcept { return m_cols; }
  /// Distance between the starts of consecutive rows, in elements.
  Eigen::Index outer_stride() const noexcept { return m_stride; }

 private:
  T* m_data = nullptr;
  Eigen::Index m_rows = 0, m_cols = 0, m_stride = 0;
};

/// Optional per-row weights \f$w_i \ge 0\f$ (absent: every row has weight 1; \f$w_i = 0\f$ masks row
/// i). A non-owning view of any Eigen column vector with direct access (VectorXf, a Map over a
/// trainer's buffer, a column block); it never copies. Only column vectors convert, so a gradient
/// buffer can never be mistaken for weights.
template <class T>
class Weights {
 public:
  /// No weights: every row counts with weight 1.
  Weights() = default;
  /// No weights: every row counts with weight 1.
  Weights(std::nullopt_t) {}  // NOLINT(google-explicit-constructor): optional-like
  /// A view of `w`, which must outlive the call it is passed to.
  template <class Derived, class = std::enable_if_t<Derived::ColsAtCompileTime == 1>>
  Weights(const Eigen::DenseBase<Derived>& w)  // NOLINT(google-explicit-constructor)
      : m_data(w.derived().data()), m_size(w.size()), m_stride(w.innerStride()) {
    static_assert(std::is_same<typename Derived::Scalar, T>::value,
                  "kdloss: weights must have the loss's Scalar type");
    static_assert((int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) != 0,
                  "kdloss: weights must be a vector, Map or block, not an expression");
  }
  /// Whether weights were given.
  bool has_value() const noexcept { return m_data != nullptr || m_size > 0; }
  /// Number of weights.
  Eigen::Index size() const noexcept { return m_size; }
  /// Weight of row i (1 when no weights were given).
  T operator[](Eigen::Index i) const noexcept { return m_data ? m_data[i * m_stride] : T(1); }

 private:
  const T* m_data = nullptr;
  Eigen::Index m_size = 0;
  Eigen::Index m_stride = 1;
};

/// Writable view of N per-row values (the output of `per_row`).
template <class T>
using RowValuesRef = Eigen::Ref<Vector<T>>;

/// How per-row losses \f$L_i\f$ with weights \f$w_i\f$ are combined into the returned value.
/// The gradient is always the gradient of the returned value.
enum class Reduction {
  /// \f$\sum_i w_i L_i\f$.
  Sum,
  /// \f$\sum_i w_i L_i / d\f$ with \f$d = \sum_i w_i\f$ (the mean over valid tokens, as in TRL,
  /// Liger and torchtune), or \f$d\f$ = `Options::denominator` when that is set (a global token
  /// count across gradient accumulation or data-parallel ranks). \f$d = 0\f$ gives loss 0 and
  /// gradient 0, never NaN. This is the default.
  BatchMean,
  /// No reduction: the per-row values \f$w_i L_i\f$ are returned through `per_row()`; the plain
  /// call operators refuse this reduction (they return one number). The gradient written by
  /// `per_row()` is that of \f$\sum_i w_i L_i\f$.
  None,
};

/// Human-readable name of a reduction (used in error messages).
inline const char* to_string(Reduction r) noexcept {
  switch (r) {
    case Reduction::Sum: return "Sum";
    case Reduction::BatchMean: return "BatchMean";
    case Reduction::None: return "None";
  }
  return "invalid";
}

/// Options shared by every loss. A plain aggregate held by value and validated once when a loss
/// is constructed: `kdloss::ForwardKL<float> f({2.0f});` sets the temperature, and C++20 callers may
/// write `{.temperature = 2.0f, .scale_by_t2 = true}`.
template <class T>
struct Options {
  /// Temperature \f$\tau > 0\f$, applied to both sides: \f$p = \mathrm{softmax}(t/\tau)\f$,
  /// \f$q = \mathrm{softmax}(s/\tau)\f$. The gradient carries the chain-rule factor \f$1/\tau\f$.
  T temperature = T(1);
  /// Multiply loss and gradient by \f$\tau^2\f$ (Hinton; DistillKit, f-DISTILL). Off by default,
  /// as in TRL, Liger and torchtune.
  bool scale_by_t2 = false;
  /// How rows are combined; see Reduction.
  Reduction reduction = Reduction::BatchMean;
  /// When > 0, the BatchMean denominator instead of \f$\sum_i w_i\f$ (e.g. `num_items_in_batch`).
  /// Ignored by Sum and None.
  T denominator = T(0);
  /// Rows processed in parallel when the translation unit is compiled with OpenMP (`-fopenmp`):
  /// 1 = serial (default), 0 = OpenMP's default team size. Results are bitwise identical for every
  /// thread count (rows are reduced in a fixed order).
  int threads = 1;
};

namespace internal {

/// Validates the shared options; `who` names the loss in the message.
template <class T>
void check_options(const Options<T>& o, const char* who) {
  KDLOSS_REQUIRE(std::isfinite(static_cast<double>(o.temperature)) && o.temperature > T(0),
                 std::string(who) + ": temperature must be finite and > 0 (got " +
                     std::to_string(static_cast<double>(o.temperature)) + ")");
  KDLOSS_REQUIRE(std::isfinite(static_cast<double>(o.denominator)) && o.denominator >= T(0),
                 std::string(who) + ": denominator must be finite and >= 0 (0 means the sum of the weights; got " +
                     std::to_string(static_cast<double>(o.denominator)) + ")");
  KDLOSS_REQUIRE(o.reduction == Reduction::Sum || o.reduction == Reduction::BatchMean ||
                     o.reduction == Reduction::None,
                 std::string(who) + ": unknown reduction");
  KDLOSS_REQUIRE(o.threads >= 0, std::string(who) + ": threads must be >= 0 (0 = OpenMP default, 1 = serial)");
}

}  // namespace internal

/// Row weights from label ids: \f$w_i = 0\f$ where `labels[i] == ignore_index`, else 1.
/// Writes into a caller-owned vector (no allocation).
/// \param labels one label per row (int32 or int64)
/// \param out    N weights, resized by the caller
template <class T, class Derived>
void mask_from_labels(const Eigen::MatrixBase<Derived>& labels, Eigen::Ref<Vector<T>> out,
                      std::int64_t ignore_index = -100) {
  static_assert(std::is_integral<typename Derived::Scalar>::value,
                "kdloss::mask_from_labels: labels must be an integer vector (int32 or int64)");
  KDLOSS_REQUIRE(labels.size() == out.size(),
                 "kdloss::mask_from_labels: " + std::to_string(labels.size()) + " labels but " +
                     std::to_string(out.size()) + " weights");
  for (Eigen::Index i = 0; i < labels.size(); ++i)
    out[i] = static_cast<std::int64_t>(labels(i)) == ignore_index ? T(0) : T(1);
}

/// Row weights from label ids, allocating the result: \f$w_i = [\,\mathrm{labels}_i \ne
/// \mathrm{ignore\_index}\,]\f$.
template <class T, class Derived>
Vector<T> mask_from_labels(const Eigen::MatrixBase<Derived>& labels,
                           std::int64_t ignore_index = -100) {
  Vector<T> w(labels.size());
  mask_from_labels<T>(labels, w, ignore_index);
  return w;
}

}  // namespace kdloss
