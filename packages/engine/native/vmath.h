// Shared inline math of the edgetune addon (blas_addon.c, fused.c).
#ifndef EDGETUNE_VMATH_H
#define EDGETUNE_VMATH_H
#include <stdint.h>
#include <string.h>

// Vectorizable expf (Cephes expf scheme): x = k*ln2 + r with |r| <= ln2/2, exp(r) by a degree-7
// polynomial (relative error < 2e-7), 2^k built in the exponent bits. Inputs are clamped to
// [-87.3, 88.3]: below that exp underflows (the result is then ~1e-38 instead of 0, negligible in
// a softmax sum). Plain arithmetic only, so the loops below vectorize without -ffast-math.
static inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  float k = x * 1.44269504088896341f + 12582912.f;  // 1.5*2^23: rounds to the nearest integer
  k -= 12582912.f;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Multi-versioned for the CPU it runs on (the addon is built once, e.g. into a Docker image).
#if defined(EDGETUNE_CLONES)
// defined by the includer (e.g. empty for a -march=native test harness)
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define EDGETUNE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EDGETUNE_CLONES
#endif

#endif
