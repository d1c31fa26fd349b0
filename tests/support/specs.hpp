// How each loss is built and what its double reference is: one Spec per loss, shared by the loss's
// own test file and by the per-ISA path comparisons.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <kdloss/kdloss.hpp>

#include "reference.hpp"
#include "reference_family.hpp"
#include "reference_adaptive.hpp"

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

/// A generator-built loss with a reference entry function: Name, the library generator, how to
/// build it, and the reference.
#define KDTEST_FAMILY_SPEC(Spec, Name, Make, RefEntry)                                      \
  struct Spec {                                                                             \
    static constexpr const char* name = Name;                                               \
    template <class T, class Arch = kdloss::simd::best_arch>                                \
    static auto make(const kdloss::Options<T>& o) {                                         \
      return Make;                                                                          \
    }                                                                                       \
    static ref::Row row(const double* s, const double* t, long v, double tau) {             \
      return ref::f_divergence(s, t, v, tau, RefEntry);                                     \
    }                                                                                       \
  };

KDTEST_FAMILY_SPEC(Js, "kdloss::JensenShannon", (kdloss::JensenShannon<T, Arch>(o)), ref::js(0.5))
KDTEST_FAMILY_SPEC(Js01, "kdloss::JensenShannon", (kdloss::JensenShannon<T, Arch>(o, 0.1)), ref::js(0.1))
KDTEST_FAMILY_SPEC(Skl, "kdloss::SkewKL", (kdloss::SkewKL<T, Arch>(o)), ref::skew_kl(0.1))
KDTEST_FAMILY_SPEC(Srkl, "kdloss::SkewReverseKL", (kdloss::SkewReverseKL<T, Arch>(o)), ref::skew_rkl(0.1))
// Weights near the ends, where the mixture is mostly one side: m = (1 - a) p + a q with a small.
KDTEST_FAMILY_SPEC(SklNearOne, "kdloss::SkewKL", (kdloss::SkewKL<T, Arch>(o, 0.99999)), ref::skew_kl(0.99999))
KDTEST_FAMILY_SPEC(SrklSmall, "kdloss::SkewReverseKL", (kdloss::SkewReverseKL<T, Arch>(o, 1e-5)), ref::skew_rkl(1e-5))
KDTEST_FAMILY_SPEC(Tvd, "kdloss::TotalVariation", (kdloss::TotalVariation<T, Arch>(o)), ref::tvd)
KDTEST_FAMILY_SPEC(Hellinger, "kdloss::FDivergence<SquaredHellinger>",
                   (kdloss::FDivergence<kdloss::generators::SquaredHellinger, T, Arch>(o)), ref::hellinger)
KDTEST_FAMILY_SPEC(Pearson, "kdloss::FDivergence<PearsonChi2>",
                   (kdloss::FDivergence<kdloss::generators::PearsonChi2, T, Arch>(o)), ref::pearson)
KDTEST_FAMILY_SPEC(Neyman, "kdloss::FDivergence<NeymanChi2>",
                   (kdloss::FDivergence<kdloss::generators::NeymanChi2, T, Arch>(o)), ref::neyman)
KDTEST_FAMILY_SPEC(Jeffreys, "kdloss::FDivergence<Jeffreys>",
                   (kdloss::FDivergence<kdloss::generators::Jeffreys, T, Arch>(o)), ref::jeffreys)
KDTEST_FAMILY_SPEC(Amari03, "kdloss::FDivergence<Amari>",
                   (kdloss::FDivergence<kdloss::generators::Amari, T, Arch>(o, kdloss::generators::Amari(0.3))),
                   ref::alpha_beta(0.3, 0.7))
// Outside (0, 1): the general formula at lambda = 1, not the centre's shortcut.
KDTEST_FAMILY_SPEC(Amari15, "kdloss::FDivergence<Amari>",
                   (kdloss::FDivergence<kdloss::generators::Amari, T, Arch>(o, kdloss::generators::Amari(1.5))),
                   ref::alpha_beta(1.5, -0.5))
KDTEST_FAMILY_SPEC(Ab, "kdloss::AlphaBeta", (kdloss::AlphaBeta<T, Arch>(o, 0.2, 0.7)), ref::alpha_beta(0.2, 0.7))
KDTEST_FAMILY_SPEC(AbNeg, "kdloss::AlphaBeta", (kdloss::AlphaBeta<T, Arch>(o, 1.5, -0.4)), ref::alpha_beta(1.5, -0.4))
KDTEST_FAMILY_SPEC(AbBeta0, "kdloss::AlphaBeta", (kdloss::AlphaBeta<T, Arch>(o, 0.6, 0.0)), ref::alpha_beta(0.6, 0.0))
KDTEST_FAMILY_SPEC(AbAlpha0, "kdloss::AlphaBeta", (kdloss::AlphaBeta<T, Arch>(o, 0.0, 0.8)), ref::alpha_beta(0.0, 0.8))
KDTEST_FAMILY_SPEC(AbSum0, "kdloss::AlphaBeta", (kdloss::AlphaBeta<T, Arch>(o, 0.5, -0.5)), ref::alpha_beta(0.5, -0.5))
KDTEST_FAMILY_SPEC(AbZero, "kdloss::AlphaBeta", (kdloss::AlphaBeta<T, Arch>(o, 0.0, 0.0)), ref::alpha_beta(0.0, 0.0))

/// AdaptiveKL at mu (x 1000, so the spec name is a type).
template <int MuMilli>
struct AklMu {
  static constexpr const char* name = "kdloss::AdaptiveKL";
  static constexpr double mu = MuMilli / 1000.0;
  template <class T, class Arch = kdloss::simd::best_arch>
  static kdloss::AdaptiveKL<T, Arch> make(const kdloss::Options<T>& o) {
    return kdloss::AdaptiveKL<T, Arch>(o, mu);
  }
  static ref::Row row(const double* s, const double* t, long v, double tau) {
    return ref::adaptive_kl(s, t, v, tau, mu);
  }
};
using Akl = AklMu<500>;

/// Taid with its interpolation weight fixed at lambda (x 1000) through the schedule's t_start.
template <int LambdaMilli>
struct TaidAt {
  static constexpr const char* name = "kdloss::Taid";
  static constexpr double lambda = LambdaMilli / 1000.0;
  template <class T, class Arch = kdloss::simd::best_arch>
  static kdloss::Taid<T, Arch> make(const kdloss::Options<T>& o) {
    kdloss::TaidSchedule sc;
    sc.t_start = lambda;
    sc.total_steps = 1000;
    return kdloss::Taid<T, Arch>(o, sc);
  }
  static ref::Row row(const double* s, const double* t, long v, double tau) {
    // The float path mixes with lambda rounded to float (exact for the values used here).
    return ref::taid(s, t, v, tau, lambda);
  }
};
using Taid = TaidAt<400>;

}  // namespace kdtest::specs
