// Sinkhorn (SinKD): value-only and value+gradient beside the straightforward Eigen implementation
// of the same math (sinkhorn_naive.hpp), and the L1 cost kernel alone (items = N^2 V pairs of
// entries, the O(N^2 V) work).
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/sinkhorn.hpp>

#include "bench_main.hpp"
#include "sinkhorn_naive.hpp"

namespace {

using namespace kdbench;

/// The shapes of issue 5: N in {64, 256} x V in {32000, 128256}.
const std::vector<std::pair<int, int>>& sinkhorn_shapes() {
  static const std::vector<std::pair<int, int>> s = {{64, 32000}, {64, 128256}, {256, 32000}, {256, 128256}};
  return s;
}

/// Softmax rows of the benchmark's S and T (for the cost kernel alone), one shape at a time.
struct Probs {
  RowMatrix<float> ps, pt;
  std::vector<double> w;
};
Probs& probs(int n, int v) {
  static Probs p;
  static std::pair<int, int> shape{-1, -1};
  if (shape != std::make_pair(n, v)) {
    Data& d = data(n, v);
    NaiveSinkhorn<float>::softmax(d.S, p.ps, 1.0f);
    NaiveSinkhorn<float>::softmax(d.T, p.pt, 1.0f);
    p.w.assign(static_cast<size_t>(n) * static_cast<size_t>(n), 0.0);
    shape = {n, v};
  }
  return p;
}

/// `kdbench::add` with one untimed call first: the functors' workspaces (and the naive version's
/// buffers) grow on their first call at a shape, which is not what a training step pays.
void add_warm(const std::string& loss, const std::string& mode, const std::string& impl,
              std::function<float(Data&, RowMatrix<float>*)> fn) {
  for (const auto& [n, v] : sinkhorn_shapes()) {
    const std::string name = loss + "/" + mode + "/" + impl + "/N:" + std::to_string(n) + "/V:" + std::to_string(v);
    const bool grad = mode == "grad";
    benchmark::RegisterBenchmark(name.c_str(), [fn, n = n, v = v, grad](benchmark::State& st) {
      Data& d = data(n, v);
      benchmark::DoNotOptimize(fn(d, grad ? &d.G : nullptr));
      for (auto _ : st) {
        benchmark::DoNotOptimize(fn(d, grad ? &d.G : nullptr));
        benchmark::ClobberMemory();
      }
      const auto elems = static_cast<std::int64_t>(n) * v;
      st.SetItemsProcessed(st.iterations() * elems);
      st.SetBytesProcessed(st.iterations() * elems * (grad ? 12 : 8));
    })->Unit(benchmark::kMillisecond);
  }
}

void add_cost_kernel(const std::string& impl, void (*fn)(Probs&, int)) {
  for (const auto& [n, v] : sinkhorn_shapes()) {
    const std::string name = "SinkhornL1Cost/kernel/" + impl + "/N:" + std::to_string(n) + "/V:" + std::to_string(v);
    benchmark::RegisterBenchmark(name.c_str(), [fn, n = n, v = v](benchmark::State& st) {
      Probs& p = probs(n, v);
      fn(p, n);
      for (auto _ : st) {
        fn(p, n);
        benchmark::DoNotOptimize(p.w.data());
        benchmark::ClobberMemory();
      }
      // items = the N^2 V absolute differences of the cost
      st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(n) * n * v);
    })->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  static kdloss::Sinkhorn<float> sk;  // SinKD's defaults: epsilon 0.1, 20 iterations, L1, exact
  static kdloss::SinkhornOptions<float> env_opt = [] {
    kdloss::SinkhornOptions<float> o;
    o.gradient = kdloss::SinkhornGradient::Envelope;
    return o;
  }();
  static kdloss::Sinkhorn<float> sk_env(env_opt);
  static kdloss::SinkhornOptions<float> l2_opt = [] {
    kdloss::SinkhornOptions<float> o;
    o.cost = kdloss::SinkhornCost::SquaredL2;
    return o;
  }();
  static kdloss::Sinkhorn<float> sk_l2(l2_opt);
  static NaiveSinkhorn<float> naive;
  for (const char* mode : {"value", "grad"}) {
    add_warm("Sinkhorn", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? sk(d.S, d.T, *g) : sk(d.S, d.T); });
    add_warm("Sinkhorn", mode, "eigen_whole", [](Data& d, RowMatrix<float>* g) { return naive(d.S, d.T, g, 1.0f, 0.1f, 20); });
  }
  add_warm("SinkhornEnvelope", "grad", "kdloss", [](Data& d, RowMatrix<float>* g) { return sk_env(d.S, d.T, *g); });
  add_warm("SinkhornSquaredL2", "grad", "kdloss", [](Data& d, RowMatrix<float>* g) { return sk_l2(d.S, d.T, *g); });
  add_cost_kernel("kdloss", [](Probs& p, int n) {
    const Eigen::Index v = p.ps.cols();
    kdloss::kernels::l1_cost<kdloss::simd::best_arch>(p.ps.data(), v, n, p.pt.data(), v, n, v, p.w.data(), n);
  });
  add_cost_kernel("eigen_whole", [](Probs& p, int n) {
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j)
        p.w[static_cast<size_t>(i * n + j)] = static_cast<double>((p.ps.row(i) - p.pt.row(j)).cwiseAbs().sum());
  });
  return run(argc, argv);
}
