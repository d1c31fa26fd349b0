// distill_demo: the student, a small neural language model trained by Adam, backpropagated by hand.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <kdloss/types.hpp>
#include <vector>

#include "language.hpp"

namespace distill_demo {

/// Sizes of the student.
struct StudentSpec {
  /// Vocabulary size V (the language's).
  int vocab = 4096;
  /// Embedding width d (per context token).
  int embed = 32;
  /// Hidden width H: the bottleneck that keeps the student from copying the teacher.
  int hidden = 96;
};

/// Adam (Kingma & Ba) hyper-parameters.
struct AdamSpec {
  float lr = 3e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

/// One parameter tensor with its gradient and Adam moments (row-major, biases are 1 x n).
struct Param {
  kdloss::RowMatrix<float> w, g, m, v;
  void init(Eigen::Index rows, Eigen::Index cols) {
    w.setZero(rows, cols);
    g.setZero(rows, cols);
    m.setZero(rows, cols);
    v.setZero(rows, cols);
  }
  /// One Adam step with bias correction (`t` counts from 1).
  void adam(const AdamSpec& a, int t) {
    const float c1 = 1.0f - std::pow(a.beta1, static_cast<float>(t));
    const float c2 = 1.0f - std::pow(a.beta2, static_cast<float>(t));
    const float step = a.lr * std::sqrt(c2) / c1;
    m.array() = a.beta1 * m.array() + (1.0f - a.beta1) * g.array();
    v.array() = a.beta2 * v.array() + (1.0f - a.beta2) * g.array().square();
    w.array() -= step * m.array() / (v.array().sqrt() + a.eps * std::sqrt(c2));
  }
};

/// A Bengio-style neural language model over the two previous tokens (a, b):
/// \f[ x = [E_a;\,E_b] \in \mathbb{R}^{2d},\quad h = \tanh(x W_1 + b_1) \in \mathbb{R}^H,\quad
///     z = h W_2 + b_2 \in \mathbb{R}^V, \f]
/// one row per context. `forward` keeps the activations, `backward` takes \f$\partial L/\partial z\f$
/// (what kdloss writes) and backpropagates it through the head, the hidden layer and the
/// embedding with Eigen matrix products; `step` applies Adam to every parameter.
class Student {
 public:
  Student(const StudentSpec& spec, std::uint64_t seed) : m_spec(spec) {
    const Eigen::Index v = spec.vocab, d = spec.embed, h = spec.hidden;
    m_e.init(v, d);
    m_w1.init(2 * d, h);
    m_b1.init(1, h);
    m_w2.init(h, v);
    m_b2.init(1, v);
    Rng rng(seed);
    auto fill = [&](kdloss::RowMatrix<float>& w, double scale) {
      for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(scale * rng.normal());
    };
    fill(m_e.w, 1.0);
    fill(m_w1.w, 1.0 / std::sqrt(2.0 * static_cast<double>(d)));
    fill(m_w2.w, 0.02);  // near-uniform student at initialisation
  }

  const StudentSpec& spec() const noexcept { return m_spec; }
  /// Every parameter (embedding, W1, b1, W2, b2), e.g. for a gradient check.
  std::vector<Param*> params() { return {&m_e, &m_w1, &m_b1, &m_w2, &m_b2}; }

  /// Logits of the contexts (a[i], b[i]) into `z` (resized to rows x V). Keeps the activations
  /// for `backward`.
  void forward(const Eigen::VectorXi& a, const Eigen::VectorXi& b, kdloss::RowMatrix<float>& z) {
    const Eigen::Index n = a.size(), d = m_spec.embed;
    m_a = a;
    m_b = b;
    m_x.resize(n, 2 * d);
    for (Eigen::Index i = 0; i < n; ++i) {
      m_x.row(i).head(d) = m_e.w.row(a[i]);
      m_x.row(i).tail(d) = m_e.w.row(b[i]);
    }
    m_h.noalias() = m_x * m_w1.w;
    m_h.rowwise() += m_b1.w.row(0);
    m_h.array() = m_h.array().tanh();
    z.noalias() = m_h * m_w2.w;
    z.rowwise() += m_b2.w.row(0);
  }

  /// Gradients of every parameter from \f$\partial L/\partial z\f$ of the last `forward`.
  void backward(const kdloss::RowMatrix<float>& dz) {
    const Eigen::Index d = m_spec.embed;
    m_w2.g.noalias() = m_h.transpose() * dz;
    m_b2.g = dz.colwise().sum();
    m_dh.noalias() = dz * m_w2.w.transpose();
    m_dh.array() *= 1.0f - m_h.array().square();  // tanh' = 1 - h^2
    m_w1.g.noalias() = m_x.transpose() * m_dh;
    m_b1.g = m_dh.colwise().sum();
    m_dx.noalias() = m_dh * m_w1.w.transpose();
    m_e.g.setZero();
    for (Eigen::Index i = 0; i < m_dx.rows(); ++i) {
      m_e.g.row(m_a[i]) += m_dx.row(i).head(d);
      m_e.g.row(m_b[i]) += m_dx.row(i).tail(d);
    }
  }

  /// One Adam step on every parameter.
  void step(const AdamSpec& adam) {
    ++m_t;
    for (Param* p : {&m_e, &m_w1, &m_b1, &m_w2, &m_b2}) p->adam(adam, m_t);
  }

 private:
  StudentSpec m_spec;
  Param m_e, m_w1, m_b1, m_w2, m_b2;
  int m_t = 0;
  Eigen::VectorXi m_a, m_b;
  kdloss::RowMatrix<float> m_x, m_h, m_dh, m_dx;
};

}  // namespace distill_demo
