// CrossEntropy (hard labels): value and value+gradient beside the naive Eigen version, ForwardKL
// and its own streaming rooflines (a copy of S to dS, by ordinary and by non-temporal stores).
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/cross_entropy.hpp>
#include <kdloss/forward_kl.hpp>

#include "bench_main.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

int main(int argc, char** argv) {
  using namespace kdbench;
  static const kdloss::ForwardKL<float> fkl;
  static const kdloss::CrossEntropy<float> ce({}, 0.1);
  static Eigen::VectorXi labels;
  static Eigen::Array<float, 1, Eigen::Dynamic> lq;
  auto labels_for = [](const Data& d) -> const Eigen::VectorXi& {
    if (labels.size() != d.S.rows()) {
      labels.resize(d.S.rows());
      for (Eigen::Index i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>((i * 7919) % d.S.cols());
    }
    return labels;
  };
  for (const char* mode : {"value", "grad"}) {
    add("ForwardKL", mode, "kdloss", [](Data& d, RowMatrix<float>* g) { return g ? fkl(d.S, d.T, *g) : fkl(d.S, d.T); },
        family_shapes());
    add("CrossEntropy", mode, "kdloss", [labels_for](Data& d, RowMatrix<float>* g) {
      const auto& y = labels_for(d);
      return g ? ce(d.S, y, *g) : ce(d.S, y);
    }, family_shapes());
    add("CrossEntropy", mode, "eigen_rows", [labels_for](Data& d, RowMatrix<float>* g) {
      const auto& y = labels_for(d);
      const float eps = 0.1f;
      const Eigen::Index n = d.S.rows(), v = d.S.cols();
      double total = 0;
      for (Eigen::Index i = 0; i < n; ++i) {
        lq = d.S.row(i).array();
        lq -= lq.maxCoeff();
        lq -= std::log(lq.exp().sum());
        total -= (1 - eps) * lq[y[i]] + eps / static_cast<float>(v) * lq.sum();
        if (g) {
          g->row(i).array() = (lq.exp() - eps / static_cast<float>(v)) / static_cast<float>(n);
          (*g)(i, y[i]) -= (1 - eps) / static_cast<float>(n);
        }
      }
      return static_cast<float>(total / static_cast<double>(n));
    }, family_shapes());
    // What any implementation must stream: read S (and, with the gradient, write dS), 8 bytes
    // per element with the gradient. CrossEntropy reads no teacher, so ForwardKL's roofline (12
    // bytes) is not its floor.
    add("CrossEntropy", mode, "roofline", [](Data& d, RowMatrix<float>* g) {
      if (!g) return d.S.sum();
      g->noalias() = d.S;
      return (*g)(0, 0);
    }, family_shapes());
  }
  // The same copy by non-temporal stores: the gradient's lines are not read before they are
  // written (4 bytes per element less traffic). With the roofline, the ceiling of the speed-up
  // over the Eigen version that issue 3's bar asks of CrossEntropy (see bench/RESULTS.md).
  add("CrossEntropy", "grad", "roofline_nt", [](Data& d, RowMatrix<float>* g) {
    const float* s = d.S.data();
    float* o = g->data();
    const Eigen::Index m = d.S.size();
    Eigen::Index j = 0;
#if defined(__SSE2__)
    for (; j + 4 <= m; j += 4) _mm_stream_ps(o + j, _mm_loadu_ps(s + j));  // Eigen's storage: 16-byte aligned
    _mm_sfence();
#endif
    for (; j < m; ++j) o[j] = s[j];
    return (*g)(0, 0);
  }, family_shapes());
  return run(argc, argv);
}
