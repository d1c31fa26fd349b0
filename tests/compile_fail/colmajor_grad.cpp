// Must not compile: a column-major gradient buffer cannot be written in place.
#include <kdloss/forward_kl.hpp>
int main() {
  kdloss::RowMatrix<float> s(2, 3), t(2, 3);
  Eigen::MatrixXf g(2, 3);
  return static_cast<int>(kdloss::ForwardKL<float>()(s, t, g));
}
