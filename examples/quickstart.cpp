// kdloss quickstart: one distillation step on random logits with ForwardKL and ReverseKL.
// Prints each loss, the norm of its gradient with respect to the student logits, and checks the
// gradient rows sum to zero (softmax gradients do).
// SPDX-License-Identifier: Apache-2.0
#include <cstdio>
#include <kdloss/kdloss.hpp>
#include <random>

int main() {
  const Eigen::Index tokens = 8, vocab = 32000;
  std::mt19937 gen(2026);
  std::normal_distribution<float> noise(0.0f, 2.0f);

  // A teacher, and a student that roughly agrees with it (student = teacher + noise).
  kdloss::RowMatrix<float> teacher(tokens, vocab), student(tokens, vocab), grad(tokens, vocab);
  for (Eigen::Index i = 0; i < tokens; ++i)
    for (Eigen::Index v = 0; v < vocab; ++v) {
      teacher(i, v) = noise(gen);
      student(i, v) = teacher(i, v) + 0.5f * noise(gen);
    }
  // The last token is padding: label -100 masks it out of the loss and its gradient.
  Eigen::VectorXi labels = Eigen::VectorXi::Constant(tokens, 1);
  labels[tokens - 1] = -100;
  const kdloss::Vector<float> weights = kdloss::mask_from_labels<float>(labels);

  kdloss::Options<float> opt;
  opt.temperature = 2.0f;  // p = softmax(t/2), q = softmax(s/2)
  const kdloss::ForwardKL<float> fkl(opt);
  const kdloss::ReverseKL<float> rkl(opt);

  std::printf("kdloss quickstart: %ld tokens x %ld vocabulary, temperature %.1f, SIMD path %s\n",
              static_cast<long>(tokens), static_cast<long>(vocab), static_cast<double>(opt.temperature),
              kdloss::simd::best_arch::name);
  std::printf("%-10s %14s %14s %18s\n", "loss", "value", "|dL/ds|", "max |row sum|");
  for (int which = 0; which < 2; ++which) {
    const float loss = which == 0 ? fkl(student, teacher, grad, weights) : rkl(student, teacher, grad, weights);
    const float row_sum = grad.rowwise().sum().cwiseAbs().maxCoeff();
    std::printf("%-10s %14.6f %14.6e %18.3e\n", which == 0 ? "ForwardKL" : "ReverseKL",
                static_cast<double>(loss), static_cast<double>(grad.norm()), static_cast<double>(row_sum));
    if (grad.row(tokens - 1).cwiseAbs().maxCoeff() != 0.0f) {
      std::printf("error: the masked token has a nonzero gradient\n");
      return 1;
    }
  }
  // One step of gradient descent on the student logits lowers the forward KL.
  const float before = fkl(student, teacher, grad, weights);
  student -= 1000.0f * grad;
  const float after = fkl(student, teacher, weights);
  std::printf("ForwardKL after one gradient step of size 1000 on the logits: %.6f -> %.6f\n",
              static_cast<double>(before), static_cast<double>(after));
  return after < before ? 0 : 1;
}
