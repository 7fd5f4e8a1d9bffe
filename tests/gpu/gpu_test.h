// Shared by the GPU tests: skip with the reason when no usable GPU is present (CI has none).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "runtime/cuda_check.h"

#define DSOCR_SKIP_WITHOUT_GPU()                                   \
  do {                                                             \
    const std::string reason = ::dsocr::cuda_unavailable_reason(); \
    if (!reason.empty()) GTEST_SKIP() << "no GPU: " << reason;     \
  } while (0)
