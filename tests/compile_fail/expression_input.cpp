// Must not compile: an expression would be evaluated into an N x V temporary.
#include <kdloss/forward_kl.hpp>
int main() {
  kdloss::RowMatrix<float> s(2, 3), t(2, 3);
  return static_cast<int>(kdloss::ForwardKL<float>()(s / 2.0f, t));
}
