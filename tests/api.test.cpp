// Tests of the shared API pieces: Options, Weights, mask_from_labels, the ISA namespace.
// SPDX-License-Identifier: Apache-2.0
#include <kdloss/kdloss.hpp>

#include "support/contract.hpp"

TEST_CASE("Options is an aggregate with the documented defaults", "[api]") {
  const kdloss::Options<float> o;
  CHECK(o.temperature == 1.0f);
  CHECK_FALSE(o.scale_by_t2);
  CHECK(o.reduction == kdloss::Reduction::BatchMean);
  CHECK(o.denominator == 0.0f);
  CHECK(o.threads == 1);
  const kdloss::Options<double> t{2.0, true, kdloss::Reduction::Sum};
  CHECK(t.temperature == 2.0);
  const kdloss::ForwardKL<float> f({3.0f});
  CHECK(f.options().temperature == 3.0f);
  CHECK(std::string(kdloss::to_string(kdloss::Reduction::None)) == "None");
}

TEST_CASE("set_options validates like the constructor", "[api]") {
  kdloss::ForwardKL<float> f;
  kdloss::Options<float> o;
  o.temperature = -1.0f;
  CHECK_THROWS_AS(f.set_options(o), std::invalid_argument);
  CHECK(f.options().temperature == 1.0f);
  o.temperature = 4.0f;
  f.set_options(o);
  CHECK(f.options().temperature == 4.0f);
}

TEST_CASE("Weights view any vector without copying; matrices do not convert", "[api]") {
  kdloss::Vector<float> v(3);
  v << 1.0f, 0.0f, 2.0f;
  const kdloss::Weights<float> w(v);
  CHECK(w.has_value());
  CHECK(w.size() == 3);
  CHECK(w[2] == 2.0f);
  const kdloss::Weights<float> none;
  CHECK_FALSE(none.has_value());
  CHECK(none[5] == 1.0f);
  kdloss::RowMatrix<float> m(4, 3);
  m.setZero();
  m.col(1) << 1, 2, 3, 4;
  const kdloss::Weights<float> col(m.col(1));  // strided view
  CHECK(col[3] == 4.0f);
  static_assert(!std::is_convertible<kdloss::RowMatrix<float>, kdloss::Weights<float>>::value,
                "a gradient buffer must never bind to the weights parameter");
  static_assert(std::is_convertible<kdloss::Vector<float>, kdloss::Weights<float>>::value, "");
}

TEST_CASE("mask_from_labels", "[api]") {
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> labels(4);
  labels << 5, -100, 0, 7;
  const kdloss::Vector<double> w = kdloss::mask_from_labels<double>(labels);
  CHECK(w == (kdloss::Vector<double>(4) << 1, 0, 1, 1).finished());
  kdloss::Vector<float> out(4);
  kdloss::mask_from_labels<float>(labels, out, 7);
  CHECK(out == (kdloss::Vector<float>(4) << 1, 1, 1, 0).finished());
  kdloss::Vector<float> short_out(3);
  CHECK_THROWS_AS(kdloss::mask_from_labels<float>(labels, short_out), std::invalid_argument);
}
