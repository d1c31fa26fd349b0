# Compiler flags of each SIMD path kdloss tests (one test binary per instruction set).
# The library itself never adds ISA flags: it follows whatever the consumer compiles with.
set(KDLOSS_X86_64 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(KDLOSS_X86_64 ON)
endif()

set(KDLOSS_ISA_FLAGS_scalar -DKDLOSS_SIMD_FORCE_SCALAR)
if(KDLOSS_X86_64)
  set(KDLOSS_ISAS scalar sse2 avx2 avx512)
  set(KDLOSS_ISA_FLAGS_sse2 -march=x86-64)
  set(KDLOSS_ISA_FLAGS_avx2 -march=x86-64-v3)    # AVX2 + FMA3
  set(KDLOSS_ISA_FLAGS_avx512 -march=x86-64-v4)  # AVX-512 F/BW/CD/DQ/VL
else()
  set(KDLOSS_ISAS scalar)
endif()
