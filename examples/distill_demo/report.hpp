// distill_demo: the results table, the CSV of the curves and a hand-written SVG plot.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer.hpp"

namespace distill_demo {

/// One plotted metric.
struct MetricInfo {
  const char* column;  // CSV column
  const char* title;   // panel title
  double Metrics::*field;
  bool log_y;          // logarithmic y axis
  bool higher_is_better;
};

inline const std::vector<MetricInfo>& metric_list() {
  static const std::vector<MetricInfo> list = {
      {"kl_pq", "KL(p\u2016q), forward (nats)", &Metrics::kl_pq, true, false},
      {"kl_qp", "KL(q\u2016p), reverse (nats)", &Metrics::kl_qp, true, false},
      {"top1", "top-1 agreement with the teacher", &Metrics::top1, false, true},
      {"tv_head", "TV on the teacher's head (top 50% mass)", &Metrics::tv_head, false, false},
      {"tv_tail", "TV on the teacher's tail", &Metrics::tv_tail, false, false},
  };
  return list;
}

/// The evaluation closest to `fraction` of the budget (never step 0 when there is another).
inline const Metrics& at_fraction(const Curve& c, double fraction) {
  const double target = fraction * c.final().step;
  const Metrics* best = &c.points[std::min<std::size_t>(1, c.points.size() - 1)];
  for (const Metrics& m : c.points)
    if (m.step > 0 && std::abs(m.step - target) < std::abs(best->step - target)) best = &m;
  return *best;
}

/// The final table: one row per student, plus the common initial student. The last two columns
/// are the share of the initial head and tail error (TV) removed after 10 % of the budget: which
/// part of the teacher's distribution a divergence fits first.
inline std::string table(const std::vector<Curve>& curves) {
  std::ostringstream o;
  char line[256];
  std::snprintf(line, sizeof line, "%-22s %9s %9s %7s %9s %9s %10s %10s %7s\n", "divergence", "KL(p||q)",
                "KL(q||p)", "top-1", "TV head", "TV tail", "head@10%", "tail@10%", "time");
  o << line;
  auto row = [&](const std::string& name, const Metrics& m, const Metrics* init, const Metrics* early,
                 double seconds) {
    char e1[16] = "", e2[16] = "", t[16] = "";
    if (early && init) {
      std::snprintf(e1, sizeof e1, "%.0f%%", 100 * (1 - early->tv_head / init->tv_head));
      std::snprintf(e2, sizeof e2, "%.0f%%", 100 * (1 - early->tv_tail / init->tv_tail));
    }
    if (seconds >= 0) std::snprintf(t, sizeof t, "%.1fs", seconds);
    std::snprintf(line, sizeof line, "%-22s %9.4f %9.4f %6.1f%% %9.4f %9.4f %10s %10s %7s\n", name.c_str(),
                  m.kl_pq, m.kl_qp, 100 * m.top1, m.tv_head, m.tv_tail, e1, e2, t);
    o << line;
  };
  if (!curves.empty()) row("(initial student)", curves.front().initial(), nullptr, nullptr, -1);
  for (const Curve& c : curves) row(c.name, c.final(), &c.initial(), &at_fraction(c, 0.1), c.seconds);
  return o.str();
}

/// The curves as CSV: `step,divergence,name,train_loss,kl_pq,kl_qp,top1,tv_head,tv_tail`.
inline void write_csv(const std::vector<Curve>& curves, const std::string& path) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("distill_demo: cannot write " + path);
  f << "step,divergence,name,train_loss";
  for (const auto& mi : metric_list()) f << ',' << mi.column;
  f << '\n';
  char buf[64];
  for (const Curve& c : curves)
    for (const Metrics& m : c.points) {
      f << m.step << ',' << c.key << ",\"" << c.name << "\",";
      if (!std::isnan(m.train_loss)) {
        std::snprintf(buf, sizeof buf, "%.6g", m.train_loss);
        f << buf;
      }
      for (const auto& mi : metric_list()) {
        std::snprintf(buf, sizeof buf, ",%.6g", m.*(mi.field));
        f << buf;
      }
      f << '\n';
    }
  if (!f) throw std::runtime_error("distill_demo: error writing " + path);
}

namespace svg {

inline std::string esc(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '&') r += "&amp;";
    else if (c == '<') r += "&lt;";
    else if (c == '>') r += "&gt;";
    else if (c == '"') r += "&quot;";
    else r += c;
  }
  return r;
}

inline std::string num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", x);
  return b;
}

/// Tick label: as few digits as the tick spacing needs.
inline std::string tick_label(double x, double step) {
  char b[32];
  const int digits = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  std::snprintf(b, sizeof b, "%.*f", digits, x);
  return b;
}

/// "Nice" linear ticks (1, 2, 5 x 10^k) covering [lo, hi].
inline std::vector<double> nice_ticks(double lo, double hi, int target, double* step_out) {
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double i = std::ceil(lo / step - 1e-9); i * step <= hi + 1e-9 * step; i += 1)
    t.push_back(i == 0 ? 0.0 : i * step);  // never "-0"
  *step_out = step;
  return t;
}

/// Palette (Tableau 20 without its greys: the hard-label baseline alone is drawn dashed grey).
inline const char* colour(std::size_t i) {
  static const char* c[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                            "#e377c2", "#17becf", "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a",
                            "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d"};
  return c[i % 18];
}

}  // namespace svg

/// The curves of every metric, one panel per metric and one polyline per divergence, as a
/// standalone SVG (no dependency; any browser or `rsvg-convert` renders it).
inline std::string plot_svg(const std::vector<Curve>& curves, const std::string& subtitle) {
  using namespace svg;
  const auto& metrics = metric_list();
  const int cols = 3, pw = 430, ph = 300;  // panel size
  const int ml = 62, mr = 16, mt = 34, mb = 44;  // plot margins inside a panel
  const int top = 58;
  const int rows = static_cast<int>((metrics.size() + 1 + cols - 1) / cols);  // + the legend
  const int width = cols * pw, height = top + rows * ph + 6;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << width / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\">"
    << "kdloss distillation demo: one student per divergence, held-out contexts</text>\n";
  o << "<text x=\"" << width / 2 << "\" y=\"44\" text-anchor=\"middle\" font-size=\"12\" fill=\"#444\">" << esc(subtitle)
    << "</text>\n";
  int max_step = 1;
  for (const Curve& c : curves)
    for (const Metrics& m : c.points) max_step = std::max(max_step, m.step);
  for (std::size_t k = 0; k < metrics.size(); ++k) {
    const MetricInfo& mi = metrics[k];
    const int px = static_cast<int>(k % cols) * pw, py = top + static_cast<int>(k / cols) * ph;
    const int x0 = px + ml, x1 = px + pw - mr, y0 = py + mt, y1 = py + ph - mb;  // plot box
    double lo = INFINITY, hi = -INFINITY;
    for (const Curve& c : curves)
      for (const Metrics& m : c.points) {
        const double v = m.*(mi.field);
        if (std::isfinite(v) && (!mi.log_y || v > 0)) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
    if (!(lo <= hi)) lo = 0, hi = 1;
    auto fy = [&](double v) { return mi.log_y ? std::log10(v) : v; };
    double ylo, yhi;
    std::vector<double> yt;
    std::vector<std::string> ylab;
    if (mi.log_y) {
      // Decades, with 2 and 5 between them when the range is short.
      ylo = std::floor(std::log10(lo) * 4) / 4;
      yhi = std::ceil(std::log10(hi) * 4) / 4;
      if (yhi - ylo < 0.5) yhi = ylo + 0.5;
      for (int e = static_cast<int>(std::floor(ylo)); e <= static_cast<int>(std::ceil(yhi)); ++e)
        for (double m : {1.0, 2.0, 5.0}) {
          const double v = m * std::pow(10.0, e), lv = std::log10(v);
          if (lv < ylo - 1e-9 || lv > yhi + 1e-9) continue;
          if (yhi - ylo > 2.5 && m != 1.0) continue;
          yt.push_back(lv);
          ylab.push_back(tick_label(v, std::min(v, 1.0)));
        }
    } else {
      const double pad = 0.04 * (hi - lo + 1e-12);
      ylo = std::max(0.0, lo - pad);
      yhi = hi + pad;
      if (mi.higher_is_better && yhi > 1) yhi = 1;
      double st = 1;
      yt = nice_ticks(ylo, yhi, 5, &st);
      for (double v : yt) ylab.push_back(tick_label(v, st));
    }
    auto X = [&](double s) { return x0 + (x1 - x0) * s / max_step; };
    auto Y = [&](double v) { return y1 - (y1 - y0) * (fy(v) - ylo) / (yhi - ylo); };
    auto Yl = [&](double lv) { return y1 - (y1 - y0) * (lv - ylo) / (yhi - ylo); };
    o << "<g>\n<text x=\"" << (x0 + x1) / 2 << "\" y=\"" << py + 22
      << "\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">" << esc(mi.title)
      << (mi.log_y ? " (log scale)" : "") << (mi.higher_is_better ? " \u2191" : " \u2193") << "</text>\n";
    // Grid and y ticks.
    for (std::size_t t = 0; t < yt.size(); ++t) {
      const double y = Yl(yt[t]);
      o << "<line x1=\"" << x0 << "\" y1=\"" << num(y) << "\" x2=\"" << x1 << "\" y2=\"" << num(y)
        << "\" stroke=\"#e3e3e3\"/>\n";
      o << "<text x=\"" << x0 - 6 << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\" font-size=\"11\">"
        << ylab[t] << "</text>\n";
    }
    double xs = 1;
    for (double s : nice_ticks(0, max_step, 5, &xs)) {
      const double x = X(s);
      o << "<line x1=\"" << num(x) << "\" y1=\"" << y0 << "\" x2=\"" << num(x) << "\" y2=\"" << y1
        << "\" stroke=\"#f0f0f0\"/>\n";
      o << "<line x1=\"" << num(x) << "\" y1=\"" << y1 << "\" x2=\"" << num(x) << "\" y2=\"" << y1 + 5
        << "\" stroke=\"#333\"/>\n";
      o << "<text x=\"" << num(x) << "\" y=\"" << y1 + 18 << "\" text-anchor=\"middle\" font-size=\"11\">"
        << tick_label(s, xs) << "</text>\n";
    }
    o << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << x1 - x0 << "\" height=\"" << y1 - y0
      << "\" fill=\"none\" stroke=\"#333\"/>\n";
    o << "<text x=\"" << (x0 + x1) / 2 << "\" y=\"" << y1 + 36
      << "\" text-anchor=\"middle\" font-size=\"12\">optimizer step</text>\n";
    o << "<clipPath id=\"clip" << k << "\"><rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << x1 - x0
      << "\" height=\"" << y1 - y0 << "\"/></clipPath>\n";
    for (std::size_t c = 0; c < curves.size(); ++c) {
      const bool baseline = curves[c].key == "ce";
      o << "<polyline clip-path=\"url(#clip" << k << ")\" fill=\"none\" stroke=\""
        << (baseline ? "#7f7f7f" : colour(c)) << "\" stroke-width=\"1.8\""
        << (baseline ? " stroke-dasharray=\"6 4\"" : "") << " points=\"";
      for (const Metrics& m : curves[c].points) {
        const double v = m.*(mi.field);
        if (!std::isfinite(v) || (mi.log_y && v <= 0)) continue;
        o << num(X(m.step)) << ',' << num(Y(v)) << ' ';
      }
      o << "\"/>\n";
    }
    o << "</g>\n";
  }
  // Legend in the next free cell.
  {
    const std::size_t k = metrics.size();
    const int px = static_cast<int>(k % cols) * pw + 16, py = top + static_cast<int>(k / cols) * ph + 34;
    o << "<text x=\"" << px << "\" y=\"" << py << "\" font-size=\"14\" font-weight=\"bold\">students trained with</text>\n";
    // One column of up to 10 entries, then a second one beside it.
    const std::size_t per_column = 10;
    for (std::size_t c = 0; c < curves.size(); ++c) {
      const bool baseline = curves[c].key == "ce";
      const int x = px + static_cast<int>(c / per_column) * 196;
      const int y = py + 24 + static_cast<int>(c % per_column) * 24;
      o << "<line x1=\"" << x << "\" y1=\"" << y - 4 << "\" x2=\"" << x + 30 << "\" y2=\"" << y - 4 << "\" stroke=\""
        << (baseline ? "#7f7f7f" : colour(c)) << "\" stroke-width=\"3\"" << (baseline ? " stroke-dasharray=\"6 4\"" : "")
        << "/>\n";
      o << "<text x=\"" << x + 38 << "\" y=\"" << y << "\" font-size=\"13\">" << esc(curves[c].name) << "</text>\n";
    }
  }
  o << "</svg>\n";
  return o.str();
}

inline void write_text(const std::string& text, const std::string& path) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("distill_demo: cannot write " + path);
  f << text;
  if (!f) throw std::runtime_error("distill_demo: error writing " + path);
}

}  // namespace distill_demo
