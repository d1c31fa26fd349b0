// kdloss with LibTorch: a tiny student (embedding -> linear head) distilled from a LibTorch teacher
// (embedding -> MLP -> head) through kdloss::libtorch::apply, with torch's own Adam. Prints the
// loss going down and fails if it does not.
// SPDX-License-Identifier: Apache-2.0
#include <torch/torch.h>

#include <cstdio>
#include <kdloss/kdloss.hpp>
#include <kdloss/torch.hpp>

namespace {

struct Teacher : torch::nn::Module {
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear hidden{nullptr}, head{nullptr};
  Teacher(int64_t vocab, int64_t width) {
    embed = register_module("embed", torch::nn::Embedding(vocab, width));
    hidden = register_module("hidden", torch::nn::Linear(width, 4 * width));
    head = register_module("head", torch::nn::Linear(4 * width, vocab));
  }
  torch::Tensor forward(const torch::Tensor& tokens) {
    return 12.0 * head(torch::gelu(hidden(embed(tokens))));  // peaked next-token distributions
  }
};

struct Student : torch::nn::Module {
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear head{nullptr};
  Student(int64_t vocab, int64_t width) {
    embed = register_module("embed", torch::nn::Embedding(vocab, width));
    head = register_module("head", torch::nn::Linear(width, vocab));
  }
  torch::Tensor forward(const torch::Tensor& tokens) { return head(torch::tanh(embed(tokens))); }
};

}  // namespace

int main() {
  torch::manual_seed(0);
  torch::set_num_threads(1);
  const int64_t vocab = 1000, batch = 4, seq = 32, steps = 150;
  Teacher teacher(vocab, 64);
  teacher.eval();
  Student student(vocab, 64);
  torch::optim::Adam adam(student.parameters(), torch::optim::AdamOptions(3e-2));

  kdloss::Options<float> opt;
  opt.temperature = 2.0f;  // p = softmax(t/2), q = softmax(s/2)
  const kdloss::ForwardKL<float> kd(opt);

  std::printf("LibTorch %s: student (embedding 64 -> head %ld) distilled from a teacher, ForwardKL at "
              "temperature 2 through kdloss::libtorch::apply\n",
              TORCH_VERSION, static_cast<long>(vocab));
  float first = 0, last = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const torch::Tensor tokens = torch::randint(0, vocab, {batch, seq}, torch::kLong);
    torch::Tensor labels = tokens.clone();
    labels.index_put_({torch::indexing::Slice(), torch::indexing::Slice(seq - 4)}, -100);  // padding
    torch::Tensor teacher_logits;
    {
      const torch::NoGradGuard no_grad;
      teacher_logits = teacher.forward(tokens);
    }
    // [batch, seq, V] logits, rows = tokens; the padded positions are masked by their label.
    const torch::Tensor loss = kdloss::libtorch::apply(kd, student.forward(tokens), teacher_logits, labels);
    adam.zero_grad();
    loss.backward();
    adam.step();
    const float value = loss.item<float>();
    if (step == 0) first = value;
    last = value;
    if (step % 25 == 0 || step == steps - 1)
      std::printf("step %4ld  KL(p||q) = %.4f\n", static_cast<long>(step), static_cast<double>(value));
  }
  std::printf("ForwardKL %.4f -> %.4f\n", static_cast<double>(first), static_cast<double>(last));
  return last < 0.5f * first ? 0 : 1;
}
