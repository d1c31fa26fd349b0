// The divergence family on this binary's instruction set against the scalar path (the oracle),
// on random rows of odd sizes, masked entries, temperatures and the special rows of
// paths.hpp, float and double. (A translation unit of its own: the family's instantiations are half
// of the path tests' compile time.)
// SPDX-License-Identifier: Apache-2.0
#include "paths.hpp"

using kdtest::paths::compare_all_shapes;

TEMPLATE_TEST_CASE("Divergence family: SIMD path equals the scalar path", "[paths]", float, double) {
  using namespace kdtest::specs;
  compare_all_shapes<Js, TestType>();
  compare_all_shapes<Skl, TestType>();
  compare_all_shapes<Srkl, TestType>();
  compare_all_shapes<Tvd, TestType>();
  compare_all_shapes<Hellinger, TestType>();
  compare_all_shapes<Pearson, TestType>();
  compare_all_shapes<Neyman, TestType>();
  compare_all_shapes<Jeffreys, TestType>();
  compare_all_shapes<Amari03, TestType>();
  compare_all_shapes<Ab, TestType>();
  compare_all_shapes<AbNeg, TestType>();
  compare_all_shapes<AbBeta0, TestType>();
  compare_all_shapes<AbAlpha0, TestType>();
  compare_all_shapes<AbSum0, TestType>();
  compare_all_shapes<AbZero, TestType>();
}
