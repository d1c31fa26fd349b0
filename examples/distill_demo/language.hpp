// distill_demo: the embedded teacher, a synthetic language whose next-token distribution is exact.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace distill_demo {

/// splitmix64 (Steele, Lea, Flood 2014): a small generator whose output is fully specified, so every
/// standard library and platform draws the same numbers from the same seed (std::normal_distribution
/// is implementation-defined; this is not).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : m_state(seed) {}
  /// The next 64 random bits.
  std::uint64_t next() {
    std::uint64_t z = (m_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform integer in [0, n).
  int below(int n) { return static_cast<int>(uniform() * n); }
  /// Standard normal (Box–Muller).
  double normal() {
    if (m_has_spare) {
      m_has_spare = false;
      return m_spare;
    }
    const double u1 = 1.0 - uniform(), u2 = uniform();  // u1 in (0, 1]
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    m_spare = r * std::sin(th);
    m_has_spare = true;
    return r * std::cos(th);
  }

 private:
  std::uint64_t m_state;
  double m_spare = 0;
  bool m_has_spare = false;
};

/// Derives an independent seed for a named purpose from the run's seed.
inline std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t purpose) {
  Rng r(seed ^ (purpose * 0xD1B54A32D192ED03ull));
  return r.next();
}

/// Shape of the synthetic language.
struct LanguageSpec {
  /// Vocabulary size V.
  int vocab = 4096;
  /// Exponent s of the Zipfian unigram \f$u_v \propto (v + 1)^{-s}\f$.
  double zipf = 1.1;
  /// Successors of each token in the bigram part (distinct tokens).
  int bigram_successors = 24;
  /// Successors of each token in the skip part (token two back).
  int skip_successors = 8;
  /// Log-normal spread of the successor weights (larger: a more peaked head).
  double spread = 1.5;
  /// Weight \f$\lambda\f$ of the bigram part against the skip part.
  double lambda = 0.6;
  /// Background mass \f$\epsilon\f$ spread over the whole vocabulary by the unigram.
  double epsilon = 0.02;
};

/// A sparse distribution over a few tokens: (token, probability) pairs, probabilities sum to 1.
using Sparse = std::vector<std::pair<int, double>>;

/// A second-order Markov language over V tokens whose next-token distribution is known exactly:
/// \f[ p(v \mid a, b) = (1-\epsilon)\big[\lambda\,B_b(v) + (1-\lambda)\,C_a(v)\big] + \epsilon\,u_v, \f]
/// where \f$(a, b)\f$ are the two previous tokens, \f$B_b\f$ (bigram part) and \f$C_a\f$ (skip
/// part) are sparse random distributions over a few successors drawn from the Zipfian unigram
/// \f$u\f$, with log-normal weights. So the marginal is close to Zipfian, each context has a peaked
/// head of a few tokens, and the \f$\epsilon\f$ background gives every token some mass.
///
/// The teacher's logits are these exact log-probabilities. Every logit is finite: with zeros in
/// the teacher (logit \f$-\infty\f$), KL(q‖p) of any softmax student would be \f$+\infty\f$ with
/// an unbounded gradient, which kdloss reports as an error, so the reverse-KL family could not be
/// trained; the background \f$\epsilon\f$ is part of the process, not a smoothing of the teacher.
class Language {
 public:
  Language(const LanguageSpec& spec, std::uint64_t seed) : m_spec(spec) {
    if (spec.vocab < 8) throw std::invalid_argument("distill_demo: the vocabulary needs at least 8 tokens");
    if (spec.bigram_successors < 1 || spec.skip_successors < 1 ||
        spec.bigram_successors > spec.vocab / 2 || spec.skip_successors > spec.vocab / 2)
      throw std::invalid_argument("distill_demo: successors per token must be in [1, V/2]");
    if (!(spec.epsilon > 0 && spec.epsilon < 1) || !(spec.lambda >= 0 && spec.lambda <= 1))
      throw std::invalid_argument("distill_demo: epsilon must be in (0, 1) and lambda in [0, 1]");
    const int v = spec.vocab;
    m_unigram.resize(static_cast<std::size_t>(v));
    double z = 0;
    for (int i = 0; i < v; ++i) z += m_unigram[static_cast<std::size_t>(i)] = std::pow(i + 1.0, -spec.zipf);
    m_cdf.resize(m_unigram.size());
    double c = 0;
    m_background.resize(v);
    for (int i = 0; i < v; ++i) {
      auto& u = m_unigram[static_cast<std::size_t>(i)];
      u /= z;
      m_cdf[static_cast<std::size_t>(i)] = c += u;
      m_background[i] = static_cast<float>(std::log(spec.epsilon * u));
    }
    Rng rng(derive_seed(seed, 1));
    m_bigram.resize(static_cast<std::size_t>(v));
    m_skip.resize(static_cast<std::size_t>(v));
    for (int i = 0; i < v; ++i) m_bigram[static_cast<std::size_t>(i)] = random_sparse(rng, spec.bigram_successors);
    for (int i = 0; i < v; ++i) m_skip[static_cast<std::size_t>(i)] = random_sparse(rng, spec.skip_successors);
  }

  const LanguageSpec& spec() const noexcept { return m_spec; }
  int vocab() const noexcept { return m_spec.vocab; }

  /// Exact log-probabilities \f$\log p(\cdot \mid a, b)\f$ written into `row` (V floats).
  void teacher_logits(int a, int b, float* row) const {
    const double e = m_spec.epsilon, lb = (1 - e) * m_spec.lambda, ls = (1 - e) * (1 - m_spec.lambda);
    std::copy(m_background.data(), m_background.data() + m_spec.vocab, row);
    const Sparse& bs = m_bigram[static_cast<std::size_t>(b)];
    const Sparse& cs = m_skip[static_cast<std::size_t>(a)];
    for (const auto& [tok, w] : bs) {
      double p = e * m_unigram[static_cast<std::size_t>(tok)] + lb * w;
      for (const auto& [tok2, w2] : cs)
        if (tok2 == tok) p += ls * w2;
      row[tok] = static_cast<float>(std::log(p));
    }
    for (const auto& [tok, w] : cs) {
      bool in_bigram = false;
      for (const auto& bw : bs) in_bigram = in_bigram || bw.first == tok;
      if (!in_bigram) row[tok] = static_cast<float>(std::log(e * m_unigram[static_cast<std::size_t>(tok)] + ls * w));
    }
  }

  /// Draws the next token after the context (a, b) from the exact distribution.
  int sample_next(int a, int b, Rng& rng) const {
    const double r = rng.uniform();
    const double e = m_spec.epsilon;
    if (r < e) return sample_unigram(rng);
    const bool bigram = (r - e) / (1 - e) < m_spec.lambda;
    const Sparse& s = bigram ? m_bigram[static_cast<std::size_t>(b)] : m_skip[static_cast<std::size_t>(a)];
    double x = rng.uniform();
    for (const auto& [tok, w] : s) {
      if (x < w) return tok;
      x -= w;
    }
    return s.back().first;
  }

  /// Draws a token from the Zipfian unigram.
  int sample_unigram(Rng& rng) const {
    const double x = rng.uniform();
    const auto it = std::upper_bound(m_cdf.begin(), m_cdf.end(), x);
    return static_cast<int>(std::min<std::ptrdiff_t>(it - m_cdf.begin(), m_spec.vocab - 1));
  }

 private:
  Sparse random_sparse(Rng& rng, int k) const {
    Sparse s;
    s.reserve(static_cast<std::size_t>(k));
    double z = 0;
    while (static_cast<int>(s.size()) < k) {
      const int tok = sample_unigram(rng);
      bool dup = false;
      for (const auto& tw : s) dup = dup || tw.first == tok;
      if (dup) continue;
      const double w = std::exp(m_spec.spread * rng.normal());
      s.emplace_back(tok, w);
      z += w;
    }
    for (auto& tw : s) tw.second /= z;
    return s;
  }

  LanguageSpec m_spec;
  std::vector<double> m_unigram, m_cdf;
  Eigen::VectorXf m_background;  // log(epsilon * u_v)
  std::vector<Sparse> m_bigram, m_skip;
};

/// B independent streams of the language, each holding its last two tokens: one training batch
/// is one step of every stream (contexts, then the sampled next tokens).
class Streams {
 public:
  /// \param burn_in steps run before the first context is used (to reach the stationary regime)
  Streams(const Language& lang, int count, std::uint64_t seed, int burn_in = 64)
      : m_lang(&lang), m_rng(seed), m_a(count), m_b(count) {
    for (int i = 0; i < count; ++i) {
      m_a[i] = lang.sample_unigram(m_rng);
      m_b[i] = lang.sample_unigram(m_rng);
    }
    for (int s = 0; s < burn_in; ++s) advance(nullptr);
  }
  Eigen::Index size() const noexcept { return m_a.size(); }
  /// Current contexts: two tokens back (a) and one token back (b).
  const Eigen::VectorXi& a() const noexcept { return m_a; }
  const Eigen::VectorXi& b() const noexcept { return m_b; }
  /// Samples every stream's next token (written to `next` when not null) and shifts the contexts.
  void advance(Eigen::VectorXi* next) {
    if (next) next->resize(m_a.size());
    for (Eigen::Index i = 0; i < m_a.size(); ++i) {
      const int y = m_lang->sample_next(m_a[i], m_b[i], m_rng);
      if (next) (*next)[i] = y;
      m_a[i] = m_b[i];
      m_b[i] = y;
    }
  }

 private:
  const Language* m_lang;
  Rng m_rng;
  Eigen::VectorXi m_a, m_b;
};

}  // namespace distill_demo
