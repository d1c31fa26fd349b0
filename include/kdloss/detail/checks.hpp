// kdloss internals: compile-time layout checks and O(1) run-time shape checks at the API boundary.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "../kernels/row_stats.hpp"
#include "../types.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace detail {

/// "3x17" for error messages.
inline std::string shape(Eigen::Index rows, Eigen::Index cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

/// Rejects at compile time what would otherwise be copied silently: a column-major matrix, an
/// expression without direct access (`s / tau`), or another scalar type.
template <class T, class Derived>
constexpr void check_logits_type() {
  static_assert(std::is_same<typename Derived::Scalar, T>::value,
                "kdloss: the logits' scalar type must be the loss's Scalar (convert explicitly; a "
                "silent conversion would copy N x V entries)");
  static_assert(bool(Derived::IsRowMajor) || Derived::RowsAtCompileTime == 1,
                "kdloss: logits must be row-major (one row per token): use kdloss::RowMatrix, a "
                "Map of a RowMatrix, a row-major block, or .transpose() of a column-major V x N "
                "matrix");
  static_assert((int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) != 0,
                "kdloss: pass a matrix, Map or block, not an expression (temperature is an option; "
                "an expression would be evaluated into an N x V temporary)");
}

/// Raw view of a row-major logit matrix.
template <class T>
struct MatView {
  const T* data;
  Eigen::Index rows, cols, stride;
  const T* row(Eigen::Index i) const { return data + i * stride; }
  /// First and one-past-last byte touched (for overlap checks).
  const void* begin() const { return data; }
  const void* end() const { return rows == 0 ? data : data + (rows - 1) * stride + cols; }
};

template <class T, class Derived>
MatView<T> view(const Eigen::MatrixBase<Derived>& m, const char* who, const char* what) {
  check_logits_type<T, Derived>();
  KDLOSS_REQUIRE(m.derived().innerStride() == 1,
                 std::string(who) + ": " + what + " must have unit inner stride (contiguous rows)");
  KDLOSS_REQUIRE(m.size() == 0 || m.derived().data() != nullptr, std::string(who) + ": " + what + " has a null data pointer");
  // A 1 x V row vector may report any outer stride; rows are then never stepped.
  const Eigen::Index stride = m.rows() <= 1 ? m.cols() : m.derived().outerStride();
  KDLOSS_REQUIRE(stride >= m.cols(),
                 std::string(who) + ": " + what + " has row stride " + std::to_string(stride) + " < " +
                     std::to_string(m.cols()) + " columns");
  return {m.derived().data(), m.rows(), m.cols(), stride};
}

template <class T>
MatView<T> view(const GradRef<T>& g) {
  return {g.data(), g.rows(), g.cols(), g.outer_stride()};
}

inline bool overlaps(const void* a0, const void* a1, const void* b0, const void* b1) {
  const auto x0 = reinterpret_cast<std::uintptr_t>(a0), x1 = reinterpret_cast<std::uintptr_t>(a1);
  const auto y0 = reinterpret_cast<std::uintptr_t>(b0), y1 = reinterpret_cast<std::uintptr_t>(b1);
  return x0 < y1 && y0 < x1;
}

/// Same N x V for student and teacher, and V >= 1 unless there are no rows.
template <class T>
void check_pair(const MatView<T>& s, const MatView<T>& t, const char* who) {
  KDLOSS_REQUIRE(s.rows == t.rows && s.cols == t.cols,
                 std::string(who) + ": student is " + shape(s.rows, s.cols) + " but teacher is " +
                     shape(t.rows, t.cols) +
                     " (a wider teacher can be passed as teacher.leftCols(V) at no cost)");
  KDLOSS_REQUIRE(s.rows == 0 || s.cols > 0, std::string(who) + ": the vocabulary is empty (V = 0)");
}

/// The gradient buffer is N x V and shares no memory with the inputs it is computed from.
template <class T>
void check_grad(const MatView<T>& g, const MatView<T>& s, const MatView<T>* t,
                const char* who) {
  KDLOSS_REQUIRE(g.rows == s.rows && g.cols == s.cols,
                 std::string(who) + ": gradient is " + shape(g.rows, g.cols) + " but the student is " +
                     shape(s.rows, s.cols));
  if (g.rows == 0 || g.cols == 0) return;
  KDLOSS_REQUIRE(!overlaps(g.begin(), g.end(), s.begin(), s.end()),
                 std::string(who) + ": the gradient buffer overlaps the student logits");
  KDLOSS_REQUIRE(t == nullptr || !overlaps(g.begin(), g.end(), t->begin(), t->end()),
                 std::string(who) + ": the gradient buffer overlaps the teacher logits");
}

/// The message of a row that cannot be computed.
inline std::string row_error(const char* who, kernels::RowError e, Eigen::Index row) {
  using E = kernels::RowError;
  std::string what;
  switch (e) {
    case E::TeacherNaN: what = "the teacher logits contain NaN"; break;
    case E::TeacherPosInf: what = "the teacher logits contain +inf"; break;
    case E::TeacherEmpty: what = "the teacher logits have no finite entry (all -inf)"; break;
    case E::StudentNaN: what = "the student logits contain NaN"; break;
    case E::StudentPosInf: what = "the student logits contain +inf"; break;
    case E::StudentEmpty: what = "the student logits have no finite entry (all -inf)"; break;
    case E::UnboundedGradient:
      what = "the gradient is unbounded (infinite in this precision): e.g. the student puts mass "
             "on an entry where the teacher logit is -inf (mask it in the student too), or a "
             "likelihood ratio overflows";
      break;
    case E::BadLabel: what = "the label is outside [0, V) and is not the ignore index"; break;
    case E::BadTarget:
      what = "the soft target is not a probability row (an entry NaN, infinite or negative, or a sum "
             "farther than 1e-3 from 1)";
      break;
    case E::NonTargetEmpty:
      what = "the teacher has no finite logit outside the label class, so its non-target "
             "distribution is undefined";
      break;
    case E::None: what = "no error"; break;
  }
  return std::string(who) + ": row " + std::to_string(row) + ": " + what +
         " (give a masked row weight 0 to skip it)";
}

}  // namespace detail
KDLOSS_END_NAMESPACE
