// Shared benchmark driver: random logits per shape, registration of kdloss and the baselines in
// the same binary, and a summary of the ratios at the end of the run.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "baselines.hpp"

namespace kdbench {

/// The shapes of the performance contract: N x V in {64, 256} x {32000, 128256, 151936}.
inline const std::vector<std::pair<int, int>>& shapes() {
  static const std::vector<std::pair<int, int>> s = {{64, 32000},  {64, 128256},  {64, 151936},
                                                     {256, 32000}, {256, 128256}, {256, 151936}};
  return s;
}

/// The family's shapes: N x V in {64, 256} x {32000, 128256}.
inline const std::vector<std::pair<int, int>>& family_shapes() {
  static const std::vector<std::pair<int, int>> s = {{64, 32000}, {64, 128256}, {256, 32000}, {256, 128256}};
  return s;
}

/// Student and teacher logits (uniform in [-8, 8), a cheap deterministic generator) and a gradient
/// buffer; only one shape is kept alive at a time.
struct Data {
  RowMatrix<float> S, T, G;
};
inline Data& data(int n, int v) {
  static std::unique_ptr<Data> d;
  static std::pair<int, int> shape{-1, -1};
  if (shape != std::make_pair(n, v)) {
    d.reset();
    d = std::make_unique<Data>();
    d->S.resize(n, v);
    d->T.resize(n, v);
    d->G.resize(n, v);
    std::uint64_t x = 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(n * 131 + v);
    auto next = [&x] {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      return static_cast<float>(static_cast<double>(x >> 11) * 0x1.0p-53 * 16.0 - 8.0);
    };
    for (Eigen::Index k = 0; k < d->S.size(); ++k) d->S.data()[k] = next(), d->T.data()[k] = next();
    d->G.setZero();
    shape = {n, v};
  }
  return *d;
}

/// A registered call: `fn(data, grad_or_null)` and the shapes it runs on.
using Call = std::function<float(Data&, RowMatrix<float>*)>;
struct Entry {
  Call fn;
  std::vector<std::pair<int, int>> shapes;
};
/// Every call `add` registered, by "<loss>/<mode>/<impl>" (for the paired benchmarks of `run`).
inline std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> r;
  return r;
}

/// Registers `fn(data, grad_or_null)` as "<loss>/<mode>/<impl>/N:<n>/V:<v>" for every shape.
/// mode is "value" or "grad"; bytes per element are 8 (value) or 12 (grad).
inline void add(const std::string& loss, const std::string& mode, const std::string& impl, Call fn,
                const std::vector<std::pair<int, int>>& which = shapes()) {
  registry()[loss + "/" + mode + "/" + impl] = {fn, which};
  for (const auto& [n, v] : which) {
    const std::string name = loss + "/" + mode + "/" + impl + "/N:" + std::to_string(n) + "/V:" + std::to_string(v);
    const bool grad = mode == "grad";
    benchmark::RegisterBenchmark(name.c_str(), [fn, n = n, v = v, grad](benchmark::State& st) {
      Data& d = data(n, v);
      benchmark::DoNotOptimize(fn(d, grad ? &d.G : nullptr));  // warm-up, untimed (caches, workspaces)
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

/// Registers "<loss>/<mode>/paired:<label>/N:<n>/V:<v>": calls `a` and `b` alternately on the same
/// data (a then b, then b then a), each timed on its own, and reports the counter `ratio`, the
/// median over iterations of time(a) / time(b). A ratio from calls made side by side is immune to
/// the drift of a shared machine between two benchmarks run minutes apart (the summary's ratios
/// divide medians of separate runs). Iteration time: both calls.
inline void add_paired(const std::string& loss, const std::string& mode, const std::string& label, Call a, bool a_grad,
                       Call b, bool b_grad, const std::vector<std::pair<int, int>>& which) {
  for (const auto& [n, v] : which) {
    const std::string name = loss + "/" + mode + "/paired:" + label + "/N:" + std::to_string(n) + "/V:" + std::to_string(v);
    benchmark::RegisterBenchmark(name.c_str(), [a, b, a_grad, b_grad, n = n, v = v](benchmark::State& st) {
      Data& d = data(n, v);
      auto timed = [&d](const Call& f, bool grad) {
        const auto t0 = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(f(d, grad ? &d.G : nullptr));
        benchmark::ClobberMemory();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      };
      timed(a, a_grad);  // warm-up, untimed
      timed(b, b_grad);
      std::vector<double> ratios;
      bool a_first = true;
      for (auto _ : st) {
        double ta, tb;
        if (a_first) {
          ta = timed(a, a_grad);
          tb = timed(b, b_grad);
        } else {
          tb = timed(b, b_grad);
          ta = timed(a, a_grad);
        }
        a_first = !a_first;
        ratios.push_back(ta / tb);
        st.SetIterationTime(ta + tb);
      }
      std::sort(ratios.begin(), ratios.end());
      const size_t m = ratios.size();
      st.counters["ratio"] = m == 0 ? 0.0 : (m % 2 != 0 ? ratios[m / 2] : 0.5 * (ratios[m / 2 - 1] + ratios[m / 2]));
    })->UseManualTime()->Unit(benchmark::kMillisecond);
  }
}

/// The paired benchmarks of the bars, made from the registry: per loss, value+gradient,
/// "paired:eigen_rows" (the row-at-a-time Eigen version's time / kdloss's: its speed-up) and,
/// for every loss but ForwardKL, "paired:ForwardKL" (kdloss's time / ForwardKL's: the multiple the
/// bars bound); "<loss>/value/paired:grad" (value-only time / value+gradient time); and, where the
/// binary has one, "paired:roofline" (kdloss's time / the streaming roofline's) and
/// "paired:roofline_speedup" (the row-at-a-time Eigen version's time / the roofline's: the
/// speed-up over that version of a pass that only streams the data any implementation must read
/// and write, which no implementation's speed-up can much exceed), and "paired:roofline_nt_speedup"
/// where the binary also has a copy by non-temporal stores ("roofline_nt": no read of the written
/// lines before they are written).
inline void add_pairs() {
  const auto& r = registry();
  for (const auto& [key, e] : r) {
    const std::string suffix = "/grad/kdloss";
    if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string loss = key.substr(0, key.size() - suffix.size());
    const auto rows = r.find(loss + "/grad/eigen_rows");
    const bool has_rows = rows != r.end();
    if (has_rows) add_paired(loss, "grad", "eigen_rows", rows->second.fn, true, e.fn, true, e.shapes);
    if (const auto fkl = r.find("ForwardKL/grad/kdloss"); loss != "ForwardKL" && fkl != r.end())
      add_paired(loss, "grad", "ForwardKL", e.fn, true, fkl->second.fn, true, e.shapes);
    if (const auto value = r.find(loss + "/value/kdloss"); value != r.end())
      add_paired(loss, "value", "grad", value->second.fn, false, e.fn, true, e.shapes);
    if (const auto roof = r.find(loss + "/grad/roofline"); roof != r.end()) {
      add_paired(loss, "grad", "roofline", e.fn, true, roof->second.fn, true, e.shapes);
      if (has_rows) add_paired(loss, "grad", "roofline_speedup", rows->second.fn, true, roof->second.fn, true, e.shapes);
    }
    if (const auto nt = r.find(loss + "/grad/roofline_nt"); has_rows && nt != r.end())
      add_paired(loss, "grad", "roofline_nt_speedup", rows->second.fn, true, nt->second.fn, true, e.shapes);
  }
}

/// Registers a kdloss functor (value and value+gradient) beside ForwardKL and the naive Eigen
/// version of the same math (`naive(data, grad_or_null)`), over the family's shapes.
template <class Loss, class Naive>
void add_family(const std::string& name, const Loss& loss, Naive naive) {
  for (const char* mode : {"value", "grad"}) {
    add(name, mode, "kdloss", [&loss](Data& d, RowMatrix<float>* g) { return g ? loss(d.S, d.T, *g) : loss(d.S, d.T); },
        family_shapes());
    add(name, mode, "eigen_rows", [naive](Data& d, RowMatrix<float>* g) { return naive(d, g); }, family_shapes());
  }
}

/// The '/'-separated parts of a benchmark name ("<loss>/<mode>/<impl>/N:<n>/V:<v>").
inline std::vector<std::string> split_name(const std::string& name) {
  std::vector<std::string> parts;
  size_t a = 0, b;
  while ((b = name.find('/', a)) != std::string::npos) parts.push_back(name.substr(a, b - a)), a = b + 1;
  parts.push_back(name.substr(a));
  return parts;
}

/// Console output plus a summary: per loss/mode/shape, kdloss ns per element and the time ratio of
/// each baseline to kdloss (medians when --benchmark_repetitions is given).
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  explicit SummaryReporter(OutputOptions opts) : ConsoleReporter(opts) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const bool aggregate = r.run_type == Run::RT_Aggregate;
      if (aggregate && r.aggregate_name != "median") continue;
      std::string name = r.run_name.str();
      if (name.find("/paired:") != std::string::npos) {
        if (const size_t m = name.find("/manual_time"); m != std::string::npos) name.erase(m);
        const auto c = r.counters.find("ratio");
        if (c != r.counters.end() && (aggregate || m_paired.find(name) == m_paired.end() || !m_has_median[name])) {
          m_paired[name] = c->second.value;
          m_has_median[name] = aggregate;
        }
        continue;
      }
      const double t = r.GetAdjustedRealTime();  // in the benchmark's unit (ms)
      if (aggregate || m_times.find(name) == m_times.end() || !m_has_median[name]) {
        m_times[name] = t;
        m_has_median[name] = aggregate;
      }
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    // name = loss/mode/impl/N:n/V:v
    struct Key {
      std::string loss, mode, shape;
      bool operator<(const Key& o) const {
        return std::tie(loss, mode, shape) < std::tie(o.loss, o.mode, o.shape);
      }
    };
    std::map<Key, std::map<std::string, double>> rows;
    std::map<std::string, double> elems;
    for (const auto& [name, t] : m_times) {
      const std::vector<std::string> parts = split_name(name);
      if (parts.size() < 5) continue;
      const std::string shape = parts[3] + " " + parts[4];
      rows[{parts[0], parts[1], shape}][parts[2]] = t;
      elems[shape] = std::stod(parts[3].substr(2)) * std::stod(parts[4].substr(2));
    }
    std::printf("\nSummary (time ratios from this run; > 1 means kdloss is faster):\n");
    std::printf("%-16s %-6s %-17s %10s %12s %14s %14s %16s\n", "loss", "mode", "shape",
                "kdloss ms", "kdloss ns/el", "whole-matrix x", "row-at-time x", "kdloss/roofline");
    for (const auto& row : rows) {
      const Key& k = row.first;
      const std::map<std::string, double>& impls = row.second;  // a lambda may not capture a binding in C++17
      const auto it = impls.find("kdloss");
      if (it == impls.end()) continue;
      const double kd = it->second;
      auto ratio = [&](const char* impl) {
        const auto f = impls.find(impl);
        return f == impls.end() ? 0.0 : f->second / kd;
      };
      const auto roof = impls.find("roofline");
      std::printf("%-16s %-6s %-17s %10.3f %12.3f %14.2f %14.2f %16.2f\n", k.loss.c_str(), k.mode.c_str(),
                  k.shape.c_str(), kd, kd * 1e6 / elems[k.shape], ratio("eigen_whole"), ratio("eigen_rows"),
                  roof == impls.end() ? 0.0 : kd / roof->second);
    }
    // every loss's time relative to ForwardKL's (when the run has ForwardKL/kdloss)
    for (const auto& [k, impls] : rows) {
      if (k.loss == "ForwardKL" || !impls.count("kdloss")) continue;
      const auto f = rows.find({"ForwardKL", k.mode, k.shape});
      if (f == rows.end() || !f->second.count("kdloss")) continue;
      std::printf("%-16s %-6s %-17s %6.2f x ForwardKL's time\n", k.loss.c_str(), k.mode.c_str(), k.shape.c_str(),
                  impls.at("kdloss") / f->second.at("kdloss"));
    }
    // value-only time as a fraction of value+gradient time
    for (const auto& [k, impls] : rows) {
      if (k.mode != "value") continue;
      const auto g = rows.find({k.loss, "grad", k.shape});
      if (g == rows.end() || !impls.count("kdloss") || !g->second.count("kdloss")) continue;
      std::printf("%-16s value-only / value+grad %-17s %6.1f %%\n", k.loss.c_str(), k.shape.c_str(),
                  100.0 * impls.at("kdloss") / g->second.at("kdloss"));
    }
    if (m_paired.empty()) return;
    std::printf("\nPaired (the two calls alternated in one benchmark; median over its iterations of the time ratio):\n");
    for (const auto& [name, ratio] : m_paired) {
      const std::vector<std::string> parts = split_name(name);  // loss/mode/paired:<label>/N:n/V:v
      if (parts.size() < 5) continue;
      const std::string& loss = parts[0];
      const std::string& mode = parts[1];
      const std::string label = parts[2].substr(parts[2].find(':') + 1), sh = parts[3] + " " + parts[4];
      if (label == "eigen_rows")
        std::printf("%-18s %-6s %-17s %6.2f x faster than the row-at-a-time Eigen version\n", loss.c_str(), mode.c_str(), sh.c_str(), ratio);
      else if (label == "ForwardKL")
        std::printf("%-18s %-6s %-17s %6.2f x ForwardKL's time\n", loss.c_str(), mode.c_str(), sh.c_str(), ratio);
      else if (label == "grad")
        std::printf("%-18s value-only / value+grad %-17s %6.1f %%\n", loss.c_str(), sh.c_str(), 100.0 * ratio);
      else if (label == "roofline")
        std::printf("%-18s %-6s %-17s %6.2f x the streaming roofline's time\n", loss.c_str(), mode.c_str(), sh.c_str(), ratio);
      else if (label == "roofline_nt_speedup")
        std::printf("%-18s %-6s %-17s %6.2f x: the non-temporal copy's speed-up over the row-at-a-time Eigen version\n",
                    loss.c_str(), mode.c_str(), sh.c_str(), ratio);
      else if (label == "roofline_speedup")
        std::printf("%-18s %-6s %-17s %6.2f x: the streaming roofline's speed-up over the row-at-a-time Eigen version\n",
                    loss.c_str(), mode.c_str(), sh.c_str(), ratio);
    }
  }

 private:
  std::map<std::string, double> m_times;
  std::map<std::string, bool> m_has_median;
  std::map<std::string, double> m_paired;
};

/// Colour in the console output: as `--benchmark_color` says (true/false/yes/no), else only on a
/// terminal (a reporter of our own does not read Google Benchmark's flag, and files would get
/// escape codes).
inline bool console_colour(int argc, char** argv) {
  bool colour = isatty(fileno(stdout)) != 0;
  const std::string flag = "--benchmark_color=";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.compare(0, flag.size(), flag) != 0) continue;
    const std::string v = a.substr(flag.size());
    if (v == "false" || v == "no" || v == "0") colour = false;
    if (v == "true" || v == "yes" || v == "1") colour = true;
  }
  return colour;
}

/// Runs the registered benchmarks with the summary reporter.
inline int run(int argc, char** argv) {
  const bool colour = console_colour(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  add_pairs();
  SummaryReporter reporter(colour ? benchmark::ConsoleReporter::OO_ColorTabular : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}

}  // namespace kdbench
