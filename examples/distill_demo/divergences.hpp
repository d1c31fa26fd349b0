// distill_demo: the registry of training losses, one entry per divergence kdloss offers.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <Eigen/Core>
#include <functional>
#include <memory>
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

/// Adapts a loss that also takes the sampled next tokens as labels, `f(S, T, labels, dS)`.
template <class Loss>
LossFn labeled(Loss loss) {
  return [loss](const Batch& b, kdloss::RowMatrix<float>& grad) { return loss(b.student, b.teacher, b.next, grad); };
}

/// Every training loss of the demo, in table order. Adding a loss is one entry; a stateful one
/// (TAID's schedule, the workspaces of AdaptiveKL, Sinkhorn and PlackettLuce) lives in a shared_ptr the LossFn owns.
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
      {"sym", "SymmetricKL(0.5)", [=] { return divergence(kdloss::SymmetricKL<float>(opt, 0.5)); }},
      {"akl", "AdaptiveKL(0.5)", [=] {
         auto akl = std::make_shared<kdloss::AdaptiveKL<float>>(opt, 0.5);
         return LossFn([akl](const Batch& b, kdloss::RowMatrix<float>& g) { return (*akl)(b.student, b.teacher, g); });
       }},
      // TAID: the schedule advances once per optimizer step with that step's loss.
      {"taid", "Taid(0.4->1)", [=] {
         auto taid = std::make_shared<std::unique_ptr<kdloss::Taid<float>>>();
         return LossFn([taid, opt](const Batch& b, kdloss::RowMatrix<float>& g) {
           if (!*taid) {
             kdloss::TaidSchedule sched;
             sched.total_steps = b.steps;
             *taid = std::make_unique<kdloss::Taid<float>>(opt, sched);
           }
           const float l = (**taid)(b.student, b.teacher, g);
           (*taid)->advance(l);
           return l;
         });
       }},
      // SinKD: its optimal-transport term between the batch's rows (L1 cost, epsilon 0.1) is an
      // addition to a KD loss (SinKD's T0 recipe: KL + Sinkhorn + CE), not a loss on its own: the
      // transport plan may match a student row to another row's teacher. So: ForwardKL + Sinkhorn,
      // one gradient buffer through accumulate().
      {"sinkhorn", "FKL + Sinkhorn(L1,0.1)", [=] {
         auto sk = std::make_shared<kdloss::Sinkhorn<float>>();
         const kdloss::ForwardKL<float> fkl(opt);
         return LossFn([sk, fkl](const Batch& b, kdloss::RowMatrix<float>& g) {
           const float l = fkl.accumulate(b.student, b.teacher, g, 1.0f, 0.0f);
           return l + sk->accumulate(b.student, b.teacher, g, 1.0f, 1.0f);
         });
       }},
      // The seed papers' label-based methods, with the sampled next token as the label.
      {"dkd", "Decoupled(1,8,T=4)", [=] { return labeled(kdloss::Decoupled<float>()); }},
      {"nkd", "NormalizedKD(1.5)", [=] { return labeled(kdloss::NormalizedKD<float>(opt, 1.5)); }},
      {"pld", "PlackettLuce", [=] {
         auto pld = std::make_shared<kdloss::PlackettLuce<float>>(opt);
         return LossFn([pld](const Batch& b, kdloss::RowMatrix<float>& g) { return (*pld)(b.student, b.teacher, b.next, g); });
       }},
      // Baseline without a teacher: cross-entropy against the token the language actually
      // produced next (one sample of p per context instead of p itself).
      {"ce", "CE on sampled tokens", [=] {
         const kdloss::CrossEntropy<float> ce(opt);
         return LossFn([ce](const Batch& b, kdloss::RowMatrix<float>& g) { return ce(b.student, b.next, g); });
       }},
  };
}

}  // namespace distill_demo
