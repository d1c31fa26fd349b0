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
# Which of them get a test binary (all by default). The sanitizer build of CI leaves out sse2: it
# is the default instruction set of kdloss_tests, which runs whole under the sanitizers, and it
# leaves out avx2 as well (compared with scalar in the ci build).
set(KDLOSS_TEST_ISAS "${KDLOSS_ISAS}" CACHE STRING "SIMD paths that get a test binary (of: ${KDLOSS_ISAS})")
set(KDLOSS_TEST_ISA_FLAGS "" CACHE STRING
    "Extra compile flags of the per-ISA test binaries only (the ci preset: -O2 there, -O1 elsewhere)")

# g++ 12 reports false -W(maybe-)uninitialized positives inside its own AVX-512 intrinsics headers
# when they are inlined into Eigen's AVX-512 packet math (GCC PR 105593, fixed in g++ 13). kdloss's
# own headers silence it locally; targets that also run Eigen's vectorised code with AVX-512 enabled
# (benchmarks, examples, the AVX-512 tests) need this.
function(kdloss_eigen_avx512_workaround target)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized)
  endif()
endfunction()

# Compiles a test target for one of KDLOSS_ISAS: its flags, and the workaround above for avx512.
function(kdloss_use_isa target isa)
  target_compile_options(${target} PRIVATE ${KDLOSS_ISA_FLAGS_${isa}})
  if(isa STREQUAL "avx512")
    kdloss_eigen_avx512_workaround(${target})
  endif()
endfunction()

# Compiles a benchmark or example for this machine when KDLOSS_NATIVE is on.
function(kdloss_native target)
  if(KDLOSS_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
    kdloss_eigen_avx512_workaround(${target})
  endif()
endfunction()
