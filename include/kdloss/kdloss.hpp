// kdloss: umbrella header — every loss and building block.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "config.hpp"
#include "types.hpp"
#include "log_softmax.hpp"
#include "f_divergence.hpp"
#include "forward_kl.hpp"
#include "reverse_kl.hpp"
#include "jensen_shannon.hpp"
#include "skew_kl.hpp"
#include "total_variation.hpp"
#include "alpha_beta.hpp"
#include "cross_entropy.hpp"
#include "adaptive_kl.hpp"
#include "taid.hpp"
#include "decoupled.hpp"
#include "normalized_kd.hpp"
#include "soft_target_cross_entropy.hpp"
#include "delta_kl.hpp"
#include "symmetric_kl.hpp"
#include "sinkhorn.hpp"
#include "plackett_luce.hpp"
