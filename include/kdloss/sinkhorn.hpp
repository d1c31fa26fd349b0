// kdloss: Sinkhorn, the batch-wise optimal-transport distillation loss of SinKD, with its exact
// analytic gradient.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "detail/checks.hpp"
#include "detail/row_loop.hpp"
#include "kernels/sinkhorn_cost.hpp"
#include "kernels/sinkhorn_plan.hpp"
#include "types.hpp"

namespace kdloss {

/// The ground cost between a student point (a row of \f$P_s\f$) and a teacher point (a row of
/// \f$P_t\f$).
enum class SinkhornCost {
  /// \f$W_{ij} = \|P_s[i] - P_t[j]\|_1\f$ (`cdist(p=1)`), SinKD's cost; the default. O(N^2 V) in a
  /// vectorised, cache-blocked kernel; its gradient uses sign(0) = 0 (autograd's subgradient).
  L1,
  /// \f$W_{ij} = \|P_s[i] - P_t[j]\|_2^2 = \|P_s[i]\|^2 + \|P_t[j]\|^2 - 2 P_s[i]\cdot P_t[j]\f$, through
  /// Eigen matrix products (fast); smooth, gradient \f$2(P_s[i] - P_t[j])\f$.
  SquaredL2,
};

/// Which gradient a Sinkhorn call computes.
enum class SinkhornGradient {
  /// The reverse-mode derivative of the computed loss through every row and column
  /// normalisation, through the cost W and the softmax (what SinKD's autograd computes).
  Exact,
  /// The envelope approximation: the plan \f$\Pi\f$ is held fixed, \f$\partial L/\partial W = \Pi\f$.
  /// At a converged plan this is the gradient of the entropic objective
  /// \f$\langle\Pi, W\rangle - \varepsilon H(\Pi)\f$ (envelope theorem), not of
  /// \f$L = \langle\Pi, W\rangle\f$: it drops \f$\langle\partial\Pi/\partial W, W\rangle\f$ even
  /// then, and after a fixed number of iterations it is not that either. An approximation; it skips
  /// only the O(iterations N^2) adjoint. Its measured difference from `Exact` is in the README.
  Envelope,
};

/// Options of `Sinkhorn`: the shared fields of `Options` (same names, same meaning) and the
/// transport problem's own. A plain aggregate validated when the loss is constructed:
/// `kdloss::Sinkhorn<float> sk({2.0f});` sets the temperature; C++20 callers may write
/// `{.temperature = 2.0f, .epsilon = 0.05f}`.
template <class T>
struct SinkhornOptions {
  /// Temperature \f$\tau > 0\f$: \f$P_s = \mathrm{softmax}(S/\tau)\f$, \f$P_t = \mathrm{softmax}(T/\tau)\f$
  /// (SinKD hard-codes 2).
  T temperature = T(1);
  /// Multiply loss and gradient by \f$\tau^2\f$.
  bool scale_by_t2 = false;
  /// `Sum` returns \f$L = \sum_{ij}\Pi_{ij}W_{ij}\f$ (SinKD's value, before its 0.001 factor);
  /// `BatchMean` (default) returns \f$L/n\f$ with n the number of rows of weight 1 (the mean
  /// transport cost per point), or \f$L/\f$`denominator` when that is set. `None` is refused at
  /// construction: the loss couples every row of the batch, there are no per-row values.
  Reduction reduction = Reduction::BatchMean;
  /// When > 0, the BatchMean denominator instead of n.
  T denominator = T(0);
  /// Entropic regularisation \f$\varepsilon\f$: \f$K = e^{-W/\varepsilon}\f$. Finite, in
  /// [1e-100, inf). Any such value is stable (the iterations run in the log domain).
  T epsilon = T(0.1);
  /// Sinkhorn iterations (each: rows normalised, then columns), >= 1. Memory O(iterations N).
  int iterations = 20;
  /// The ground cost.
  SinkhornCost cost = SinkhornCost::L1;
  /// Early stop: after an iteration whose plan has row-marginal error
  /// \f$\max_i|\sum_j\Pi_{ij} - 1| \le\f$ `tolerance`, stop (the gradient is that of the
  /// iterations actually run). 0 (default) runs every iteration, as SinKD does. Finite, >= 0.
  double tolerance = 0;
  /// Exact reverse-mode gradient (default) or the envelope approximation.
  SinkhornGradient gradient = SinkhornGradient::Exact;
};

/// What the last call of a `Sinkhorn` did. Not converging is a status, never an exception.
struct SinkhornInfo {
  /// Iterations run (`iterations`, or fewer after an early stop); 0 when no row had weight 1.
  int iterations_run = 0;
  /// \f$\max_i |\sum_j \Pi_{ij} - 1|\f$ of the final plan (its columns sum to 1 up to rounding,
  /// the column step comes last).
  double marginal_error = 0;
  /// `marginal_error <= tolerance` (or the early stop fired); with `tolerance = 0`, the threshold
  /// is `kDefaultTolerance`.
  bool converged = true;
  /// The threshold of `converged` when `tolerance = 0`.
  static constexpr double kDefaultTolerance = 1e-6;
};

/// Human-readable name of a cost (used in messages).
inline const char* to_string(SinkhornCost c) noexcept {
  switch (c) {
    case SinkhornCost::L1: return "L1";
    case SinkhornCost::SquaredL2: return "SquaredL2";
  }
  return "invalid";
}

}  // namespace kdloss

KDLOSS_BEGIN_NAMESPACE
namespace detail {

/// Grows a workspace vector (never shrinks it, so its capacity only grows).
template <class V>
void grow(V& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

/// Everything a Sinkhorn call needs beyond its inputs and outputs.
template <class T>
struct SinkhornWorkspace {
  std::vector<T> ps, pt;      ///< n x V softmax rows of the valid rows (student, teacher)
  std::vector<T> gc;          ///< n x chunk: dL/dP_s of one column chunk
  std::vector<T> dt;          ///< n x n: dL/dW in T (for the O(N^2 V) backward)
  std::vector<T> wt;          ///< 64 x 64: one product tile of the squared-L2 cost
  std::vector<double> c, m;   ///< n x n: the cost W and M = -W/eps
  std::vector<double> plan;   ///< n x n: the final plan
  std::vector<double> mbar;   ///< n x n: adjoint of M
  std::vector<double> d;      ///< n x n: dL/dW
  std::vector<double> f, g;   ///< iterations x n and (iterations + 1) x n: the log scalings
  std::vector<double> vec;    ///< 8 n: column scratch, adjoint vectors, norms, <q, g> per row
  std::vector<Eigen::Index> rows;  ///< the valid rows (weight 1), in order
};

}  // namespace detail

/// SinKD's batch-wise optimal-transport loss (2018cx/SinKD, COLING/TNNLS 2024): the N rows of the
/// batch are the points. With \f$P_s = \mathrm{softmax}(S/\tau)\f$, \f$P_t = \mathrm{softmax}(T/\tau)\f$
/// (row-wise), the cost \f$W_{ij} = \|P_s[i] - P_t[j]\|_1\f$ (or squared L2), the kernel
/// \f$K = e^{-W/\varepsilon}\f$ and `iterations` Sinkhorn steps, each "divide by the row sums, then by
/// the column sums" (uniform marginals: a converged plan has every row and column summing to 1),
/// \f[ L = \sum_{ij}\Pi_{ij}W_{ij}, \f]
/// reduced as `SinkhornOptions::reduction` says (Sum: L; BatchMean: L/n).
///
/// **Gradient** (`SinkhornGradient::Exact`): the reverse-mode derivative of the computed L through
/// every normalisation and through W, as SinKD's autograd computes it, by an analytic adjoint over
/// the N x N plans (`kernels::sinkhorn_adjoint`: O(iterations N) memory, never a tape of N x V
/// objects) giving \f$D = \partial L/\partial W\f$; then
/// \f$G_s[i,v] = \sum_j D_{ij}\,\mathrm{sign}(P_s[i,v] - P_t[j,v])\f$ (L1; sign(0) = 0) or
/// \f$G_s[i] = 2\sum_j D_{ij}(P_s[i] - P_t[j])\f$ (squared L2), and through the softmax
/// \f[ \frac{\partial L}{\partial s_i} = \frac{1}{\tau}\, q_i \odot \big(G_s[i] - \langle q_i, G_s[i]\rangle\big),
///     \qquad q_i = P_s[i]. \f]
/// The teacher gets no gradient. `SinkhornGradient::Envelope` uses \f$D = \Pi\f$ instead.
///
/// **Numerics.** The N x N part runs in double in the log domain (log-sum-exp row and column
/// steps), so \f$\varepsilon = 10^{-3}\f$ is as stable as 1. The O(N^2 V) cost and its backward run in
/// T on the SIMD layer, blocked for L1/L2; softmax rows come from the shared row-statistics kernel.
///
/// **Weights.** \f$w_i\f$ must be 0 or 1: a row of weight 0 drops out of the batch (it is not a
/// point; its gradient row is \f$\beta\,\mathrm{dS}\f$, i.e. exactly 0 for the plain calls), the n rows
/// of weight 1 are the points with uniform marginals. Other values throw std::invalid_argument (the
/// points of one transport problem have no per-row weight). No row of weight 1 (or N = 0): loss 0,
/// gradient 0.
///
/// **Errors.** std::invalid_argument for shapes, options (at construction), weights not 0/1, an
/// output overlapping an input; std::domain_error naming the row for a weighted row with NaN,
/// +inf or no finite logit. -inf logits are legal (probability 0).
///
/// **State.** The functor owns its workspace (softmax rows, cost, plans, log scalings, adjoints):
/// the calls are non-const and one instance must not be used by two threads at once. The
/// workspace only grows: after a call at the largest shape (or `reserve(N, V)`), calls allocate
/// nothing. `info()` reports the last call's iterations and marginal error; non-convergence is a
/// status, never an exception.
///
/// Cost: O(N^2 V) for W and for its backward, O(iterations N^2) for the plan and its adjoint.
/// \code
/// kdloss::Sinkhorn<float> sk({/*temperature*/ 2.0f});   // epsilon 0.1, 20 iterations, L1
/// float loss = 0.001f * sk(S, T, dS);                    // SinKD's scale is the caller's
/// if (!sk.info().converged) { ... }
/// \endcode
template <class T, class Arch = simd::best_arch>
class Sinkhorn {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "kdloss: Scalar must be float or double");
  static_assert(simd::is_available<Arch>::value,
                "kdloss: this instruction set is not enabled by the compiler flags");

 public:
  using Scalar = T;
  using arch_type = Arch;
  using options_type = SinkhornOptions<T>;

  /// \param opt options (validated here: throws std::invalid_argument naming the option)
  explicit Sinkhorn(const SinkhornOptions<T>& opt = {}) : m_opt(opt) { check(m_opt); }

  /// The loss's name as used in error messages.
  static constexpr const char* name() noexcept { return "kdloss::Sinkhorn"; }
  /// Current options.
  const SinkhornOptions<T>& options() const noexcept { return m_opt; }
  /// Replaces the options (validated: throws std::invalid_argument).
  void set_options(const SinkhornOptions<T>& opt) {
    check(opt);
    m_opt = opt;
  }

  /// Value only: L reduced as the options say. Runs no gradient or adjoint pass.
  /// \param student N x V student logits S
  /// \param teacher N x V teacher logits T
  /// \param weights optional N row weights, each 0 (row dropped) or 1
  template <class S, class U>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher,
               const Weights<T>& weights = {}) {
    return run(student, teacher, nullptr, T(1), T(0), weights);
  }

  /// Value and gradient: returns L and overwrites `grad` with \f$\partial L/\partial S\f$.
  template <class S, class U>
  T operator()(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T> grad,
               const Weights<T>& weights = {}) {
    return run(student, teacher, &grad, T(1), T(0), weights);
  }

  /// BLAS-style accumulate form: `grad = alpha * dL/dS + beta * grad`, returns \f$\alpha L\f$. With
  /// beta = 0 the old contents are never read.
  template <class S, class U>
  T accumulate(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T> grad,
               T alpha, T beta, const Weights<T>& weights = {}) {
    return run(student, teacher, &grad, alpha, beta, weights);
  }

  /// Grows the workspace for batches of up to `n` rows of `v` logits (at the current number of
  /// iterations), so that no later call at most that large allocates.
  void reserve(Eigen::Index n, Eigen::Index v) {
    KDLOSS_REQUIRE(n >= 0 && v >= 0, std::string(name()) + ": reserve() needs n >= 0 and v >= 0");
    detail::grow(m_ws.rows, static_cast<std::size_t>(n));
    grow_for(n, v);
  }

  /// What the last call did: iterations run, final marginal error, converged.
  const SinkhornInfo& info() const noexcept { return m_info; }

  /// The last call's transport plan \f$\Pi\f$ (n x n over the rows of weight 1, in order; double).
  /// Valid until the next call.
  Eigen::Map<const RowMatrix<double>> plan() const {
    return Eigen::Map<const RowMatrix<double>>(m_n > 0 ? m_ws.plan.data() : nullptr, m_n, m_n);
  }
  /// The last call's cost matrix W (n x n over the rows of weight 1; double). Valid until the next
  /// call.
  Eigen::Map<const RowMatrix<double>> cost() const {
    return Eigen::Map<const RowMatrix<double>>(m_n > 0 ? m_ws.c.data() : nullptr, m_n, m_n);
  }

 private:
  using B = simd::batch<T, Arch>;
  using Index = Eigen::Index;
  /// Columns per chunk of the backward (1 KiB of T per row).
  static constexpr Index kGradChunk = Index{1024} / Index(sizeof(T));
  /// Row and column block of the squared-L2 products: each Eigen product then packs at most
  /// 64 x kGradChunk entries per operand (64 KiB), within Eigen's stack-allocation limit, so the
  /// products never touch the heap (without OpenMP; Eigen's parallel GEMM allocates).
  static constexpr Index kGemmBlock = 64;

  static void check(const SinkhornOptions<T>& o) {
    const std::string who = name();
    Options<T> base;
    base.temperature = o.temperature;
    base.scale_by_t2 = o.scale_by_t2;
    base.reduction = o.reduction;
    base.denominator = o.denominator;
    internal::check_options(base, name());
    KDLOSS_REQUIRE(o.reduction != Reduction::None,
                   who + ": Reduction::None is not supported: the loss is batch-wise (the plan couples every row), "
                         "there are no per-row values; use Sum or BatchMean");
    const double eps = static_cast<double>(o.epsilon);
    KDLOSS_REQUIRE(std::isfinite(eps) && eps >= 1e-100,
                   who + ": epsilon must be finite and > 0 (at least 1e-100; got " + std::to_string(eps) + ")");
    KDLOSS_REQUIRE(o.iterations >= 1, who + ": iterations must be >= 1 (got " + std::to_string(o.iterations) + ")");
    KDLOSS_REQUIRE(std::isfinite(o.tolerance) && o.tolerance >= 0,
                   who + ": tolerance must be finite and >= 0 (0 = no early stop; got " +
                       std::to_string(o.tolerance) + ")");
    KDLOSS_REQUIRE(o.cost == SinkhornCost::L1 || o.cost == SinkhornCost::SquaredL2, who + ": unknown cost");
    KDLOSS_REQUIRE(o.gradient == SinkhornGradient::Exact || o.gradient == SinkhornGradient::Envelope,
                   who + ": unknown gradient mode");
  }

  void grow_for(Index n, Index v) {
    const auto nn = static_cast<std::size_t>(n), vv = static_cast<std::size_t>(v);
    const auto k = static_cast<std::size_t>(m_opt.iterations);
    detail::grow(m_ws.ps, nn * vv);
    detail::grow(m_ws.pt, nn * vv);
    detail::grow(m_ws.gc, nn * static_cast<std::size_t>(kGradChunk));
    detail::grow(m_ws.dt, nn * nn);
    detail::grow(m_ws.wt, static_cast<std::size_t>(kGemmBlock * kGemmBlock));
    for (auto* x : {&m_ws.c, &m_ws.m, &m_ws.plan, &m_ws.mbar, &m_ws.d}) detail::grow(*x, nn * nn);
    detail::grow(m_ws.f, k * nn);
    detail::grow(m_ws.g, (k + 1) * nn);
    detail::grow(m_ws.vec, 8 * nn);
  }

  template <class S, class U>
  T run(const Eigen::MatrixBase<S>& student, const Eigen::MatrixBase<U>& teacher, GradRef<T>* grad, T alpha,
        T beta, const Weights<T>& w) {
    const char* who = name();
    const detail::MatView<T> s = detail::view<T>(student, who, "student");
    const detail::MatView<T> t = detail::view<T>(teacher, who, "teacher");
    detail::check_pair(s, t, who);
    KDLOSS_REQUIRE(std::isfinite(static_cast<double>(alpha)) && std::isfinite(static_cast<double>(beta)),
                   std::string(who) + ": accumulate() needs finite alpha and beta");
    detail::MatView<T> gv{nullptr, 0, 0, 0};
    if (grad != nullptr) {
      gv = detail::view<T>(*grad);
      detail::check_grad(gv, s, &t, who);
    }
    const Index nrows = s.rows, v = s.cols;
    KDLOSS_REQUIRE(!w.has_value() || w.size() == nrows,
                   std::string(who) + ": " + std::to_string(w.size()) + " weights for " + std::to_string(nrows) +
                       " rows");
    detail::grow(m_ws.rows, static_cast<std::size_t>(nrows));
    Index n = 0;
    for (Index i = 0; i < nrows; ++i) {
      const T wi = w[i];
      KDLOSS_REQUIRE(wi == T(0) || wi == T(1),
                     std::string(who) + ": weight " + std::to_string(i) + " is " +
                         std::to_string(static_cast<double>(wi)) +
                         " (Sinkhorn weights must be 0 or 1: a row is dropped from the batch or is one "
                         "point of the transport problem, with uniform marginals)");
      if (wi != T(0)) m_ws.rows[static_cast<std::size_t>(n++)] = i;
    }
    m_info = SinkhornInfo{};
    m_n = 0;
    T* gout = grad != nullptr ? grad->data() : nullptr;
    const Index gs = gv.stride;
    if (n == 0) {
      if (gout != nullptr)
        for (Index i = 0; i < nrows; ++i) detail::scale_row(gout + i * gs, v, beta);
      return T(0);
    }
    grow_for(n, v);
    T* ps = m_ws.ps.data();
    T* pt = m_ws.pt.data();
    const Index* rows = m_ws.rows.data();

    // 1. Softmax rows of the points (teacher and student of a row in one pass-1 sweep).
    const T kinv = T(1) / m_opt.temperature;
    for (Index k = 0; k < n; ++k) {
      const Index r = rows[k];
      const kernels::RowError e =
          kernels::softmax_pair_row<Arch>(t.row(r), s.row(r), v, kinv, pt + k * v, ps + k * v);
      if (e != kernels::RowError::None) internal::fail<std::domain_error>(detail::row_error(who, e, r));
    }

    // 2. The cost W (double, n x n).
    double* c = m_ws.c.data();
    if (m_opt.cost == SinkhornCost::L1)
      kernels::l1_cost<Arch>(ps, v, n, pt, v, n, v, c, n);
    else
      squared_l2_cost(n, v);

    // 3. Log-domain Sinkhorn.
    double* m = m_ws.m.data();
    const double eps = static_cast<double>(m_opt.epsilon);
    for (Index i = 0; i < n * n; ++i) m[i] = -c[i] / eps;
    double* f = m_ws.f.data();
    double* g = m_ws.g.data();
    double* vec = m_ws.vec.data();
    std::fill(g, g + n, 0.0);  // g_0
    const int iters = m_opt.iterations;
    int run_iters = iters;
    bool stopped = false;
    for (int k = 1; k <= iters; ++k) {
      double* fk = f + static_cast<Index>(k - 1) * n;
      kernels::sinkhorn_row_step<Arch>(m, n, g + static_cast<Index>(k - 1) * n, fk);
      if (m_opt.tolerance > 0 && k > 1 &&
          kernels::sinkhorn_row_error(fk, fk - n, n) <= m_opt.tolerance) {
        run_iters = k - 1;
        stopped = true;
        break;
      }
      kernels::sinkhorn_col_step<Arch>(m, n, fk, g + static_cast<Index>(k) * n, vec, vec + n);
    }
    // The plan from the last column step's maxima and sums, which `vec` still holds (an early stop
    // breaks after a row step, before the next column step).
    double* plan = m_ws.plan.data();
    for (Index j = 0; j < n; ++j) vec[n + j] = std::log(vec[n + j]);
    const kernels::PlanResult pr =
        kernels::sinkhorn_plan<Arch>(m, c, n, f + static_cast<Index>(run_iters - 1) * n, vec, vec + n, plan);
    m_n = n;
    m_info.iterations_run = run_iters;
    m_info.marginal_error = pr.row_error;
    const double thr = m_opt.tolerance > 0 ? m_opt.tolerance : SinkhornInfo::kDefaultTolerance;
    m_info.converged = stopped || pr.row_error <= thr;

    const double tau = static_cast<double>(m_opt.temperature);
    double denom = 1;
    if (m_opt.reduction == Reduction::BatchMean)
      denom = m_opt.denominator > T(0) ? static_cast<double>(m_opt.denominator) : static_cast<double>(n);
    const double factor = (m_opt.scale_by_t2 ? tau * tau : 1.0) / denom;
    const T value = static_cast<T>(static_cast<double>(alpha) * factor * pr.loss);
    if (gout == nullptr) return value;

    // 4. D = dL/dW: the exact adjoint, or the plan itself (envelope).
    const double* d = plan;
    if (m_opt.gradient == SinkhornGradient::Exact) {
      kernels::AdjointScratch sc{vec, vec + n, vec + 2 * n, vec + 3 * n, vec + 4 * n};
      kernels::sinkhorn_adjoint<Arch>(m, c, plan, n, f, g, run_iters, 1.0 / eps, m_ws.mbar.data(), sc,
                                      m_ws.d.data());
      d = m_ws.d.data();
    }
    T* dt = m_ws.dt.data();
    for (Index i = 0; i < n * n; ++i) dt[i] = static_cast<T>(d[i]);

    // 5. dL/dP_s chunk by chunk, then through the softmax into the caller's buffer:
    //    dS_i = beta dS_i + scale q_i (g_i - <q_i, g_i>), written as beta dS + scale q g (per chunk,
    //    accumulating <q, g> in double), then - scale <q, g> q (one more sweep per row).
    for (Index i = 0, k = 0; i < nrows; ++i) {
      if (k < n && rows[k] == i) {
        ++k;
        continue;
      }
      detail::scale_row(gout + i * gs, v, beta);
    }
    const T scale = static_cast<T>(static_cast<double>(alpha) * factor / tau);
    double* qg = vec + 5 * n;  // <q_k, g_k>
    double* rs = vec + 6 * n;  // squared L2: row sums of D
    std::fill(qg, qg + n, 0.0);
    const bool l1 = m_opt.cost == SinkhornCost::L1;
    if (!l1)
      for (Index i = 0; i < n; ++i) {
        double acc = 0;
        for (Index j = 0; j < n; ++j) acc += static_cast<double>(dt[i * n + j]);
        rs[i] = acc;
      }
    T* gc = m_ws.gc.data();
    for (Index v0 = 0; v0 < v; v0 += kGradChunk) {
      const Index v1 = std::min(v, v0 + kGradChunk);
      if (l1) {
        kernels::l1_cost_backward<Arch>(ps, v, n, pt, v, n, dt, n, v0, v1, gc, kGradChunk);
        emit(n, v, v0, v1, gout, gs, scale, beta, qg, [](Index, B q, B gcv) {
          (void)q;
          return gcv;
        });
      } else {
        squared_l2_backward_chunk(n, v, v0, v1);
        const T two = T(2);
        emit(n, v, v0, v1, gout, gs, scale, beta, qg, [&](Index k, B q, B gcv) {
          return B::splat(two) * fms(B::splat(static_cast<T>(rs[k])), q, gcv);
        });
      }
    }
    for (Index k = 0; k < n; ++k) {
      const T* q = ps + k * v;
      T* out = gout + rows[k] * gs;
      const B cb = B::splat(static_cast<T>(static_cast<double>(scale) * qg[k]));
      kernels::sweep<B::size>(0, v, [&](Index j, auto lanes) {
        kernels::store(out + j, fnma(cb, kernels::load<B>(q + j, lanes, T(0)), kernels::load<B>(out + j, lanes, T(0))),
                       lanes);
      });
    }
    return value;
  }

  /// out = beta out + scale q g over [v0, v1) for every point, with g = gfn(k, q, gc) from the chunk
  /// buffer; accumulates <q, g> per point in double.
  template <class GFn>
  void emit(Index n, Index v, Index v0, Index v1, T* gout, Index gs, T scale, T beta, double* qg, GFn&& gfn) {
    const T* ps = m_ws.ps.data();
    const T* gc = m_ws.gc.data();
    const Index* rows = m_ws.rows.data();
    const B sb = B::splat(scale), bb = B::splat(beta);
    for (Index k = 0; k < n; ++k) {
      const T* q = ps + k * v;
      const T* gk = gc + k * kGradChunk - v0;
      T* out = gout + rows[k] * gs;
      B acc = B::splat(T(0));
      auto body = [&](auto read_old) {
        kernels::sweep<B::size>(v0, v1, [&](Index j, auto lanes) {
          const B qv = kernels::load<B>(q + j, lanes, T(0));
          const B prod = qv * gfn(k, qv, kernels::load<B>(gk + j, lanes, T(0)));
          acc = acc + prod;
          B o = sb * prod;
          if constexpr (decltype(read_old)::value) o = fma(bb, kernels::load<B>(out + j, lanes, T(0)), o);
          kernels::store(out + j, o, lanes);
        });
      };
      if (beta == T(0))
        body(std::false_type{});
      else
        body(std::true_type{});
      qg[k] += hsum_wide(acc);
    }
  }

  /// Squared-L2 cost: W = |a_i|^2 + |b_j|^2 - 2 a_i . b_j, the products by Eigen on 64 x 64 x chunk
  /// blocks (each accumulated into W in double).
  void squared_l2_cost(Index n, Index v) {
    using ConstMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
    const ConstMap a(m_ws.ps.data(), n, v, Eigen::OuterStride<>(v));
    const ConstMap b(m_ws.pt.data(), n, v, Eigen::OuterStride<>(v));
    double* c = m_ws.c.data();
    double* na = m_ws.vec.data();
    double* nb = na + n;
    for (Index i = 0; i < n; ++i) {
      na[i] = a.row(i).template cast<double>().squaredNorm();
      nb[i] = b.row(i).template cast<double>().squaredNorm();
    }
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < n; ++j) c[i * n + j] = na[i] + nb[j];
    for (Index i0 = 0; i0 < n; i0 += kGemmBlock) {
      const Index mi = std::min(kGemmBlock, n - i0);
      for (Index j0 = 0; j0 < n; j0 += kGemmBlock) {
        const Index mj = std::min(kGemmBlock, n - j0);
        Eigen::Map<RowMatrix<T>> tile(m_ws.wt.data(), mi, mj);
        for (Index v0 = 0; v0 < v; v0 += kGradChunk) {
          const Index vc = std::min(kGradChunk, v - v0);
          tile.noalias() = a.block(i0, v0, mi, vc) * b.block(j0, v0, mj, vc).transpose();
          for (Index i = 0; i < mi; ++i)
            for (Index j = 0; j < mj; ++j) c[(i0 + i) * n + j0 + j] -= 2.0 * static_cast<double>(tile(i, j));
        }
      }
    }
  }

  /// Squared-L2 backward, one column chunk: gc = D P_t[:, v0:v1] (Eigen products on 64-row blocks);
  /// the caller forms 2 (rowsum(D) q - gc).
  void squared_l2_backward_chunk(Index n, Index v, Index v0, Index v1) {
    using ConstMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
    const ConstMap b(m_ws.pt.data(), n, v, Eigen::OuterStride<>(v));
    const ConstMap dm(m_ws.dt.data(), n, n, Eigen::OuterStride<>(n));
    Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>> gcm(m_ws.gc.data(), n, v1 - v0,
                                                          Eigen::OuterStride<>(kGradChunk));
    for (Index i0 = 0; i0 < n; i0 += kGemmBlock) {
      const Index mi = std::min(kGemmBlock, n - i0);
      for (Index j0 = 0; j0 < n; j0 += kGemmBlock) {
        const Index mj = std::min(kGemmBlock, n - j0);
        auto out = gcm.middleRows(i0, mi);
        if (j0 == 0)
          out.noalias() = dm.block(i0, j0, mi, mj) * b.block(j0, v0, mj, v1 - v0);
        else
          out.noalias() += dm.block(i0, j0, mi, mj) * b.block(j0, v0, mj, v1 - v0);
      }
    }
  }

  SinkhornOptions<T> m_opt;
  detail::SinkhornWorkspace<T> m_ws;
  SinkhornInfo m_info;
  Index m_n = 0;
};

KDLOSS_END_NAMESPACE
