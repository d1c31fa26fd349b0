// kdloss distillation demo: one small neural student per divergence, distilled from a teacher whose
// next-token distribution is known exactly, measured on held-out contexts. The README's main job.
// SPDX-License-Identifier: Apache-2.0
//
//   distill_demo [--steps N] [--vocab V] [--divergences fkl,rkl,...] [--threads N] [--seed S]
//                [--out DIR] [--csv FILE] [--svg FILE] ...        (--help lists every flag)
//
// Writes the final table to stdout, the curves to DIR/curves.csv and a plot to DIR/curves.svg
// (DIR = ./distill_demo_out by default).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "distill_demo/report.hpp"
#include "distill_demo/trainer.hpp"

namespace {

using distill_demo::Config;
using distill_demo::Divergence;

void usage(const Config& c) {
  std::printf(
      "kdloss distillation demo: one student per divergence, the same budget, measured on held-out\n"
      "contexts against a teacher whose next-token distribution is exact (see examples/distill_demo/).\n\n"
      "usage: distill_demo [flags]\n"
      "  --steps N          optimizer steps per student (default %d)\n"
      "  --vocab V          vocabulary size (default %d)\n"
      "  --divergences L    comma-separated keys, or 'all' (default all; see --list)\n"
      "  --threads N        students trained at the same time, one thread each (default: the\n"
      "                     number of CPUs). Each student runs single-threaded: kdloss's\n"
      "                     Options::threads stays 1 (rows in parallel needs -fopenmp, which the\n"
      "                     demo is not built with) and Eigen's products are single-threaded.\n"
      "                     The results do not depend on this flag.\n"
      "  --seed S           seed of the language, the student and the data (default %llu)\n"
      "  --batch B          contexts per step (default %d)\n"
      "  --embed D          student embedding width per context token (default %d)\n"
      "  --hidden H         student hidden width (default %d)\n"
      "  --lr X             Adam learning rate (default %g)\n"
      "  --eval-every N     evaluate every N steps (default %d)\n"
      "  --eval-contexts M  held-out contexts (default %d)\n"
      "  --out DIR          output folder (default ./distill_demo_out)\n"
      "  --csv FILE         the curves as CSV (default DIR/curves.csv)\n"
      "  --svg FILE         the curves as an SVG plot (default DIR/curves.svg)\n"
      "  --list             list the divergences and exit\n"
      "  --help             this text\n",
      c.steps, c.language.vocab, static_cast<unsigned long long>(c.seed), c.batch, c.student.embed,
      c.student.hidden, static_cast<double>(c.adam.lr), c.eval_every, c.eval_contexts);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "distill_demo: %s (try --help)\n", msg.c_str());
  std::exit(2);
}

long long to_int(const std::string& flag, const char* s) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0') die(flag + " needs an integer, got '" + s + "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  const unsigned cpus = std::thread::hardware_concurrency();
  cfg.threads = cpus > 0 ? static_cast<int>(cpus) : 1;
  std::string out_dir = "distill_demo_out", csv, svg, which = "all";
  const std::vector<Divergence> all = distill_demo::registry();
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) die(f + " needs a value");
      return argv[++i];
    };
    auto positive = [&]() -> int {
      const long long v = to_int(f, value());
      if (v < 1 || v > 1000000000) die(f + " must be between 1 and 1e9");
      return static_cast<int>(v);
    };
    if (f == "--help" || f == "-h") {
      usage(cfg);
      return 0;
    } else if (f == "--list") {
      for (const auto& d : all) std::printf("%-6s %s\n", d.key.c_str(), d.name.c_str());
      return 0;
    } else if (f == "--steps") cfg.steps = positive();
    else if (f == "--vocab") cfg.language.vocab = positive();
    else if (f == "--divergences") which = value();
    else if (f == "--threads") cfg.threads = positive();
    else if (f == "--seed") cfg.seed = static_cast<std::uint64_t>(to_int(f, value()));
    else if (f == "--batch") cfg.batch = positive();
    else if (f == "--embed") cfg.student.embed = positive();
    else if (f == "--hidden") cfg.student.hidden = positive();
    else if (f == "--lr") cfg.adam.lr = std::strtof(value(), nullptr);
    else if (f == "--eval-every") cfg.eval_every = positive();
    else if (f == "--eval-contexts") cfg.eval_contexts = positive();
    else if (f == "--out") out_dir = value();
    else if (f == "--csv") csv = value();
    else if (f == "--svg") svg = value();
    else die("unknown flag " + f);
  }
  if (!(cfg.adam.lr > 0)) die("--lr must be > 0");
  // Small vocabularies keep the language sparse: at most V/4 bigram and V/8 skip successors.
  cfg.language.bigram_successors = std::min(cfg.language.bigram_successors, std::max(1, cfg.language.vocab / 4));
  cfg.language.skip_successors = std::min(cfg.language.skip_successors, std::max(1, cfg.language.vocab / 8));
  std::vector<Divergence> chosen;
  if (which == "all") chosen = all;
  else {
    std::size_t start = 0;
    while (start <= which.size()) {
      const std::size_t comma = std::min(which.find(',', start), which.size());
      const std::string key = which.substr(start, comma - start);
      bool found = false;
      for (const auto& d : all)
        if (d.key == key) {
          chosen.push_back(d);
          found = true;
        }
      if (!found) die("unknown divergence '" + key + "' (see --list)");
      start = comma + 1;
    }
  }
  if (csv.empty()) csv = (std::filesystem::path(out_dir) / "curves.csv").string();
  if (svg.empty()) svg = (std::filesystem::path(out_dir) / "curves.svg").string();

  try {
    const auto t0 = std::chrono::steady_clock::now();
    const distill_demo::Experiment exp(cfg);
    const auto& L = cfg.language;
    std::printf("kdloss distillation demo (SIMD path %s)\n", kdloss::simd::best_arch::name);
    std::printf("teacher: exact 2nd-order Markov language, V = %d, Zipf s = %.2g, bigram %d + skip %d "
                "successors per token (lambda %.2g), background epsilon %.2g\n",
                L.vocab, L.zipf, L.bigram_successors, L.skip_successors, L.lambda, L.epsilon);
    std::printf("student: embedding 2x%d -> tanh hidden %d -> head %d, Adam lr %g; %d steps x %d contexts\n",
                cfg.student.embed, cfg.student.hidden, L.vocab, static_cast<double>(cfg.adam.lr), cfg.steps,
                cfg.batch);
    std::printf("held-out: %d contexts, teacher head = top tokens up to %.0f%% mass (%.1f tokens on average)\n",
                cfg.eval_contexts, 100 * cfg.head_mass, exp.eval_set().mean_head_size());
    std::printf("training %zu students on %d thread(s)...\n", chosen.size(), std::min<int>(cfg.threads, static_cast<int>(chosen.size())));
    std::fflush(stdout);

    const bool tty = isatty(fileno(stderr)) != 0;
    int last_decile = -1;
    auto tick = [&](const std::vector<int>& done) {
      long long sum = 0;
      for (int d : done) sum += d;
      const long long total = static_cast<long long>(cfg.steps) * static_cast<long long>(done.size());
      const double frac = total > 0 ? static_cast<double>(sum) / static_cast<double>(total) : 1.0;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int decile = static_cast<int>(frac * 10);
      if (!tty && decile == last_decile) return;  // a log file gets one line per 10 %
      last_decile = decile;
      std::string line;
      char buf[64];
      std::snprintf(buf, sizeof buf, "[%3.0f%%] %5.1fs ", 100 * frac, secs);
      line += buf;
      for (std::size_t j = 0; j < done.size(); ++j) {
        std::snprintf(buf, sizeof buf, " %s %d", chosen[j].key.c_str(), done[j]);
        line += buf;
      }
      std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", line.c_str());
      std::fflush(stderr);
    };
    const std::vector<distill_demo::Curve> curves = exp.run(chosen, tick);
    if (tty) std::fprintf(stderr, "\n");

    std::printf("\nafter %d steps, on %d held-out contexts (KL in nats; TV head/tail: total variation restricted\n"
                "to the teacher's head and tail, they sum to TV(p, q); head@10%%/tail@10%%: share of the initial\n"
                "head/tail error removed after 10%% of the steps, i.e. which part a divergence fits first)\n\n%s",
                cfg.steps, cfg.eval_contexts, distill_demo::table(curves).c_str());
    std::filesystem::path csv_dir = std::filesystem::path(csv).parent_path(),
                          svg_dir = std::filesystem::path(svg).parent_path();
    if (!csv_dir.empty()) std::filesystem::create_directories(csv_dir);
    if (!svg_dir.empty()) std::filesystem::create_directories(svg_dir);
    distill_demo::write_csv(curves, csv);
    char subtitle[256];
    std::snprintf(subtitle, sizeof subtitle,
                  "teacher: exact Markov language, V = %d; student: 2x%d embedding, %d tanh hidden; Adam %g; "
                  "batch %d; seed %llu; %d held-out contexts",
                  L.vocab, cfg.student.embed, cfg.student.hidden, static_cast<double>(cfg.adam.lr), cfg.batch,
                  static_cast<unsigned long long>(cfg.seed), cfg.eval_contexts);
    distill_demo::write_text(distill_demo::plot_svg(curves, subtitle), svg);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("\ncurves: %s\nplot:   %s\nwall time %.1f s\n", std::filesystem::absolute(csv).string().c_str(),
                std::filesystem::absolute(svg).string().c_str(), secs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distill_demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
