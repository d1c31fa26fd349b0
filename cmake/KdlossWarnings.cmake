# Strict warnings for kdloss's own targets only: nothing leaks into projects that consume kdloss.
include(CheckCXXSourceCompiles)
function(kdloss_strict target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE
      -Wall -Wextra -Wpedantic -Wconversion -Wshadow -Werror)
    # Whether the build's own flags (CMAKE_CXX_FLAGS, e.g. -march=native on an AVX-512 machine)
    # enable AVX-512: then every target runs Eigen's AVX-512 code and needs the g++ 12 workaround.
    # Checked at the first own target (a project that only consumes kdloss never pays for it), then
    # cached.
    check_cxx_source_compiles("#ifndef __AVX512F__\n#error no AVX-512\n#endif\nint main() { return 0; }"
                              KDLOSS_FLAGS_HAVE_AVX512)
    if(KDLOSS_FLAGS_HAVE_AVX512)
      kdloss_eigen_avx512_workaround(${target})
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4 /WX)
  endif()
endfunction()
