// kdloss SIMD layer: umbrella header (tags, primitives of every available ISA, exp).
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "arch.hpp"
#include "scalar.hpp"
#include "sse2.hpp"
#include "avx2.hpp"
#include "avx512.hpp"
#include "math.hpp"
