// A downstream program: builds against kdloss::kdloss and checks a known value.
#include <cmath>
#include <cstdio>
#include <kdloss/kdloss.hpp>

int main() {
  kdloss::RowMatrix<float> s(1, 2), t(1, 2), g(1, 2);
  s << 0.0f, 0.0f;  // q = (1/2, 1/2)
  t << 0.0f, -1e30f;  // p = (1, 0)
  const float loss = kdloss::ForwardKL<float>()(s, t, g);  // KL(p||q) = log 2
  std::printf("ForwardKL = %.7f (log 2 = %.7f)\n", static_cast<double>(loss), std::log(2.0));
  return std::fabs(static_cast<double>(loss) - std::log(2.0)) < 1e-6 && std::fabs(g(0, 0) + 0.5f) < 1e-6f ? 0 : 1;
}
