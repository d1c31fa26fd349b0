// The usage example of README.md, compiled as part of the build so it cannot rot.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/kdloss.hpp>

int main() {
  const Eigen::Index N = 4, V = 1000;                      // tokens x vocabulary
  kdloss::RowMatrix<float> S = kdloss::RowMatrix<float>::Random(N, V);  // student logits
  kdloss::RowMatrix<float> T = kdloss::RowMatrix<float>::Random(N, V);  // teacher logits
  kdloss::RowMatrix<float> dS(N, V);                       // gradient buffer, caller-owned

  kdloss::ForwardKL<float> kd({/*temperature*/ 2.0f});     // KL(p||q), p = softmax(T/2)
  float loss = kd(S, T, dS);                               // value; dS = dL/dS

  float* buffer = S.data();                                // any trainer's buffer: zero-copy
  Eigen::Map<const kdloss::RowMatrix<float>> view(buffer, N, V);
  loss += kdloss::ReverseKL<float>()(view, T);             // value only: no gradient pass
  return loss > 0 ? 0 : 1;
}
