// Tests of the LibTorch adapter (kdloss/torch.hpp) against torch's own autograd: torch::kl_div for
// forward and reverse KL and a log-space generalised JSD written with torch ops (the mixture by
// logsumexp, as TRL's generalized_jsd_loss), differentiated by torch, in float64.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/kdloss.hpp>
#include <kdloss/torch.hpp>

#include <catch2/catch.hpp>
#include <cmath>
#include <string>

namespace {

enum class Kind { Fkl, Rkl, Jsd };

const char* kind_name(Kind k) { return k == Kind::Fkl ? "ForwardKL" : k == Kind::Rkl ? "ReverseKL" : "JensenShannon"; }

/// Per-row divergences [..] computed by torch ops on the logits (any dtype; the caller upcasts to
/// float64 for the reference). Entries that are -inf on both sides (a masked vocabulary) are
/// replaced by 0 before the formula and their terms dropped after it, so that neither the value
/// nor torch's gradient sees 0 * (-inf - -inf) = NaN (the where trick applied to the inputs).
at::Tensor reference_rows(Kind kind, const at::Tensor& s, const at::Tensor& t, double tau, double beta) {
  at::Tensor ls = torch::log_softmax(s / tau, -1), lt = torch::log_softmax(t / tau, -1);
  const at::Tensor both = torch::isneginf(ls).logical_and(torch::isneginf(lt));
  ls = torch::where(both, torch::zeros_like(ls), ls);
  lt = torch::where(both, torch::zeros_like(lt), lt);
  at::Tensor terms;
  switch (kind) {
    case Kind::Fkl:  // KL(p||q): kl_div(input = log q, target = log p)
      terms = torch::kl_div(ls, lt, at::Reduction::None, /*log_target=*/true);
      break;
    case Kind::Rkl:  // KL(q||p)
      terms = torch::kl_div(lt, ls, at::Reduction::None, /*log_target=*/true);
      break;
    case Kind::Jsd: {  // beta KL(p||m) + (1 - beta) KL(q||m), log m = logsumexp(log q + log(1-beta), log p + log beta)
      const at::Tensor mix = torch::logsumexp(torch::stack({ls + std::log(1 - beta), lt + std::log(beta)}), 0);
      terms = beta * torch::kl_div(mix, lt, at::Reduction::None, true) +
              (1 - beta) * torch::kl_div(mix, ls, at::Reduction::None, true);
      break;
    }
  }
  return torch::where(both, torch::zeros_like(terms), terms).sum(-1);
}

/// Mean over the rows whose label is not -100 (TRL/Liger/torchtune), or over all rows.
at::Tensor reduce(const at::Tensor& rows, const c10::optional<at::Tensor>& labels) {
  if (!labels) return rows.mean();
  const at::Tensor mask = labels->ne(-100).to(rows.scalar_type()).reshape(rows.sizes());
  return (rows * mask).sum() / mask.sum();
}

/// Value and gradient of the reference, in float64, on the exact values of the inputs.
std::pair<at::Tensor, at::Tensor> reference(Kind kind, const at::Tensor& student, const at::Tensor& teacher,
                                            const c10::optional<at::Tensor>& labels, double tau, double beta,
                                            double upstream) {
  const at::Tensor s = student.detach().to(at::kDouble).requires_grad_(true);
  const at::Tensor t = teacher.detach().to(at::kDouble);
  const at::Tensor loss = reduce(reference_rows(kind, s, t, tau, beta), labels);
  loss.backward(torch::full({}, upstream, torch::kDouble));
  return {loss.detach(), s.grad()};
}

/// Value and gradient through the adapter.
std::pair<at::Tensor, at::Tensor> adapter(Kind kind, const at::Tensor& student_in, const at::Tensor& teacher,
                                          const c10::optional<at::Tensor>& labels, double tau, double beta,
                                          double upstream) {
  const at::Tensor student = student_in.detach().requires_grad_(true);
  kdloss::Options<float> opt;
  opt.temperature = static_cast<float>(tau);
  at::Tensor loss;
  switch (kind) {
    case Kind::Fkl: loss = kdloss::libtorch::apply(kdloss::ForwardKL<float>(opt), student, teacher, labels); break;
    case Kind::Rkl: loss = kdloss::libtorch::apply(kdloss::ReverseKL<float>(opt), student, teacher, labels); break;
    case Kind::Jsd:
      loss = kdloss::libtorch::apply(kdloss::JensenShannon<float>(opt, beta), student, teacher, labels);
      break;
  }
  REQUIRE(loss.dim() == 0);
  REQUIRE(loss.scalar_type() == student.scalar_type());
  REQUIRE(loss.requires_grad());
  loss.backward(torch::full({}, upstream, loss.options()));
  REQUIRE(student.grad().defined());
  REQUIRE(student.grad().sizes() == student.sizes());
  REQUIRE(student.grad().scalar_type() == student.scalar_type());
  return {loss.detach(), student.grad()};
}

/// max over entries of |a - e| / (atol + rtol |e|); <= 1 passes. NaN anywhere fails.
double violation(const at::Tensor& actual, const at::Tensor& expected, double rtol, double atol) {
  const at::Tensor a = actual.to(at::kDouble), e = expected.to(at::kDouble);
  if (a.isnan().any().item<bool>() || e.isnan().any().item<bool>()) return INFINITY;
  return ((a - e).abs() / (atol + rtol * e.abs())).max().item<double>();
}

struct Tol {
  double loss_rtol, grad_rtol, grad_atol;
};
// float32 inputs against the float64 reference: the default float32 tolerance of
// torch.testing (rtol 1.3e-6) with headroom for the vector exp/log, and an absolute bound far
// below the gradient entries (~1e-3 here).
constexpr Tol kFloat32{2e-6, 2e-5, 1e-8};
// bfloat16 inputs (and a bfloat16 gradient): torch.testing's bfloat16 tolerance (rtol 1.6e-2).
constexpr Tol kBf16{1.6e-2, 1.6e-2, 1e-6};

void compare(Kind kind, const at::Tensor& student, const at::Tensor& teacher, const c10::optional<at::Tensor>& labels,
             double tau, double beta, double upstream, const Tol& tol) {
  const auto [rv, rg] = reference(kind, student, teacher, labels, tau, beta, upstream);
  const auto [av, ag] = adapter(kind, student, teacher, labels, tau, beta, upstream);
  INFO(kind_name(kind) << " tau " << tau << " upstream " << upstream << ": loss " << av.item<double>()
                       << " vs torch " << rv.item<double>());
  CHECK(violation(av, rv, tol.loss_rtol, 0) <= 1);
  CHECK(violation(ag, rg, tol.grad_rtol, tol.grad_atol) <= 1);
  // Masked rows get exactly zero gradient.
  if (labels) {
    const at::Tensor masked = labels->eq(-100).reshape({-1});
    const at::Tensor g = ag.reshape({-1, ag.size(-1)});
    CHECK(g.index({masked}).abs().sum().item<double>() == 0.0);
  }
}

const Kind kKinds[] = {Kind::Fkl, Kind::Rkl, Kind::Jsd};

at::Tensor labels_with_ignored(int64_t b, int64_t s, int64_t v) {
  at::Tensor y = torch::randint(0, v, {b, s}, torch::kLong);
  y.index_put_({0, 1}, -100);
  y.index_put_({1, 0}, -100);
  y.index_put_({b - 1, s - 1}, -100);
  return y;
}

}  // namespace

TEST_CASE("torch adapter: random float32 logits equal torch's autograd", "[torch]") {
  torch::manual_seed(1);
  const int64_t B = 3, S = 5, V = 67;
  const at::Tensor s = 2 * torch::randn({B, S, V}), t = 3 * torch::randn({B, S, V});
  for (Kind k : kKinds)
    for (double tau : {1.0, 2.0}) compare(k, s, t, c10::nullopt, tau, 0.5, 1.0, kFloat32);
  compare(Kind::Jsd, s, t, c10::nullopt, 1.0, 0.3, 1.0, kFloat32);  // generalised JSD, beta != 1/2
}

TEST_CASE("torch adapter: an upstream gradient of 2.0 (and -0.5) scales the gradient", "[torch]") {
  torch::manual_seed(2);
  const at::Tensor s = torch::randn({4, 6, 129}), t = 2 * torch::randn({4, 6, 129});
  for (Kind k : kKinds) {
    compare(k, s, t, c10::nullopt, 1.0, 0.5, 2.0, kFloat32);
    compare(k, s, t, c10::nullopt, 1.0, 0.5, -0.5, kFloat32);
  }
}

TEST_CASE("torch adapter: masked rows (labels = -100) are left out of the mean", "[torch]") {
  torch::manual_seed(3);
  const int64_t B = 3, S = 4, V = 50;
  const at::Tensor s = torch::randn({B, S, V}), t = torch::randn({B, S, V}) * 2;
  const at::Tensor y = labels_with_ignored(B, S, V);
  for (Kind k : kKinds) compare(k, s, t, y, 1.5, 0.5, 2.0, kFloat32);
  // int32 labels work the same.
  for (Kind k : kKinds) compare(k, s, t, y.to(torch::kInt), 1.0, 0.5, 2.0, kFloat32);
}

TEST_CASE("torch adapter: every row masked gives loss 0 and gradient 0, not NaN", "[torch]") {
  const at::Tensor s = torch::randn({2, 3, 10}).requires_grad_(true), t = torch::randn({2, 3, 10});
  const at::Tensor y = torch::full({2, 3}, -100, torch::kLong);
  const at::Tensor loss = kdloss::libtorch::apply(kdloss::ReverseKL<float>(), s, t, y);
  loss.backward();
  CHECK(loss.item<float>() == 0.0f);
  CHECK(s.grad().abs().sum().item<float>() == 0.0f);
}

TEST_CASE("torch adapter: -inf entries (a masked vocabulary) on both sides", "[torch]") {
  torch::manual_seed(4);
  const int64_t B = 2, S = 3, V = 40;
  at::Tensor s = torch::randn({B, S, V}), t = torch::randn({B, S, V}) * 2;
  // Padded vocabulary: the last 7 columns are -inf in every row, on both sides.
  s.narrow(-1, V - 7, 7).fill_(-INFINITY);
  t.narrow(-1, V - 7, 7).fill_(-INFINITY);
  // And a few entries masked per row.
  const at::Tensor scattered = torch::rand({B, S, V}) < 0.15;
  s.masked_fill_(scattered, -INFINITY);
  t.masked_fill_(scattered, -INFINITY);
  const at::Tensor y = labels_with_ignored(B, S, V);
  for (Kind k : kKinds) {
    compare(k, s, t, c10::nullopt, 1.0, 0.5, 2.0, kFloat32);
    compare(k, s, t, y, 2.0, 0.5, 1.0, kFloat32);
  }
  // The padded columns: torch's kl_div on the vocabulary without them gives the same loss, and the
  // adapter's gradient there is exactly 0.
  const at::Tensor s2 = s.clone().masked_fill_(scattered, 0.0), t2 = t.clone().masked_fill_(scattered, 0.0);
  s2.narrow(-1, V - 7, 7).fill_(-INFINITY);
  t2.narrow(-1, V - 7, 7).fill_(-INFINITY);
  const at::Tensor sv = s2.narrow(-1, 0, V - 7).clone().requires_grad_(true);
  const at::Tensor ref = torch::kl_div(torch::log_softmax(sv, -1), torch::log_softmax(t2.narrow(-1, 0, V - 7), -1),
                                       at::Reduction::None, true)
                             .sum(-1)
                             .mean();
  ref.backward();
  const at::Tensor sa = s2.clone().requires_grad_(true);
  const at::Tensor got = kdloss::libtorch::apply(kdloss::ForwardKL<float>(), sa, t2);
  got.backward();
  CHECK(violation(got, ref, 2e-5, 0) <= 1);
  CHECK(violation(sa.grad().narrow(-1, 0, V - 7), sv.grad(), 2e-5, 1e-8) <= 1);
  CHECK(sa.grad().narrow(-1, V - 7, 7).abs().sum().item<float>() == 0.0f);
}

TEST_CASE("torch adapter: bfloat16 inputs, gradient returned in bfloat16", "[torch]") {
  torch::manual_seed(5);
  const int64_t B = 2, S = 8, V = 300;
  const at::Tensor s = torch::randn({B, S, V}).to(torch::kBFloat16), t = (2 * torch::randn({B, S, V})).to(torch::kBFloat16);
  const at::Tensor y = labels_with_ignored(B, S, V);
  for (Kind k : kKinds) {
    compare(k, s, t, c10::nullopt, 1.0, 0.5, 2.0, kBf16);
    compare(k, s, t, y, 2.0, 0.5, 1.0, kBf16);
  }
  // Mixed: a bfloat16 teacher with a float32 student.
  for (Kind k : kKinds) compare(k, s.to(torch::kFloat), t, y, 1.0, 0.5, 2.0, kFloat32);
  // The conversion is one copy.
  CHECK(kdloss::libtorch::detail::as_rows(s, at::kFloat).copied);
}

TEST_CASE("torch adapter: non-contiguous inputs (strided rows) equal the contiguous result", "[torch]") {
  torch::manual_seed(6);
  const int64_t B = 3, S = 4, V = 45;
  // Rows of a wider buffer: logits[..., :V] (row stride V + 13): mapped without a copy.
  const at::Tensor wide_s = torch::randn({B, S, V + 13}), wide_t = 2 * torch::randn({B, S, V + 11});
  const at::Tensor s = wide_s.narrow(-1, 0, V), t = wide_t.narrow(-1, 2, V);
  REQUIRE_FALSE(s.is_contiguous());
  CHECK_FALSE(kdloss::libtorch::detail::as_rows(s, at::kFloat).copied);
  CHECK_FALSE(kdloss::libtorch::detail::as_rows(t, at::kFloat).copied);
  CHECK(kdloss::libtorch::detail::as_rows(s, at::kFloat).rows.stride(0) == V + 13);
  // A shifted sequence, logits[:, :-1, :]: the leading dimensions do not flatten, one copy.
  const at::Tensor long_s = torch::randn({B, S + 1, V}), long_t = torch::randn({B, S + 1, V});
  const at::Tensor s2 = long_s.narrow(1, 0, S), t2 = long_t.narrow(1, 1, S);
  CHECK(kdloss::libtorch::detail::as_rows(s2, at::kFloat).copied);
  // A transposed tensor (last dimension strided): one copy.
  const at::Tensor s3 = torch::randn({V, B * S}).t(), t3 = torch::randn({B * S, V});
  CHECK(kdloss::libtorch::detail::as_rows(s3, at::kFloat).copied);
  // A broadcast teacher (row stride 0): one copy.
  const at::Tensor t4 = torch::randn({1, V}).expand({B * S, V});
  CHECK(kdloss::libtorch::detail::as_rows(t4, at::kFloat).copied);
  const at::Tensor y = labels_with_ignored(B, S, V);
  for (Kind k : kKinds) {
    for (const auto& [ss, tt] : {std::pair<at::Tensor, at::Tensor>{s, t}, {s2, t2}, {s3, t3}, {s3, t4}}) {
      compare(k, ss, tt, c10::nullopt, 1.0, 0.5, 2.0, kFloat32);
      // Same as the contiguous copies, bit for bit.
      const auto [v1, g1] = adapter(k, ss, tt, c10::nullopt, 1.0, 0.5, 2.0);
      const auto [v2, g2] = adapter(k, ss.contiguous(), tt.contiguous(), c10::nullopt, 1.0, 0.5, 2.0);
      CHECK(v1.item<float>() == v2.item<float>());
      CHECK(torch::equal(g1, g2));
    }
    compare(k, s, t, y, 1.0, 0.5, 2.0, kFloat32);
  }
}

TEST_CASE("torch adapter: double tensors with a double loss, 2-D and 1-D shapes", "[torch]") {
  torch::manual_seed(7);
  const at::Tensor s = torch::randn({6, 33}, torch::kDouble).requires_grad_(true);
  const at::Tensor t = torch::randn({6, 33}, torch::kDouble);
  const at::Tensor loss = kdloss::libtorch::apply(kdloss::ReverseKL<double>(), s, t);
  loss.backward();
  const auto [rv, rg] = reference(Kind::Rkl, s, t, c10::nullopt, 1.0, 0.5, 1.0);
  CHECK(violation(loss, rv, 1e-12, 0) <= 1);
  CHECK(violation(s.grad(), rg, 1e-10, 1e-15) <= 1);
  // A single row [V].
  const at::Tensor s1 = torch::randn({33}).requires_grad_(true), t1 = torch::randn({33});
  const at::Tensor l1 = kdloss::libtorch::apply(kdloss::ForwardKL<float>(), s1, t1);
  l1.backward();
  const auto [rv1, rg1] = reference(Kind::Fkl, s1, t1, c10::nullopt, 1.0, 0.5, 1.0);
  CHECK(violation(l1, rv1, 2e-5, 0) <= 1);
  CHECK(violation(s1.grad(), rg1, 2e-5, 1e-8) <= 1);
}

TEST_CASE("torch adapter: value only without autograd, and the teacher gets no gradient", "[torch]") {
  torch::manual_seed(8);
  const at::Tensor s = torch::randn({4, 20}), t = torch::randn({4, 20}).requires_grad_(true);
  const kdloss::JensenShannon<float> js;
  const at::Tensor with = kdloss::libtorch::apply(js, s.clone().requires_grad_(true), t);
  at::Tensor without;
  {
    const torch::NoGradGuard no_grad;
    without = kdloss::libtorch::apply(js, s.clone().requires_grad_(true), t);
  }
  CHECK_FALSE(without.requires_grad());
  CHECK(with.item<float>() == without.item<float>());
  with.backward();
  CHECK_FALSE(t.grad().defined());
}

TEST_CASE("torch adapter: bad inputs are clear errors", "[torch]") {
  const kdloss::ForwardKL<float> f;
  const at::Tensor s = torch::randn({2, 5}), t = torch::randn({2, 5});
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, s, torch::randn({2, 6})),
                    Catch::Contains("student is [2, 5] but teacher is [2, 6]"));
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, s.to(torch::kDouble), t),
                    Catch::Contains("student is Double but this loss computes in Float"));
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, s, torch::ones({2, 5}, torch::kLong)),
                    Catch::Contains("teacher is Long"));
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, s, t, torch::zeros({3}, torch::kLong)),
                    Catch::Contains("3 labels for 2 rows"));
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, s, t, torch::zeros({2}, torch::kFloat)),
                    Catch::Contains("labels must be an integer tensor"));
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, torch::randn({}), torch::randn({})),
                    Catch::Contains("at least one dimension"));
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, torch::randn({3, 0}), torch::randn({3, 0})),
                    Catch::Contains("the vocabulary is empty"));
  // No rows is legal: loss 0.
  const at::Tensor none = torch::randn({0, 5}).requires_grad_(true);
  const at::Tensor zero = kdloss::libtorch::apply(f, none, torch::randn({0, 5}));
  zero.backward();
  CHECK(zero.item<float>() == 0.0f);
  CHECK(none.grad().sizes() == none.sizes());
  // kdloss's own checks come through: NaN logits name the row.
  at::Tensor bad = torch::randn({2, 5});
  bad.index_put_({1, 2}, NAN);
  CHECK_THROWS_WITH(kdloss::libtorch::apply(f, s, bad), Catch::Contains("row 1"));
}
