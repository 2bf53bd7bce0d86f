// Linear layers whose frozen weight lives outside the TF.js heap, in its stored precision: float32, BF16,
// F16 (as in the model's safetensors) or LUC-packed integers (int8, or 2..4-bit two per byte, low nibble
// first, offset by 8; float32 scales per row or per group of columns, compress/quantize.ts). A block of
// weight rows is widened to float32 in a scratch buffer (on the addon's thread pool) and multiplied with
// cblas_sgemm, so a layer never exists in float32 as a whole and the model's weights never enter the
// wasm heap (which cannot exceed 4 GiB).
//
// Exports (registered by edgetune_register_frozen):
//   frozenLinear(x, xOff, n, w, format, rows, cols, scales, groupSize, y, yOff, transposed)
//     format: 0 F32 (Float32Array), 1 BF16 (Uint16Array), 2 F16 (Uint16Array), 3 int8 (Int8Array),
//             4 int4 (Uint8Array, ceil(rows*cols/2) bytes); scales: Float32Array for 3 and 4 (else ignored).
//     transposed false: y[n, rows] = x[n, cols] W^T   (the forward of an HF linear, W [out=rows, in=cols])
//     transposed true:  y[n, cols] = x[n, rows] W     (its input gradient)
//     Up to 4 rows of x against BF16/int8/int4 (decoding) are dot products over the stored rows in place.
//     x and y are float32 arrays with element offsets (e.g. views of the wasm heap); every access is
//     bounds-checked (RangeError, nothing written).
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "vmath.h"

typedef void (*edgetune_range_fn)(void *ctx, int64_t lo, int64_t hi, int tid);
void edgetune_par_range(int64_t n, double work, edgetune_range_fn fn, void *ctx);

enum { FMT_F32 = 0, FMT_BF16 = 1, FMT_F16 = 2, FMT_I8 = 3, FMT_I4 = 4 };

// Scratch budget of one block of widened rows (floats): large enough for efficient GEMM panels, small
// against the weight itself.
#define BLOCK_FLOATS (1 << 20)

static float half_to_float(uint16_t h) {
  const uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  uint32_t bits;
  if (e == 0) {
    if (m == 0) bits = s;
    else {  // subnormal: normalise
      int sh = 0;
      uint32_t mm = m;
      while (!(mm & 0x400)) {
        mm <<= 1;
        sh++;
      }
      bits = s | ((uint32_t)(113 - sh) << 23) | ((mm & 0x3ff) << 13);
    }
  } else if (e == 31) bits = s | 0x7f800000 | (m << 13);
  else bits = s | ((e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

typedef struct {
  const void *w;
  int format;
  int64_t cols, r0, groupSize, groups;
  const float *scales;
  float *out;  // [rows of the block, cols]
} Widen;

EDGETUNE_CLONES static void widen_rows(void *ctx, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  const Widen *c = (const Widen *)ctx;
  const int64_t K = c->cols;
  for (int64_t i = lo; i < hi; i++) {
    const int64_t r = c->r0 + i;
    float *o = c->out + i * K;
    switch (c->format) {
      case FMT_BF16: {
        const uint16_t *s = (const uint16_t *)c->w + r * K;
        uint32_t *ou = (uint32_t *)o;
        for (int64_t k = 0; k < K; k++) ou[k] = (uint32_t)s[k] << 16;
        break;
      }
      case FMT_F16: {
        const uint16_t *s = (const uint16_t *)c->w + r * K;
        for (int64_t k = 0; k < K; k++) o[k] = half_to_float(s[k]);
        break;
      }
      case FMT_I8: {
        const int8_t *s = (const int8_t *)c->w + r * K;
        const int64_t gs = c->groupSize > 0 ? c->groupSize : K;
        for (int64_t g = 0; g < c->groups; g++) {
          const float sc = c->scales[r * c->groups + g];
          const int64_t k1 = (g + 1) * gs < K ? (g + 1) * gs : K;
          for (int64_t k = g * gs; k < k1; k++) o[k] = (float)s[k] * sc;
        }
        break;
      }
      case FMT_I4: {
        const uint8_t *s = (const uint8_t *)c->w;
        const int64_t gs = c->groupSize > 0 ? c->groupSize : K, base = r * K;
        if ((base & 1) == 0 && (gs & 1) == 0 && (K & 1) == 0) {
          // Byte-aligned rows and groups: two nibbles per byte, a loop the compiler vectorizes.
          for (int64_t g = 0; g < c->groups; g++) {
            const float sc = c->scales[r * c->groups + g];
            const int64_t k0 = g * gs, k1 = (g + 1) * gs < K ? (g + 1) * gs : K;
            const uint8_t *sb = s + ((base + k0) >> 1);
            float *ob = o + k0;
            const int64_t nb = (k1 - k0) >> 1;
            for (int64_t j = 0; j < nb; j++) {
              const int b = sb[j];
              ob[2 * j] = (float)((b & 15) - 8) * sc;
              ob[2 * j + 1] = (float)((b >> 4) - 8) * sc;
            }
          }
          break;
        }
        for (int64_t g = 0; g < c->groups; g++) {
          const float sc = c->scales[r * c->groups + g];
          const int64_t k1 = (g + 1) * gs < K ? (g + 1) * gs : K;
          for (int64_t k = g * gs; k < k1; k++) {
            const int64_t idx = base + k;
            o[k] = (float)((int)((s[idx >> 1] >> ((idx & 1) << 2)) & 0xf) - 8) * sc;
          }
        }
        break;
      }
      default:
        break;
    }
  }
}

// A few rows of x against a BF16 or LUC-packed weight read in place (decoding: one token per sequence): each
// output is a dot product over the stored row, so the weight is read once at its stored width instead of being
// widened into a scratch block and read again by a GEMV. y[n, rows] = x[n, cols] W^T.
typedef struct {
  const float *x;
  int64_t n, cols, groupSize, groups, rows;
  const void *w;
  int format;
  const float *scales;
  float *y;
} Dot;

EDGETUNE_CLONES static void dot_rows(void *ctx, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  const Dot *c = (const Dot *)ctx;
  const int64_t K = c->cols;
  for (int64_t r = lo; r < hi; r++) {
    for (int64_t i = 0; i < c->n; i++) {
      const float *x = c->x + i * K;
      float acc = 0.f;
      if (c->format == FMT_BF16) {
        const uint16_t *s = (const uint16_t *)c->w + r * K;
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t k = 0;
        for (; k + 8 <= K; k += 8)
          for (int l = 0; l < 8; l++) {
            const uint32_t bits = (uint32_t)s[k + l] << 16;
            float f;
            memcpy(&f, &bits, 4);
            part[l] += f * x[k + l];
          }
        for (; k < K; k++) {
          const uint32_t bits = (uint32_t)s[k] << 16;
          float f;
          memcpy(&f, &bits, 4);
          acc += f * x[k];
        }
        for (int l = 0; l < 8; l++) acc += part[l];
      } else {  // int8 or int4, per group: scale x sum(q x)
        const int64_t gs = c->groupSize > 0 ? c->groupSize : K;
        for (int64_t g = 0; g < c->groups; g++) {
          const int64_t k0 = g * gs, k1 = (g + 1) * gs < K ? (g + 1) * gs : K;
          float sum = 0.f;
          if (c->format == FMT_I8) {
            const int8_t *s = (const int8_t *)c->w + r * K;
            for (int64_t k = k0; k < k1; k++) sum += (float)s[k] * x[k];
          } else {
            const uint8_t *s = (const uint8_t *)c->w;
            for (int64_t k = k0; k < k1; k++) {
              const int64_t idx = r * K + k;
              sum += (float)((int)((s[idx >> 1] >> ((idx & 1) << 2)) & 0xf) - 8) * x[k];
            }
          }
          acc += sum * c->scales[r * c->groups + g];
        }
      }
      c->y[i * c->rows + r] = acc;
    }
  }
}

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != napi_ok) {                                                 \
      napi_throw_error(env, NULL, "frozenLinear: N-API call failed: " #call); \
      return NULL;                                                           \
    }                                                                        \
  } while (0)

static bool typed(napi_env env, napi_value v, void **data, size_t *len, napi_typedarray_type *type) {
  bool is_ta = false;
  napi_value ab;
  size_t off;
  return napi_is_typedarray(env, v, &is_ta) == napi_ok && is_ta &&
         napi_get_typedarray_info(env, v, type, len, data, &ab, &off) == napi_ok;
}

static bool i64(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 9.0e15) || d != (double)(int64_t)d) return false;
  *out = (int64_t)d;
  return true;
}

static napi_value fail(napi_env env, bool range, const char *msg) {
  if (range) napi_throw_range_error(env, NULL, msg);
  else napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value frozen_linear(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value a[12];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 12) return fail(env, false, "frozenLinear: expects 12 arguments");
  void *xp, *wp, *yp, *sp = NULL;
  size_t xl, wl, yl, sl = 0;
  napi_typedarray_type xt, wt, yt, st;
  int64_t xOff, n, format, rows, cols, groupSize, yOff;
  bool tr;
  if (!typed(env, a[0], &xp, &xl, &xt) || xt != napi_float32_array) return fail(env, false, "frozenLinear: x must be a Float32Array");
  if (!typed(env, a[3], &wp, &wl, &wt)) return fail(env, false, "frozenLinear: w must be a typed array");
  if (!typed(env, a[9], &yp, &yl, &yt) || yt != napi_float32_array) return fail(env, false, "frozenLinear: y must be a Float32Array");
  if (!i64(env, a[1], &xOff) || !i64(env, a[2], &n) || !i64(env, a[4], &format) || !i64(env, a[5], &rows) ||
      !i64(env, a[6], &cols) || !i64(env, a[8], &groupSize) || !i64(env, a[10], &yOff))
    return fail(env, false, "frozenLinear: offsets, sizes and format must be non-negative integers");
  if (napi_get_value_bool(env, a[11], &tr) != napi_ok) return fail(env, false, "frozenLinear: transposed must be a boolean");
  if (rows > INT32_MAX || cols > INT32_MAX || n > INT32_MAX) return fail(env, true, "frozenLinear: sizes must be 32-bit");
  static const napi_typedarray_type want[] = {napi_float32_array, napi_uint16_array, napi_uint16_array, napi_int8_array,
                                              napi_uint8_array};
  if (format > FMT_I4 || wt != want[format]) return fail(env, false, "frozenLinear: w's array type does not match its format");
  const double elems = (double)rows * (double)cols;
  const double need = format == FMT_I4 ? (double)((rows * cols + 1) / 2) : elems;
  if ((double)wl < need) return fail(env, true, "frozenLinear: w is shorter than rows x cols");
  const int64_t groups = groupSize > 0 ? (cols + groupSize - 1) / groupSize : 1;
  if (format == FMT_I8 || format == FMT_I4) {
    if (!typed(env, a[7], &sp, &sl, &st) || st != napi_float32_array) return fail(env, false, "frozenLinear: scales must be a Float32Array");
    if ((double)sl < (double)rows * (double)groups) return fail(env, true, "frozenLinear: scales shorter than rows x groups");
  }
  const int64_t inDim = tr ? rows : cols, outDim = tr ? cols : rows;
  if ((double)xOff + (double)n * (double)inDim > (double)xl) return fail(env, true, "frozenLinear: x out of range");
  if ((double)yOff + (double)n * (double)outDim > (double)yl) return fail(env, true, "frozenLinear: y out of range");
  float *x = (float *)xp + xOff, *y = (float *)yp + yOff;
  if (n == 0 || outDim == 0) return NULL;
  if (inDim == 0) {
    memset(y, 0, sizeof(float) * (size_t)(n * outDim));
    return NULL;
  }
  if (format == FMT_F32) {
    const float *W = (const float *)wp;
    if (tr) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)cols, (int)rows, 1.f, x, (int)rows, W, (int)cols, 0.f, y, (int)cols);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.f, x, (int)cols, W, (int)cols, 0.f, y, (int)rows);
    return NULL;
  }
  if (!tr && n <= 4 && (format == FMT_BF16 || format == FMT_I8 || format == FMT_I4)) {
    Dot d = {x, n, cols, groupSize, groups, rows, wp, (int)format, (const float *)sp, y};
    edgetune_par_range(rows, (double)rows * (double)cols * (double)n, dot_rows, &d);
    return NULL;
  }
  int64_t block = BLOCK_FLOATS / cols;
  if (block < 16) block = 16;
  if (block > rows) block = rows;
  float *scratch = (float *)malloc(sizeof(float) * (size_t)(block * cols));
  if (!scratch) return fail(env, true, "frozenLinear: out of memory for the scratch block");
  Widen wd = {wp, (int)format, cols, 0, groupSize, groups, (const float *)sp, scratch};
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t R = rows - r0 < block ? rows - r0 : block;
    wd.r0 = r0;
    edgetune_par_range(R, (double)R * (double)cols, widen_rows, &wd);
    if (tr)  // y[n, cols] (+)= x[:, r0:r0+R] . W[r0:r0+R, :]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)cols, (int)R, 1.f, x + r0, (int)rows, scratch, (int)cols,
                  r0 == 0 ? 0.f : 1.f, y, (int)cols);
    else  // y[:, r0:r0+R] = x . W[r0:r0+R, :]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)R, (int)cols, 1.f, x, (int)cols, scratch, (int)cols, 0.f,
                  y + r0, (int)rows);
  }
  free(scratch);
  return NULL;
}

// Widens rows [r0, r0 + count) of a stored matrix into out[count * cols] (the embedding lookup and the
// no-addon fallback use it): widenRows(w, format, rows, cols, scales, groupSize, r0, count, out, outOff).
static napi_value widen_rows_js(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value a[10];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 10) return fail(env, false, "widenRows: expects 10 arguments");
  void *wp, *op, *sp = NULL;
  size_t wl, ol, sl = 0;
  napi_typedarray_type wt, ot, st;
  int64_t format, rows, cols, groupSize, r0, count, oOff;
  if (!typed(env, a[0], &wp, &wl, &wt)) return fail(env, false, "widenRows: w must be a typed array");
  if (!typed(env, a[8], &op, &ol, &ot) || ot != napi_float32_array) return fail(env, false, "widenRows: out must be a Float32Array");
  if (!i64(env, a[1], &format) || !i64(env, a[2], &rows) || !i64(env, a[3], &cols) || !i64(env, a[5], &groupSize) ||
      !i64(env, a[6], &r0) || !i64(env, a[7], &count) || !i64(env, a[9], &oOff))
    return fail(env, false, "widenRows: sizes and offsets must be non-negative integers");
  if (format < FMT_BF16 || format > FMT_I4) return fail(env, false, "widenRows: format must be 1..4");
  const int64_t groups = groupSize > 0 ? (cols + groupSize - 1) / groupSize : 1;
  const double need = format == FMT_I4 ? (double)((rows * cols + 1) / 2) : (double)rows * (double)cols;
  if ((double)wl < need || r0 + count > rows) return fail(env, true, "widenRows: rows out of range");
  if ((double)oOff + (double)count * (double)cols > (double)ol) return fail(env, true, "widenRows: out out of range");
  if (format >= FMT_I8) {
    if (!typed(env, a[4], &sp, &sl, &st) || st != napi_float32_array || (double)sl < (double)rows * (double)groups)
      return fail(env, true, "widenRows: scales must be a Float32Array of rows x groups");
  }
  Widen wd = {wp, (int)format, cols, r0, groupSize, groups, (const float *)sp, (float *)op + oOff};
  edgetune_par_range(count, (double)count * (double)cols, widen_rows, &wd);
  return NULL;
}

napi_status edgetune_register_frozen(napi_env env, napi_value exports) {
  napi_value f;
  napi_status s = napi_create_function(env, "frozenLinear", NAPI_AUTO_LENGTH, frozen_linear, NULL, &f);
  if (s == napi_ok) s = napi_set_named_property(env, exports, "frozenLinear", f);
  if (s == napi_ok) s = napi_create_function(env, "widenRows", NAPI_AUTO_LENGTH, widen_rows_js, NULL, &f);
  if (s == napi_ok) s = napi_set_named_property(env, exports, "widenRows", f);
  return s;
}
