// How each loss is built and what its double reference is: one Spec per loss, shared by the loss's
// own test file and by the per-ISA path comparisons.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <kdloss/kdloss.hpp>

#include "reference.hpp"

namespace kdtest::specs {

struct Fkl {
  static constexpr const char* name = "kdloss::ForwardKL";
  template <class T, class Arch = kdloss::simd::best_arch>
  static kdloss::ForwardKL<T, Arch> make(const kdloss::Options<T>& o) {
    return kdloss::ForwardKL<T, Arch>(o);
  }
  static ref::Row row(const double* s, const double* t, long v, double tau) {
    return ref::forward_kl(s, t, v, tau);
  }
};

struct Rkl {
  static constexpr const char* name = "kdloss::ReverseKL";
  template <class T, class Arch = kdloss::simd::best_arch>
  static kdloss::ReverseKL<T, Arch> make(const kdloss::Options<T>& o) {
    return kdloss::ReverseKL<T, Arch>(o);
  }
  static ref::Row row(const double* s, const double* t, long v, double tau) {
    return ref::reverse_kl(s, t, v, tau);
  }
};

}  // namespace kdtest::specs
