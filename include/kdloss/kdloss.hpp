// kdloss: umbrella header — every loss and building block.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "config.hpp"
#include "types.hpp"
#include "log_softmax.hpp"
#include "f_divergence.hpp"
#include "forward_kl.hpp"
#include "reverse_kl.hpp"
#include "sinkhorn.hpp"
