// distill_demo: training one student per divergence and measuring it against the teacher.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <kdloss/kdloss.hpp>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "divergences.hpp"
#include "language.hpp"
#include "student.hpp"

namespace distill_demo {

/// Everything a run depends on. Same config and seed, same numbers, for any thread count.
struct Config {
  LanguageSpec language;
  /// Student sizes (`student.vocab` is taken from the language).
  StudentSpec student;
  AdamSpec adam;
  /// Optimizer steps per student (the same budget for every divergence).
  int steps = 2000;
  /// Contexts per step.
  int batch = 64;
  /// Evaluate every this many steps (and at step 0 and the last step).
  int eval_every = 50;
  /// Held-out contexts the metrics are measured on.
  int eval_contexts = 512;
  /// Teacher mass that defines the head of each held-out distribution.
  double head_mass = 0.5;
  /// Seed of the language, the student initialisation and the data streams.
  std::uint64_t seed = 1;
  /// Students trained at the same time (each on one thread).
  int threads = 1;
};

/// The metrics at one evaluation, means over the held-out contexts.
struct Metrics {
  int step = 0;
  /// Mean training loss since the previous evaluation (the loss the student is trained on; NaN at
  /// step 0).
  double train_loss = 0;
  /// \f$KL(p\|q)\f$: teacher p, student q (nats).
  double kl_pq = 0;
  /// \f$KL(q\|p)\f$ (nats).
  double kl_qp = 0;
  /// Fraction of contexts where the student's most likely token is the teacher's.
  double top1 = 0;
  /// \f$\frac12\sum_{v \in \mathrm{head}} |p_v - q_v|\f$: the head is the teacher's top tokens up
  /// to `head_mass` cumulative probability (the top-1 token always), as in AKL.
  double tv_head = 0;
  /// \f$\frac12\sum_{v \notin \mathrm{head}} |p_v - q_v|\f$ (tv_head + tv_tail = TV(p, q)).
  double tv_tail = 0;
};

/// One student's training curve.
struct Curve {
  std::string key, name;
  std::vector<Metrics> points;
  /// Wall time of this student (training and evaluation).
  double seconds = 0;
  const Metrics& initial() const { return points.front(); }
  const Metrics& final() const { return points.back(); }
};

/// Held-out contexts, drawn from independent streams of the language, with the teacher's exact
/// distributions and heads precomputed once and shared (read-only) by every student.
class EvalSet {
 public:
  EvalSet(const Language& lang, int contexts, std::uint64_t seed, double head_mass) {
    Streams s(lang, contexts, seed, 256);
    m_a = s.a();
    m_b = s.b();
    const Eigen::Index n = contexts, v = lang.vocab();
    m_teacher.resize(n, v);
    m_p.resize(n, v);
    m_head.resize(static_cast<std::size_t>(n));
    m_top1.resize(n);
    std::vector<int> order(static_cast<std::size_t>(v));
    for (Eigen::Index i = 0; i < n; ++i) {
      lang.teacher_logits(m_a[i], m_b[i], m_teacher.row(i).data());
      m_p.row(i) = m_teacher.row(i).cast<double>().array().exp();
      std::iota(order.begin(), order.end(), 0);
      // The head is a few tokens: sort only the first candidates, by probability then index.
      auto by_p = [&](int x, int y) { return m_p(i, x) > m_p(i, y) || (m_p(i, x) == m_p(i, y) && x < y); };
      std::size_t k = std::min<std::size_t>(64, order.size());
      for (;; k = std::min<std::size_t>(order.size(), 4 * k)) {
        std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), by_p);
        double mass = 0;
        for (std::size_t j = 0; j < k; ++j) mass += m_p(i, order[j]);
        if (mass > head_mass || k == order.size()) break;
      }
      auto& head = m_head[static_cast<std::size_t>(i)];
      double cum = 0;
      for (std::size_t j = 0; j < order.size(); ++j) {
        cum += m_p(i, order[j]);
        if (j > 0 && cum > head_mass) break;
        head.push_back(order[j]);
      }
      m_top1[i] = order[0];
    }
  }

  Eigen::Index size() const noexcept { return m_a.size(); }
  const Eigen::VectorXi& a() const noexcept { return m_a; }
  const Eigen::VectorXi& b() const noexcept { return m_b; }
  const kdloss::RowMatrix<float>& teacher() const noexcept { return m_teacher; }
  /// The teacher's head of context i: its top tokens, most likely first.
  const std::vector<int>& head(Eigen::Index i) const { return m_head[static_cast<std::size_t>(i)]; }
  /// Mean number of head tokens per context.
  double mean_head_size() const {
    double s = 0;
    for (const auto& h : m_head) s += static_cast<double>(h.size());
    return s / static_cast<double>(m_head.size());
  }

  /// Scratch buffers of `evaluate` (one per thread).
  struct Workspace {
    kdloss::RowMatrix<float> z, lq;
  };

  /// Measures `student` on the held-out contexts (runs its forward pass).
  Metrics evaluate(Student& student, Workspace& ws) const {
    const Eigen::Index n = size(), v = m_teacher.cols();
    kdloss::RowMatrix<float>& z = ws.z;
    kdloss::RowMatrix<float>& lq = ws.lq;
    student.forward(m_a, m_b, z);
    Metrics m;
    m.kl_pq = static_cast<double>(kdloss::ForwardKL<float>()(z, m_teacher));
    m.kl_qp = static_cast<double>(kdloss::ReverseKL<float>()(z, m_teacher));
    lq.resize(n, v);
    kdloss::log_softmax(z, lq);
    double top1 = 0, head = 0, total = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      Eigen::Index arg = 0;
      z.row(i).maxCoeff(&arg);
      top1 += arg == m_top1[i] ? 1.0 : 0.0;
      double tv = 0;
      for (Eigen::Index j = 0; j < v; ++j) tv += std::abs(m_p(i, j) - std::exp(static_cast<double>(lq(i, j))));
      double tvh = 0;
      for (const int j : m_head[static_cast<std::size_t>(i)])
        tvh += std::abs(m_p(i, j) - std::exp(static_cast<double>(lq(i, j))));
      total += 0.5 * tv;
      head += 0.5 * tvh;
    }
    const double dn = static_cast<double>(n);
    m.top1 = top1 / dn;
    m.tv_head = head / dn;
    m.tv_tail = (total - head) / dn;
    return m;
  }

 private:
  Eigen::VectorXi m_a, m_b, m_top1;
  kdloss::RowMatrix<float> m_teacher;
  kdloss::RowMatrix<double> m_p;
  std::vector<std::vector<int>> m_head;
};

/// Trains one student with the loss `div` and records its curve. `done` (optional) is set to the
/// number of steps finished, for progress reports from another thread.
inline Curve train_student(const Language& lang, const EvalSet& eval, const Config& cfg,
                           const Divergence& div, std::atomic<int>* done = nullptr) {
  const auto t0 = std::chrono::steady_clock::now();
  StudentSpec sspec = cfg.student;
  sspec.vocab = lang.vocab();
  // Same initial student and same stream of contexts for every divergence: only the loss differs.
  Student student(sspec, derive_seed(cfg.seed, 2));
  Streams streams(lang, cfg.batch, derive_seed(cfg.seed, 3));
  const LossFn loss = div.make();

  Curve curve{div.key, div.name, {}, 0};
  EvalSet::Workspace ws;
  Metrics m0 = eval.evaluate(student, ws);
  m0.train_loss = std::nan("");
  curve.points.push_back(m0);

  const Eigen::Index n = cfg.batch, v = lang.vocab();
  kdloss::RowMatrix<float> teacher(n, v), z(n, v), dz(n, v);
  Eigen::VectorXi a, b, next;
  double loss_sum = 0;
  int loss_count = 0;
  for (int step = 1; step <= cfg.steps; ++step) {
    a = streams.a();
    b = streams.b();
    for (Eigen::Index i = 0; i < n; ++i) lang.teacher_logits(a[i], b[i], teacher.row(i).data());
    streams.advance(&next);
    student.forward(a, b, z);
    loss_sum += static_cast<double>(loss(Batch{z, teacher, next, step, cfg.steps}, dz));
    ++loss_count;
    student.backward(dz);
    student.step(cfg.adam);
    if (step % cfg.eval_every == 0 || step == cfg.steps) {
      Metrics m = eval.evaluate(student, ws);
      m.step = step;
      m.train_loss = loss_sum / loss_count;
      loss_sum = 0;
      loss_count = 0;
      curve.points.push_back(m);
    }
    if (done) done->store(step, std::memory_order_relaxed);
  }
  curve.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return curve;
}

/// A whole run: the language, the held-out set, and one student per divergence.
class Experiment {
 public:
  explicit Experiment(const Config& cfg)
      : m_cfg(cfg),
        m_lang(cfg.language, derive_seed(cfg.seed, 0)),
        m_eval(m_lang, cfg.eval_contexts, derive_seed(cfg.seed, 4), cfg.head_mass) {
    if (cfg.steps < 1 || cfg.batch < 1 || cfg.eval_every < 1 || cfg.eval_contexts < 1 || cfg.threads < 1)
      throw std::invalid_argument("distill_demo: steps, batch, eval_every, eval_contexts and threads must be >= 1");
  }
  const Language& language() const noexcept { return m_lang; }
  const EvalSet& eval_set() const noexcept { return m_eval; }
  const Config& config() const noexcept { return m_cfg; }

  /// Trains every divergence in `divs` on `config().threads` worker threads, each student on one
  /// thread from start to end (so the result does not depend on the thread count). `tick(done)`,
  /// when given, is called from the calling thread about every `tick_ms` milliseconds with each
  /// student's finished steps, and once at the end.
  std::vector<Curve> run(const std::vector<Divergence>& divs,
                         const std::function<void(const std::vector<int>&)>& tick = {},
                         int tick_ms = 500) const {
    const std::size_t k = divs.size();
    std::vector<Curve> curves(k);
    std::vector<std::atomic<int>> done(k);
    for (auto& d : done) d.store(0);
    std::atomic<std::size_t> next{0}, finished{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    const std::size_t workers = std::min<std::size_t>(static_cast<std::size_t>(m_cfg.threads), std::max<std::size_t>(k, 1));
    auto work = [&] {
      for (std::size_t j; (j = next.fetch_add(1)) < k;) {
        try {
          curves[j] = train_student(m_lang, m_eval, m_cfg, divs[j], &done[j]);
        } catch (...) {
          const std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
        }
        finished.fetch_add(1);
      }
    };
    // Workers train; this thread only sleeps and reports progress.
    std::vector<std::thread> pool;
    for (std::size_t w = 0; w < workers; ++w) pool.emplace_back(work);
    std::vector<int> snapshot(k);
    auto report = [&] {
      for (std::size_t j = 0; j < k; ++j) snapshot[j] = done[j].load(std::memory_order_relaxed);
      tick(snapshot);
    };
    if (tick)
      while (finished.load() < k) {
        std::this_thread::sleep_for(std::chrono::milliseconds(tick_ms));
        report();
      }
    for (auto& t : pool) t.join();
    if (tick) report();
    if (error) std::rethrow_exception(error);
    return curves;
  }

 private:
  Config m_cfg;
  Language m_lang;
  EvalSet m_eval;
};

}  // namespace distill_demo
