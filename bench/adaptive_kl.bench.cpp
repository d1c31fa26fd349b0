// AdaptiveKL: value and value+gradient beside ForwardKL and a row-at-a-time Eigen version that
// sorts each row as the reference does, on three teachers: the default random logits
// (uniform in [-8, 8): a head of ~1500 tokens at V = 32000, cut by the exact selection), a flat
// (high-entropy) teacher (logits x 0.01: a head of half the vocabulary) and a peaked teacher (one
// logit 25 above the rest: a head of one token, read from the candidates).
// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <map>
#include <numeric>
#include <kdloss/adaptive_kl.hpp>
#include <kdloss/forward_kl.hpp>

#include "bench_main.hpp"

namespace {
using kdbench::Data;
using kdbench::RowMatrix;

enum class Teacher { Default, Flat, Peaked };

/// The teacher of a kind for the current shape (cached; built from the shared data).
const RowMatrix<float>& teacher(Data& d, Teacher kind) {
  if (kind == Teacher::Default) return d.T;
  static std::map<std::pair<const float*, int>, RowMatrix<float>> cache;
  const auto key = std::make_pair(d.T.data(), static_cast<int>(kind));
  auto it = cache.find(key);
  if (it == cache.end()) {
    cache.clear();  // one shape at a time
    RowMatrix<float> t = d.T;
    if (kind == Teacher::Flat) t *= 0.01f;
    if (kind == Teacher::Peaked)
      for (Eigen::Index i = 0; i < t.rows(); ++i) t(i, (i * 7919) % t.cols()) += 25.0f;
    it = cache.emplace(key, std::move(t)).first;
  }
  return it->second;
}

/// AKL as a performance-aware user writes it with Eigen: one row at a time, the row's teacher
/// probabilities sorted (std::sort of an index vector, as torch.sort in the reference), then the
/// two KLs and the mixed gradient with array expressions.
struct NaiveAkl {
  using A = Eigen::Array<float, 1, Eigen::Dynamic>;
  A lp, lq, p, q;
  std::vector<Eigen::Index> order;
  float operator()(const RowMatrix<float>& S, const RowMatrix<float>& T, RowMatrix<float>* grad, double mu) {
    const Eigen::Index n = S.rows(), v = S.cols();
    double total = 0;
    order.resize(static_cast<size_t>(v));
    for (Eigen::Index i = 0; i < n; ++i) {
      lq = S.row(i).array() - S.row(i).maxCoeff();
      lp = T.row(i).array() - T.row(i).maxCoeff();
      lq -= std::log(lq.exp().sum());
      lp -= std::log(lp.exp().sum());
      p = lp.exp();
      q = lq.exp();
      std::iota(order.begin(), order.end(), Eigen::Index{0});
      std::stable_sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) { return p[a] > p[b]; });
      double c = 0, gh = 0, gt = 0;
      for (size_t k = 0; k < order.size(); ++k) {
        const Eigen::Index j = order[k];
        c += static_cast<double>(p[j]);
        (k == 0 || c <= mu ? gh : gt) += std::fabs(static_cast<double>(p[j] - q[j]));
      }
      const float wh = gh + gt > 0 ? static_cast<float>(gh / (gh + gt)) : 0.5f, wt = 1 - wh;
      const float fkl = (p * (lp - lq)).sum(), rkl = (q * (lq - lp)).sum();
      total += static_cast<double>(wh * fkl + wt * rkl);
      if (grad) grad->row(i).array() = (wh * (q - p) + wt * q * (lq - lp - rkl)) / static_cast<float>(n);
    }
    return static_cast<float>(total / static_cast<double>(n));
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::AdaptiveKL<float> akl;
  static NaiveAkl naive_akl;
  akl.reserve(256, 128256);
  for (const char* mode : {"value", "grad"}) {
    for (const auto& [name, kind] : {std::make_pair("ForwardKL", Teacher::Default),
                                     std::make_pair("ForwardKL-flat", Teacher::Flat),
                                     std::make_pair("ForwardKL-peaked", Teacher::Peaked)}) {
      const Teacher k = kind;
      add(name, mode, "kdloss", [k](Data& d, RowMatrix<float>* g) {
        return g ? fkl(d.S, teacher(d, k), *g) : fkl(d.S, teacher(d, k));
      }, family_shapes());
    }
    for (const auto& [name, kind] : {std::make_pair("AdaptiveKL", Teacher::Default),
                                     std::make_pair("AdaptiveKL-flat", Teacher::Flat),
                                     std::make_pair("AdaptiveKL-peaked", Teacher::Peaked)}) {
      const Teacher k = kind;
      add(name, mode, "kdloss", [k](Data& d, RowMatrix<float>* g) {
        return g ? akl(d.S, teacher(d, k), *g) : akl(d.S, teacher(d, k));
      }, family_shapes());
      add(name, mode, "eigen_rows", [k](Data& d, RowMatrix<float>* g) {
        return naive_akl(d.S, teacher(d, k), g, 0.5);
      }, family_shapes());
    }
  }
  return run(argc, argv);
}
