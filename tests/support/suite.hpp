// The standard battery of test cases for a pair loss described by a Spec (see contract.hpp).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "contract.hpp"
#include "specs.hpp"

/// Every case of the contract.
#define KDTEST_PAIR_LOSS_SUITE(Spec, Title, Tag)                                                  \
  KDTEST_PAIR_LOSS_SUITE_NO_FD(Spec, Title, Tag)                                                  \
  TEST_CASE(Title " gradient equals central finite differences", Tag) {                          \
    kdtest::check_finite_differences_sweep<Spec>(kdtest::seed(200));                              \
  }

/// Every case but the finite differences of the loss itself, for a loss whose gradient holds part
/// of it fixed (AdaptiveKL's weights, TAID's target): its test file checks that gradient itself.
#define KDTEST_PAIR_LOSS_SUITE_NO_FD(Spec, Title, Tag)                                            \
  TEMPLATE_TEST_CASE(Title " matches the double reference", Tag, float, double) {                 \
    kdtest::check_reference_sweep<Spec, TestType>(kdtest::seed(100));                             \
  }                                                                                               \
  TEMPLATE_TEST_CASE(Title " invariants", Tag, float, double) {                                   \
    for (const long v : {1L, 3L, 17L, 1271L}) kdtest::check_invariants<Spec, TestType>(3, v, kdtest::seed(300)); \
  }                                                                                               \
  TEMPLATE_TEST_CASE(Title " options and reductions and weights and accumulate", Tag, float, double) { \
    kdtest::check_options_and_reductions<Spec, TestType>(7, 301, kdtest::seed(400));              \
    kdtest::check_masking<Spec, TestType>(37, kdtest::seed(401));                                 \
  }                                                                                               \
  TEMPLATE_TEST_CASE(Title " layouts", Tag, float, double) {                                      \
    kdtest::check_layouts<Spec, TestType>(5, 1271, kdtest::seed(500));                            \
    kdtest::check_layouts<Spec, TestType>(1, 3, kdtest::seed(501));                               \
  }                                                                                               \
  TEMPLATE_TEST_CASE(Title " rejects bad input", Tag, float, double) {                            \
    kdtest::check_errors<Spec, TestType>();                                                       \
  }                                                                                               \
  TEMPLATE_TEST_CASE(Title " allocates nothing", Tag, float, double) {                            \
    kdtest::check_no_allocation<Spec, TestType>(9, 4099);                                         \
  }                                                                                               \
  TEMPLATE_TEST_CASE(Title " with -inf logits and deep underflow", Tag, float, double) {          \
    kdtest::check_masked_entries<Spec, TestType>(kdtest::seed(600));                              \
    kdtest::check_deep_underflow<Spec, TestType>(kdtest::seed(601));                              \
  }
