// Must not compile: a column-major matrix would be copied (N x V) to become row-major.
#include <kdloss/forward_kl.hpp>
int main() {
  Eigen::MatrixXf s(2, 3), t(2, 3);
  return static_cast<int>(kdloss::ForwardKL<float>()(s, t));
}
