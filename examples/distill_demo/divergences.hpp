// distill_demo: the registry of training losses, one entry per divergence kdloss offers.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <functional>
#include <kdloss/kdloss.hpp>
#include <string>
#include <vector>

namespace distill_demo {

/// What a loss sees at one training step.
struct Batch {
  /// Student logits, rows x V.
  const kdloss::RowMatrix<float>& student;
  /// Teacher logits (the exact log-probabilities), rows x V.
  const kdloss::RowMatrix<float>& teacher;
  /// The next token actually sampled after each context (for hard-label baselines).
  const Eigen::VectorXi& next;
  /// 1-based optimizer step and the total (for scheduled losses such as TAID).
  int step, steps;
};

/// A training loss: returns L and writes \f$\partial L/\partial z\f$ (rows x V) into `grad`.
/// Called once per optimizer step.
using LossFn = std::function<float(const Batch&, kdloss::RowMatrix<float>& grad)>;

/// One registry entry. `make` builds a fresh loss per student, so stateful losses (a TAID
/// schedule, an AKL workspace) are never shared between students trained concurrently.
struct Divergence {
  /// Command-line key (`--divergences fkl,rkl`) and CSV/SVG name.
  std::string key;
  /// Human-readable name with parameters.
  std::string name;
  std::function<LossFn()> make;
};

/// Adapts any kdloss divergence functor `f(S, T, dS)` to a LossFn.
template <class Loss>
LossFn divergence(Loss loss) {
  return [loss](const Batch& b, kdloss::RowMatrix<float>& grad) { return loss(b.student, b.teacher, grad); };
}

/// Every training loss of the demo, in table order. Adding a loss is one entry; e.g. a stateful
/// one whose schedule advances once per optimizer step:
/// \code
/// {"taid", "Taid", [] {
///    auto taid = std::make_shared<kdloss::Taid<float>>();
///    return LossFn([taid](const Batch& b, kdloss::RowMatrix<float>& g) {
///      const float l = (*taid)(b.student, b.teacher, g);
///      taid->advance(l);
///      return l;
///    });
///  }},
/// \endcode
inline std::vector<Divergence> registry() {
  const kdloss::Options<float> opt{};  // temperature 1, mean over the batch's rows
  return {
      {"fkl", "ForwardKL", [=] { return divergence(kdloss::ForwardKL<float>(opt)); }},
      {"rkl", "ReverseKL", [=] { return divergence(kdloss::ReverseKL<float>(opt)); }},
      {"js", "JensenShannon(0.5)", [=] { return divergence(kdloss::JensenShannon<float>(opt, 0.5)); }},
      {"skl", "SkewKL(0.1)", [=] { return divergence(kdloss::SkewKL<float>(opt, 0.1)); }},
      {"srkl", "SkewReverseKL(0.1)", [=] { return divergence(kdloss::SkewReverseKL<float>(opt, 0.1)); }},
      {"tv", "TotalVariation", [=] { return divergence(kdloss::TotalVariation<float>(opt)); }},
      {"ab", "AlphaBeta(0.2,0.7)", [=] { return divergence(kdloss::AlphaBeta<float>(opt, 0.2, 0.7)); }},
      // Baseline without a teacher: cross-entropy against the token the language actually
      // produced next (one sample of p per context instead of p itself).
      {"ce", "CE on sampled tokens", [=] {
         const kdloss::CrossEntropy<float> ce(opt);
         return LossFn([ce](const Batch& b, kdloss::RowMatrix<float>& g) { return ce(b.student, b.next, g); });
       }},
  };
}

}  // namespace distill_demo
