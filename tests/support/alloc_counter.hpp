// Counts heap allocations (global operator new is replaced in alloc_counter.cpp) and forbids
// Eigen's own allocations, so a test can assert that a call allocates nothing.
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>

namespace kdtest {

/// Number of calls to any global operator new so far in this process.
long allocations();

/// While alive: counts allocations and makes any Eigen heap allocation an assertion failure.
class NoAllocScope {
 public:
  NoAllocScope();
  ~NoAllocScope();
  NoAllocScope(const NoAllocScope&) = delete;
  NoAllocScope& operator=(const NoAllocScope&) = delete;
  /// Allocations since construction.
  long count() const;

 private:
  long m_start;
};

}  // namespace kdtest
