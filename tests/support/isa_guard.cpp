// Compiled WITHOUT ISA flags into each per-ISA test binary: before any static initialiser of the
// ISA-compiled code runs, exit with ctest's skip code 77 when this CPU lacks the instruction set.
// SPDX-License-Identifier: Apache-2.0
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace {
bool cpu_has_isa() {
#if defined(KDLOSS_TEST_ISA_avx512)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("fma");
#elif defined(KDLOSS_TEST_ISA_avx2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

__attribute__((constructor(101))) void skip_if_unsupported() {
  __builtin_cpu_init();
  if (!cpu_has_isa()) {
    std::fputs("kdloss: this CPU lacks the instruction set of this test binary: skipped\n", stderr);
    _exit(77);
  }
}
}  // namespace

#if defined(KDLOSS_ISA_GUARD_MAIN)
// The configure-time check of tests/CMakeLists.txt (try_run): 0 where this CPU runs the
// instruction set, the guard's 77 where it does not.
int main() { return 0; }
#endif
