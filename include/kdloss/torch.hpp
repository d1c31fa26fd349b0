// kdloss: LibTorch adapter — any kdloss divergence as a torch::autograd::Function.
// SPDX-License-Identifier: Apache-2.0
#pragma once

// This header needs LibTorch (it is not included by kdloss.hpp). Debian: libtorch-dev; CMake:
// find_package(Torch) and link ${TORCH_LIBRARIES}.
#include <torch/autograd.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "types.hpp"

namespace kdloss::libtorch {

namespace detail {

/// A `[.., V]` tensor seen as N x V rows for Eigen: `rows` is 2-D with unit stride along V and a
/// row stride >= V (or a single row), in the loss's scalar type.
struct Rows {
  at::Tensor rows;
  /// Whether the N x V data had to be copied (a dtype conversion or a layout Eigen cannot map).
  bool copied = false;
};

inline std::string dims(const at::Tensor& x) {
  std::string s = "[";
  for (int64_t d = 0; d < x.dim(); ++d) s += (d ? ", " : "") + std::to_string(x.size(d));
  return s + "]";
}

/// Views `x` (`[.., V]`, CPU) as N x V rows of `compute` (float or double), without a copy when the
/// layout allows: the last dimension contiguous and the leading ones flattening into one row
/// stride >= V (e.g. `logits[..., :V]` of a wider tensor, or a row slice). Otherwise one
/// contiguous copy: a bfloat16/half tensor is converted once to `compute`, a layout Eigen cannot
/// map (e.g. `logits[:, :-1, :]`, a transposed or broadcast tensor) is copied once.
inline Rows as_rows(const at::Tensor& x, at::ScalarType compute) {
  const int64_t v = x.size(-1);
  if (x.scalar_type() != compute) {
    at::Tensor c = at::empty(x.sizes(), x.options().dtype(compute).memory_format(at::MemoryFormat::Contiguous));
    c.copy_(x);
    return {c.view({-1, v}), true};
  }
  at::Tensor r = x.reshape({-1, v});  // a view whenever the leading dimensions flatten
  bool copied = !r.is_alias_of(x);
  if ((v > 1 && r.stride(1) != 1) || (r.size(0) > 1 && r.stride(0) < v)) {
    r = r.contiguous();
    copied = true;
  }
  return {r, copied};
}

template <class T>
constexpr at::ScalarType scalar_type() {
  return std::is_same<T, double>::value ? at::kDouble : at::kFloat;
}

/// Checks one logits tensor and returns its rows.
template <class T>
Rows checked_rows(const at::Tensor& x, const char* who, const char* what) {
  TORCH_CHECK(x.defined(), who, ": ", what, " is an undefined tensor");
  TORCH_CHECK(x.device().is_cpu(), who, ": ", what, " is on ", x.device().str(),
              "; kdloss computes on the CPU (move it with .cpu())");
  TORCH_CHECK(x.layout() == at::kStrided, who, ": ", what, " must be a dense (strided) tensor");
  TORCH_CHECK(x.dim() >= 1, who, ": ", what, " must have at least one dimension [.., V]");
  TORCH_CHECK(x.size(-1) > 0, who, ": the vocabulary is empty (", what, " is ", dims(x), ")");
  const at::ScalarType st = x.scalar_type();
  TORCH_CHECK(st == scalar_type<T>() || st == at::kBFloat16 || st == at::kHalf, who, ": ", what, " is ",
              c10::toString(st), " but this loss computes in ", c10::toString(scalar_type<T>()),
              " (accepted: ", c10::toString(scalar_type<T>()),
              ", BFloat16 and Half, converted once; for Double/Float use the loss with that Scalar)");
  return as_rows(x, scalar_type<T>());
}

}  // namespace detail

/// A kdloss divergence as a `torch::autograd::Function`: `Function<Loss>::apply(student, teacher,
/// labels, loss, ignore_index)` returns \f$L\f$ as a 0-dim tensor (the student's dtype) and its
/// backward returns \f$\partial L/\partial\,\mathrm{student}\f$ times the incoming gradient (the
/// student's dtype and shape); the teacher gets no gradient (it is a target, as in TRL's losses).
/// Prefer the helper `kdloss::libtorch::apply`.
///
/// - student and teacher: CPU tensors `[.., V]` of the same shape, float32 (float64 for a double
///   loss), bfloat16 or half; the leading dimensions are the rows (tokens). Zero-copy through
///   `data_ptr` and an `Eigen::Map` with an outer stride when the last dimension is contiguous and
///   the leading ones flatten to one row stride; otherwise one contiguous copy. bfloat16/half are
///   converted once to float32 and accumulated in double like every kdloss input.
/// - labels (optional): integer tensor with one label per row; rows whose label is
///   `ignore_index` get weight 0 (`kdloss::mask_from_labels`), so with the default BatchMean the
///   loss is the mean over the valid tokens (TRL, Liger, torchtune). All rows masked: 0, not NaN.
/// - The gradient is computed in the forward call (kdloss computes value and gradient in one
///   pass over the logits) and kept for backward: N x V in float32 (float64 for a double loss).
///   When the student does not require a gradient (or grad mode is off, through `apply`), only
///   the value is computed.
/// - Temperature, reduction and the other options are the loss's own `kdloss::Options`.
template <class Loss>
struct Function : public torch::autograd::Function<Function<Loss>> {
  using Scalar = typename Loss::Scalar;

  /// The value, and when `grad` is not null the N x V gradient (allocated here), of `loss`.
  static Scalar compute(const at::Tensor& student, const at::Tensor& teacher,
                        const c10::optional<at::Tensor>& labels, const Loss& loss, int64_t ignore_index,
                        at::Tensor* grad) {
    const char* who = Loss::name();
    const detail::Rows s = detail::checked_rows<Scalar>(student, who, "student");
    const detail::Rows t = detail::checked_rows<Scalar>(teacher, who, "teacher");
    TORCH_CHECK(student.sizes() == teacher.sizes(), who, ": student is ", detail::dims(student),
                " but teacher is ", detail::dims(teacher),
                " (a wider teacher vocabulary can be passed as teacher.narrow(-1, 0, V) at no cost)");
    const int64_t n = s.rows.size(0), v = s.rows.size(1);
    using RowMap = Eigen::Map<const RowMatrix<Scalar>, Eigen::Unaligned, Eigen::OuterStride<>>;
    const RowMap sm(s.rows.data_ptr<Scalar>(), n, v, Eigen::OuterStride<>(n > 1 ? s.rows.stride(0) : v));
    const RowMap tm(t.rows.data_ptr<Scalar>(), n, v, Eigen::OuterStride<>(n > 1 ? t.rows.stride(0) : v));

    Vector<Scalar> w;
    if (labels.has_value() && labels->defined()) {
      const at::Tensor& y = *labels;
      TORCH_CHECK(y.device().is_cpu(), who, ": labels are on ", y.device().str(), "; they must be on the CPU");
      TORCH_CHECK(at::isIntegralType(y.scalar_type(), /*includeBool=*/false), who,
                  ": labels must be an integer tensor, got ", c10::toString(y.scalar_type()));
      TORCH_CHECK(y.numel() == n, who, ": ", y.numel(), " labels for ", n, " rows (student ", detail::dims(student),
                  ")");
      const at::Tensor y64 = y.to(at::kLong).contiguous();  // N labels: a negligible copy at most
      const Eigen::Map<const Eigen::Matrix<int64_t, Eigen::Dynamic, 1>> ym(y64.data_ptr<int64_t>(), n);
      w = mask_from_labels<Scalar>(ym, ignore_index);
    }
    const Weights<Scalar> weights = w.size() > 0 ? Weights<Scalar>(w) : Weights<Scalar>();
    if (!grad) return loss(sm, tm, weights);
    *grad = at::empty({n, v}, student.options().dtype(detail::scalar_type<Scalar>()));
    Eigen::Map<RowMatrix<Scalar>> gm(grad->data_ptr<Scalar>(), n, v);
    return loss(sm, tm, gm, weights);
  }

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& student,
                            const at::Tensor& teacher, const c10::optional<at::Tensor>& labels,
                            const Loss& loss, int64_t ignore_index) {
    Scalar value;
    if (student.requires_grad()) {
      at::Tensor grad;
      value = compute(student, teacher, labels, loss, ignore_index, &grad);
      ctx->saved_data["grad"] = grad;
      ctx->saved_data["dtype"] = static_cast<int64_t>(student.scalar_type());
      ctx->saved_data["shape"] = student.sizes().vec();
    } else {
      value = compute(student, teacher, labels, loss, ignore_index, nullptr);
    }
    return at::scalar_tensor(static_cast<double>(value), student.options().dtype(student.scalar_type()));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const at::Tensor grad = ctx->saved_data["grad"].toTensor();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    at::Tensor d = grad.mul(grad_out[0].to(grad.scalar_type())).view(shape);
    if (d.scalar_type() != dtype) d = d.to(dtype);
    // One gradient per forward input: the student's, none for the teacher, labels, loss, ignore_index.
    return {d, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

/// \f$L\f$ of a kdloss divergence between student and teacher logits `[.., V]`, differentiable
/// with respect to the student (see `Function`):
/// \code
/// #include <kdloss/kdloss.hpp>
/// #include <kdloss/torch.hpp>
/// const kdloss::ForwardKL<float> kd({/*temperature*/ 2.0f});
/// torch::Tensor loss = kdloss::libtorch::apply(kd, student_logits, teacher_logits.detach(), labels);
/// loss.backward();
/// \endcode
template <class Loss>
at::Tensor apply(const Loss& loss, const at::Tensor& student, const at::Tensor& teacher,
                 const c10::optional<at::Tensor>& labels = c10::nullopt, int64_t ignore_index = -100) {
  if (!at::GradMode::is_enabled()) {  // e.g. evaluation under torch::NoGradGuard: value only
    const auto value = Function<Loss>::compute(student, teacher, labels, loss, ignore_index, nullptr);
    return at::scalar_tensor(static_cast<double>(value), student.options().dtype(student.scalar_type()));
  }
  return Function<Loss>::apply(student, teacher, labels, loss, ignore_index);
}

}  // namespace kdloss::libtorch
