// kdloss kernels: the losses that split each row into the label class and the renormalised
// non-target classes: DKD (Decoupled KD) and NKD (Normalized KD).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cmath>
#include <cstdint>

#include "row_stats.hpp"

KDLOSS_BEGIN_NAMESPACE
namespace kernels {

namespace detail_split {
/// log(e^a + e^b) in double, with -inf allowed on either side.
inline double logaddexp(double a, double b) {
  if (a == -std::numeric_limits<double>::infinity()) return b;
  if (b == -std::numeric_limits<double>::infinity()) return a;
  const double m = std::max(a, b);
  return m + std::log1p(std::exp(-std::fabs(a - b)));
}
/// x (log x - log y) from logarithms, with 0 log 0 = 0 and x > 0 = y giving +inf.
inline double xlogxy(double lx, double ly) {
  if (lx == -std::numeric_limits<double>::infinity()) return 0;
  if (ly == -std::numeric_limits<double>::infinity()) return std::numeric_limits<double>::infinity();
  return std::exp(lx) * (lx - ly);
}
/// The label's logit must be a number below +inf.
template <class T>
RowError check_label_logit(T t, T s) {
  if (std::isnan(s)) return RowError::StudentNaN;
  if (s == std::numeric_limits<T>::infinity()) return RowError::StudentPosInf;
  if (std::isnan(t)) return RowError::TeacherNaN;
  if (t == std::numeric_limits<T>::infinity()) return RowError::TeacherPosInf;
  return RowError::None;
}
/// Validity of the non-target statistics: NaN/+inf elsewhere are errors; an empty student side is
/// allowed (all its non-target logits are -inf), an empty teacher side is not.
template <class T>
RowError check_hats(const PairStats<T>& st) {
  const RowError es = st.s.check(false);
  if (es != RowError::None && es != RowError::StudentEmpty) return es;
  const RowError et = st.t.check(true);
  if (et == RowError::TeacherEmpty) return RowError::NonTargetEmpty;
  return et;
}

/// Writes g = scale * (c_q * q^ + c_p * p^) (+ beta * old) over the row, with q^, p^ the non-target
/// distributions (0 at the label) at inverse temperature k; plus, when `q1` is set, scale * c_1 *
/// softmax(s) (the student at temperature 1, including the label); then the label's entry is
/// replaced by scale * g_label (+ beta * old).
template <class Arch, class T>
void write_split_gradient(const T* teacher, const T* student, Index n, Index y, T k, const PairStats<T>& hat,
                          double c_q, double c_p, bool q1, double c_1, T m1, double lss1, double g_label,
                          const GradOut<T>& out) {
  using B = simd::batch<T, Arch>;
  constexpr int W = B::size;
  const bool student_hat = hat.s.sum > 0;
  const B k2 = B::splat(static_cast<T>(exp2_scale(k)));
  const B mtb = B::splat(hat.t.max), msb = B::splat(student_hat ? hat.s.max : T(0));
  const B lst2 = B::splat(static_cast<T>(hat.t.log_sum() * kLog2e));
  const B lss2 = B::splat(static_cast<T>(student_hat ? hat.s.log_sum() * kLog2e : 0.0));
  const B m1b = B::splat(m1), lss1b = B::splat(static_cast<T>(lss1 * kLog2e)), l2e = B::splat(static_cast<T>(kLog2e));
  const B cq = B::splat(static_cast<T>(c_q)), cp = B::splat(static_cast<T>(c_p)), c1 = B::splat(static_cast<T>(c_1));
  const B sc = B::splat(out.scale), bb = B::splat(out.beta);
  const LabelMaskedRow<T> tr{teacher, y}, sr{student, y};
  const T old_y = out.beta == T(0) ? T(0) : out.row[y];
  sweep<W>(0, n, [&](Index j, auto lanes) {
    const B p = simd::exp2_nonpositive(fms(tr.template load<B>(j, lanes) - mtb, k2, lst2));
    B g = cp * p;
    if (student_hat) g = fma(cq, simd::exp2_nonpositive(fms(sr.template load<B>(j, lanes) - msb, k2, lss2)), g);
    if (q1) {
      const B s = load<B>(student + j, lanes, -std::numeric_limits<T>::infinity());
      g = fma(c1, simd::exp2_nonpositive(fms(s - m1b, l2e, lss1b)), g);
    }
    g = sc * g;
    if (out.beta != T(0)) g = fma(load<B>(out.row + j, lanes, T(0)), bb, g);
    store(out.row + j, g, lanes);
  });
  out.row[y] = static_cast<T>(static_cast<double>(out.scale) * g_label + static_cast<double>(out.beta) * static_cast<double>(old_y));
}
}  // namespace detail_split

/// One row of DKD (Zhao et al., CVPR 2022) before the \f$T^2\f$ factor (which is the options'
/// `scale_by_t2`): \f$\alpha\,KL(b_p\|b_q) + \beta\,KL(\hat p\|\hat q)\f$ with
/// \f$b = (x_y, 1 - x_y)\f$ and hats renormalised over the classes other than the label y, all at
/// inverse temperature k. Gradient (before 1/tau): \f$\alpha(q_y - p_y)\f$ at y and
/// \f$-\alpha(q_y - p_y)\hat q_i + \beta(\hat q_i - \hat p_i)\f$ elsewhere. \f$\log(1 - x_y)\f$ is
/// the log-sum-exp of the other classes minus the row's: never the difference 1 - x_y.
template <class Arch, class T>
RowResult decoupled_row(const T* teacher, const T* student, Index n, T k, Index y, double alpha, double beta,
                        const GradOut<T>& out) {
  using namespace detail_split;
  if (RowError e = check_label_logit(teacher[y], student[y]); e != RowError::None) return {0, e};
  using Plan = StatsPlan<true, true, true, false>;
  const PairStats<T> hat = row_stats<Arch, Plan>(LabelMaskedRow<T>{teacher, y}, LabelMaskedRow<T>{student, y}, n, k);
  if (RowError e = check_hats(hat); e != RowError::None) return {0, e};
  constexpr double kNegInf = -std::numeric_limits<double>::infinity(), kInf = -kNegInf;
  const double kd = static_cast<double>(k);
  // Logs of the label's probability and of the rest's, relative to the non-target maxima.
  const double lst = hat.t.log_sum();
  const double at = teacher[y] == -std::numeric_limits<T>::infinity()
                        ? kNegInf
                        : kd * (static_cast<double>(teacher[y]) - static_cast<double>(hat.t.max));
  const double lzt = logaddexp(lst, at);
  const double lpy = at - lzt, lpn = lst - lzt;
  const bool student_hat = hat.s.sum > 0;
  double lqy, lqn;
  if (!student_hat) {
    if (student[y] == -std::numeric_limits<T>::infinity()) return {0, RowError::StudentEmpty};
    lqy = 0, lqn = kNegInf;
  } else {
    const double lss = hat.s.log_sum();
    const double as = student[y] == -std::numeric_limits<T>::infinity()
                          ? kNegInf
                          : kd * (static_cast<double>(student[y]) - static_cast<double>(hat.s.max));
    const double lzs = logaddexp(lss, as);
    lqy = as - lzs, lqn = lss - lzs;
  }
  double value = 0;
  if (alpha != 0) value += alpha * (xlogxy(lpy, lqy) + xlogxy(lpn, lqn));
  if (beta != 0) {
    const double nckd = !student_hat || hat.teacher_uncovered
                            ? kInf
                            : std::max(0.0, kd * hat.cross_t / hat.t.sum - lst + hat.s.log_sum());
    value += beta * nckd;
  }
  if (out.row == nullptr) return {value, RowError::None};
  const double d = std::exp(lqy) - std::exp(lpy);
  write_split_gradient<Arch>(teacher, student, n, y, k, hat, beta - alpha * d, -beta, false, 0.0, T(0), 0.0,
                             alpha * d, out);
  return {value, RowError::None};
}

/// One row of NKD (Yang et al., ICCV 2023; the reference's fixed mask, the label excluded from the
/// non-target term): \f$-p_y\log q_y - \gamma\lambda^2\sum_{i\ne y}\hat p^\lambda_i\log\hat q^\lambda_i\f$,
/// p and q at temperature 1 (p_y detached), the hats at temperature \f$\lambda = 1/k\f$. Gradient:
/// \f$p_y(q_y - 1)\f$ at y, \f$p_y q_i + \gamma\lambda(\hat q^\lambda_i - \hat p^\lambda_i)\f$
/// elsewhere. The row loop's gradient scale carries 1/lambda; this kernel takes it back out.
template <class Arch, class T>
RowResult normalized_kd_row(const T* teacher, const T* student, Index n, T k, Index y, double gamma,
                            const GradOut<T>& out) {
  using namespace detail_split;
  if (RowError e = check_label_logit(teacher[y], student[y]); e != RowError::None) return {0, e};
  // Temperature 1, whole rows: p_y and q.
  const PairStats<T> one = row_stats<Arch, StatsPlan<true, true, false, false>>(PlainRow<T>{teacher}, student, n, T(1));
  if (RowError e = one.s.check(false); e != RowError::None) return {0, e};
  if (RowError e = one.t.check(true); e != RowError::None) return {0, e};
  // Temperature lambda, the non-target classes.
  using Plan = StatsPlan<true, true, true, false, false, true>;
  const PairStats<T> hat = row_stats<Arch, Plan>(LabelMaskedRow<T>{teacher, y}, LabelMaskedRow<T>{student, y}, n, k);
  if (RowError e = check_hats(hat); e != RowError::None) return {0, e};
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const double kd = static_cast<double>(k), lambda = 1 / kd;
  const double lss1 = one.s.log_sum();
  const double py = std::exp(static_cast<double>(teacher[y]) - static_cast<double>(one.t.max) - one.t.log_sum());
  const double lqy = static_cast<double>(student[y]) - static_cast<double>(one.s.max) - lss1;
  double value = py > 0 ? -py * lqy : 0.0;  // +inf when the label's student logit is -inf
  // sum_{i != y} p^_i log q^_i = k sum e_t (s - max s^) / S^_t - log S^_s, with
  // sum e_t (s - max s^) = (teacher moment m1) - (cross sum C_t).
  double cross;
  if (hat.s.sum == 0 || hat.teacher_uncovered) {
    cross = -kInf;
  } else {
    cross = kd * (hat.teacher_m1 - hat.cross_t) / hat.t.sum - hat.s.log_sum();
  }
  if (gamma != 0) value += -gamma * lambda * lambda * cross;
  if (out.row == nullptr) return {value, RowError::None};
  // The row loop's scale carries 1/lambda (it assumes a student softmax at temperature lambda);
  // the gradient above is already complete, so the scale is multiplied back by lambda.
  GradOut<T> o = out;
  o.scale = static_cast<T>(static_cast<double>(out.scale) * lambda);
  const double qy = std::exp(lqy);
  write_split_gradient<Arch>(teacher, student, n, y, k, hat, gamma * lambda, -gamma * lambda, true, py,
                             one.s.max, lss1, py * (qy - 1), o);
  return {value, RowError::None};
}

}  // namespace kernels
KDLOSS_END_NAMESPACE
