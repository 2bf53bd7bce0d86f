// edgetune native addon: OpenBLAS cblas_sgemm and a fused softmax cross-entropy, working in place
// on Float32Array/Int32Array views (zero-copy; e.g. views of the TF.js wasm heap).
//
// Built by scripts/build-native.mjs into native/build/blas_addon.node (optional; the engine falls
// back to its wasm kernels without it). Plain N-API (ABI-stable across Node versions), no node-gyp.
// Built without BLAS (EDGETUNE_NO_BLAS, see blas.h) sgemm runs sgemm_ref.c's plain C loops.
//
// Exports:
//   hasBlas: boolean, whether sgemm (and the GEMMs of the fused kernels) run on OpenBLAS
//   sgemm(a, aOff, b, bOff, c, cOff, M, N, K, transA, transB, batch, strideA, strideB, strideC)
//     For i in [0, batch): C_i[M,N] = op(A_i) * op(B_i), row-major, where
//     A_i = a + aOff + i*strideA (op(A) = A[M,K], or A[K,M] transposed when transA), likewise B_i
//     ([K,N] or [N,K]) and C_i = c + cOff + i*strideC. Offsets and strides count float elements,
//     so a stride of 0 broadcasts one operand over the batch. Every access is bounds-checked
//     against the typed arrays (a RangeError is thrown, nothing is written, when out of range).
//   setThreads(n), getThreads() -> number, info() -> { config, corename, threads }
//   xentForward(z, zOff, labels, labelsOff, lse, lseOff, N, V, ignoreIndex) -> sum of row losses
//     Row-wise softmax cross-entropy on row-major logits z[N, V] with int32 labels: for rows whose
//     label != ignoreIndex, lse[i] = logsumexp(z_i) and the result sums lse[i] - z_i[label_i]
//     (float64); ignored rows get lse[i] = 0. Throws RangeError on a label outside [0, V).
//   xentBackward(z, zOff, labels, labelsOff, lse, lseOff, N, V, ignoreIndex, scale, g, gOff)
//     g_i = scale * (exp(z_i - lse[i]) - onehot(label_i)); ignored rows get 0.
//     (Both row loops run on fused.c's thread pool, see setFusedThreads.)
//   The fused training kernels (RMSNorm, SwiGLU, RoPE, attention, LoRA linear, dropout, AdamW, add,
//   setFusedThreads): see fused.c.
//   frozenLinear, widenRows: linears over weights stored as BF16/F16/int8/int4 outside the heap, see frozen.c.
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "vmath.h"

// Registers the fused kernels of fused.c on `exports`.
napi_status edgetune_register_fused(napi_env env, napi_value exports);
// Registers frozen.c's linear over weights kept in their stored precision (frozenLinear, widenRows).
napi_status edgetune_register_frozen(napi_env env, napi_value exports);
// fused.c's thread pool: fn(ctx, lo, hi, tid) over chunks of [0, n); threads (tid < the result of
// edgetune_par_threads(work)) per the addon's setFusedThreads.
typedef void (*edgetune_range_fn)(void *ctx, int64_t lo, int64_t hi, int tid);
void edgetune_par_range(int64_t n, double work, edgetune_range_fn fn, void *ctx);
int edgetune_par_threads(double work);

#define CHECK(call)                                                      \
  do {                                                                   \
    if ((call) != napi_ok) {                                             \
      napi_throw_error(env, NULL, "blas_addon: N-API call failed: " #call); \
      return NULL;                                                       \
    }                                                                    \
  } while (0)

// A typed array argument of the given type: base pointer and length in elements.
static bool get_ta(napi_env env, napi_value v, const char *name, napi_typedarray_type want, void **data, int64_t *len) {
  bool is_ta = false;
  napi_typedarray_type t;
  size_t n;
  void *p;
  napi_value ab;
  size_t byte_off;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &t, &n, &p, &ab, &byte_off) != napi_ok || t != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "blas_addon: %s must be a%s", name,
             want == napi_float32_array ? " Float32Array" : "n Int32Array");
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *data = p;
  *len = (int64_t)n;
  return true;
}

static bool get_f32(napi_env env, napi_value v, const char *name, float **data, int64_t *len) {
  return get_ta(env, v, name, napi_float32_array, (void **)data, len);
}

static bool get_i32(napi_env env, napi_value v, const char *name, int32_t **data, int64_t *len) {
  return get_ta(env, v, name, napi_int32_array, (void **)data, len);
}

static bool get_i64(napi_env env, napi_value v, const char *name, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= -9.0e15 && d <= 9.0e15) || d != (double)(int64_t)d) {
    char msg[96];
    snprintf(msg, sizeof msg, "blas_addon: %s must be an integer", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool get_bool(napi_env env, napi_value v, bool *out) {
  if (napi_get_value_bool(env, v, out) == napi_ok) return true;
  napi_throw_type_error(env, NULL, "blas_addon: transA/transB must be booleans");
  return false;
}

// Checks that elements [off + i*stride, off + i*stride + extent) lie inside [0, len) for all i < batch.
// In double precision, so absurd arguments cannot overflow (lengths are far below 2^53).
static bool in_range(napi_env env, const char *name, int64_t len, int64_t off, int64_t stride, int64_t batch,
                     double extent) {
  const double span = (double)stride * (double)(batch > 0 ? batch - 1 : 0);
  const double lo = (double)off + (span < 0 ? span : 0), hi = (double)off + (span > 0 ? span : 0) + extent;
  if (lo >= 0 && hi <= (double)len) return true;
  char msg[160];
  snprintf(msg, sizeof msg, "blas_addon: %s out of range (needs elements [%.0f, %.0f) of %lld)", name, lo, hi,
           (long long)len);
  napi_throw_range_error(env, NULL, msg);
  return false;
}

static napi_value sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 15;
  napi_value a[15];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 15) {
    napi_throw_type_error(env, NULL, "blas_addon.sgemm: expects 15 arguments");
    return NULL;
  }
  float *A, *B, *C;
  int64_t lenA, lenB, lenC, aOff, bOff, cOff, M, N, K, batch, sA, sB, sC;
  bool ta, tb;
  if (!get_f32(env, a[0], "a", &A, &lenA) || !get_i64(env, a[1], "aOff", &aOff) ||
      !get_f32(env, a[2], "b", &B, &lenB) || !get_i64(env, a[3], "bOff", &bOff) ||
      !get_f32(env, a[4], "c", &C, &lenC) || !get_i64(env, a[5], "cOff", &cOff) ||
      !get_i64(env, a[6], "M", &M) || !get_i64(env, a[7], "N", &N) || !get_i64(env, a[8], "K", &K) ||
      !get_bool(env, a[9], &ta) || !get_bool(env, a[10], &tb) || !get_i64(env, a[11], "batch", &batch) ||
      !get_i64(env, a[12], "strideA", &sA) || !get_i64(env, a[13], "strideB", &sB) ||
      !get_i64(env, a[14], "strideC", &sC))
    return NULL;
  const int64_t big = (int64_t)1 << 40;  // keeps the index arithmetic below far from int64 overflow
  if (M < 0 || N < 0 || K < 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || batch < 0 || batch > big ||
      sA < -big || sA > big || sB < -big || sB > big || sC < -big || sC > big) {
    napi_throw_range_error(env, NULL, "blas_addon.sgemm: M, N, K must be 32-bit sizes, batch and strides below 2^40");
    return NULL;
  }
  if (batch == 0 || M == 0 || N == 0) return NULL;
  if (!in_range(env, "c", lenC, cOff, sC, batch, (double)M * (double)N)) return NULL;
  if (K == 0) {  // BLAS rejects lda = 0; the product of empty matrices is zero.
    for (int64_t i = 0; i < batch; i++)
      for (int64_t j = 0; j < M * N; j++) C[cOff + i * sC + j] = 0.f;
    return NULL;
  }
  if (!in_range(env, "a", lenA, aOff, sA, batch, (double)M * (double)K) ||
      !in_range(env, "b", lenB, bOff, sB, batch, (double)K * (double)N))
    return NULL;
  const int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N), ldc = (int)N;
  for (int64_t i = 0; i < batch; i++)
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, 1.f, A + aOff + i * sA, lda, B + bOff + i * sB, ldb, 0.f, C + cOff + i * sC, ldc);
  return NULL;
}

static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  int64_t n;
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc < 1 || !get_i64(env, a[0], "threads", &n)) return NULL;
  if (n < 1 || n > 1024) {
    napi_throw_range_error(env, NULL, "blas_addon.setThreads: threads must be in [1, 1024]");
    return NULL;
  }
  openblas_set_num_threads((int)n);
  return NULL;
}

static napi_value get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &r));
  return r;
}

static napi_value get_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, s;
  CHECK(napi_create_object(env, &o));
  CHECK(napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &s));
  CHECK(napi_set_named_property(env, o, "config", s));
  CHECK(napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &s));
  CHECK(napi_set_named_property(env, o, "corename", s));
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &s));
  CHECK(napi_set_named_property(env, o, "threads", s));
  return o;
}

// ---- fused softmax cross-entropy ----

// exp_approx and EDGETUNE_CLONES: vmath.h.

// Row max with lane-wise partial maxima (vectorizable).
EDGETUNE_CLONES static float row_max(const float *z, int64_t V) {
  enum { L = 16 };
  float mx[L];
  for (int l = 0; l < L; l++) mx[l] = -INFINITY;
  int64_t j = 0;
  for (; j + L <= V; j += L)
    for (int l = 0; l < L; l++) mx[l] = z[j + l] > mx[l] ? z[j + l] : mx[l];
  float m = -INFINITY;
  for (int l = 0; l < L; l++) m = mx[l] > m ? mx[l] : m;
  for (; j < V; j++) m = z[j] > m ? z[j] : m;
  return m;
}

// e[j] = exp(z[j] - m). A separate elementwise pass: GCC vectorizes it, but not exp fused into a sum.
EDGETUNE_CLONES static void row_exp(const float *z, int64_t V, float m, float *e) {
  for (int64_t j = 0; j < V; j++) e[j] = exp_approx(z[j] - m);
}

// Sum with lane-wise float partial sums (vectorizable), combined in float64.
EDGETUNE_CLONES static double row_sum(const float *e, int64_t V) {
  enum { L = 16 };
  float acc[L];
  for (int l = 0; l < L; l++) acc[l] = 0;
  int64_t j = 0;
  for (; j + L <= V; j += L)
    for (int l = 0; l < L; l++) acc[l] += e[j + l];
  double s = 0;
  for (int l = 0; l < L; l++) s += acc[l];
  for (; j < V; j++) s += e[j];
  return s;
}

// logsumexp of one row; `scratch` holds V floats.
static double row_logsumexp(const float *z, int64_t V, float *scratch) {
  const float m = row_max(z, V);
  if (!isfinite(m)) return m;  // all -inf (-> -inf) or a +inf/NaN logit (-> propagate)
  row_exp(z, V, m, scratch);
  return (double)m + log(row_sum(scratch, V));
}

EDGETUNE_CLONES static void row_grad(const float *z, int64_t V, float l, float scale, float *g) {
  for (int64_t j = 0; j < V; j++) g[j] = scale * exp_approx(z[j] - l);
}

// Shared argument parsing of xentForward / xentBackward (first 9 arguments).
typedef struct {
  float *z, *lse;
  int32_t *labels;
  int64_t N, V, ignore;
} XentArgs;

static bool xent_args(napi_env env, napi_value *a, XentArgs *x) {
  float *z, *lse;
  int32_t *lab;
  int64_t lenZ, lenLab, lenLse, zOff, labOff, lseOff;
  if (!get_f32(env, a[0], "z", &z, &lenZ) || !get_i64(env, a[1], "zOff", &zOff) ||
      !get_i32(env, a[2], "labels", &lab, &lenLab) || !get_i64(env, a[3], "labelsOff", &labOff) ||
      !get_f32(env, a[4], "lse", &lse, &lenLse) || !get_i64(env, a[5], "lseOff", &lseOff) ||
      !get_i64(env, a[6], "N", &x->N) || !get_i64(env, a[7], "V", &x->V) ||
      !get_i64(env, a[8], "ignoreIndex", &x->ignore))
    return false;
  if (x->N < 0 || x->V < 1 || x->N > ((int64_t)1 << 40) || x->V > ((int64_t)1 << 40)) {
    napi_throw_range_error(env, NULL, "blas_addon.xent: need N >= 0, V >= 1");
    return false;
  }
  if (!in_range(env, "z", lenZ, zOff, 0, 1, (double)x->N * (double)x->V) ||
      !in_range(env, "labels", lenLab, labOff, 0, 1, (double)x->N) ||
      !in_range(env, "lse", lenLse, lseOff, 0, 1, (double)x->N))
    return false;
  x->z = z + zOff;
  x->labels = lab + labOff;
  x->lse = lse + lseOff;
  for (int64_t i = 0; i < x->N; i++) {
    const int64_t y = x->labels[i];
    if (y != x->ignore && (y < 0 || y >= x->V)) {
      char msg[128];
      snprintf(msg, sizeof msg, "blas_addon.xent: label %lld at row %lld is outside [0, %lld)", (long long)y,
               (long long)i, (long long)x->V);
      napi_throw_range_error(env, NULL, msg);
      return false;
    }
  }
  return true;
}

typedef struct {
  const XentArgs *x;
  float *scratch;  // V floats per thread
  double *sums;    // per thread
  float *g;
  float scale;
} XentJob;

static void xent_forward_rows(void *p, int64_t lo, int64_t hi, int tid) {
  XentJob *j = p;
  const XentArgs *x = j->x;
  float *scratch = j->scratch + (int64_t)tid * x->V;
  double sum = 0;
  for (int64_t i = lo; i < hi; i++) {
    const int64_t y = x->labels[i];
    if (y == x->ignore) {
      x->lse[i] = 0.f;
      continue;
    }
    const float *row = x->z + i * x->V;
    const double l = row_logsumexp(row, x->V, scratch);
    x->lse[i] = (float)l;
    sum += l - (double)row[y];
  }
  j->sums[tid] += sum;
}

static void xent_backward_rows(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  XentJob *j = p;
  const XentArgs *x = j->x;
  for (int64_t i = lo; i < hi; i++) {
    const int64_t y = x->labels[i];
    float *gi = j->g + i * x->V;
    if (y == x->ignore || j->scale == 0) {
      memset(gi, 0, sizeof(float) * (size_t)x->V);
      continue;
    }
    row_grad(x->z + i * x->V, x->V, x->lse[i], j->scale, gi);
    gi[y] -= j->scale;
  }
}

static napi_value xent_forward(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value a[9];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  XentArgs x;
  if (argc != 9) {
    napi_throw_type_error(env, NULL, "blas_addon.xentForward: expects 9 arguments");
    return NULL;
  }
  if (!xent_args(env, a, &x)) return NULL;
  const double work = (double)x.N * (double)x.V;
  const int nt = edgetune_par_threads(work);
  XentJob j = {.x = &x, .scratch = malloc(sizeof(float) * (size_t)x.V * (size_t)nt), .sums = calloc((size_t)nt, sizeof(double))};
  if (!j.scratch || !j.sums) {
    free(j.scratch);
    free(j.sums);
    napi_throw_error(env, NULL, "blas_addon.xentForward: out of memory");
    return NULL;
  }
  edgetune_par_range(x.N, work, xent_forward_rows, &j);
  double sum = 0;
  for (int t = 0; t < nt; t++) sum += j.sums[t];
  free(j.scratch);
  free(j.sums);
  napi_value r;
  CHECK(napi_create_double(env, sum, &r));
  return r;
}

static napi_value xent_backward(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value a[12];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 12) {
    napi_throw_type_error(env, NULL, "blas_addon.xentBackward: expects 12 arguments");
    return NULL;
  }
  XentArgs x;
  double scale;
  float *g;
  int64_t lenG, gOff;
  if (!xent_args(env, a, &x)) return NULL;
  if (napi_get_value_double(env, a[9], &scale) != napi_ok) {
    napi_throw_type_error(env, NULL, "blas_addon.xentBackward: scale must be a number");
    return NULL;
  }
  if (!get_f32(env, a[10], "g", &g, &lenG) || !get_i64(env, a[11], "gOff", &gOff) ||
      !in_range(env, "g", lenG, gOff, 0, 1, (double)x.N * (double)x.V))
    return NULL;
  XentJob j = {.x = &x, .g = g + gOff, .scale = (float)scale};
  edgetune_par_range(x.N, (double)x.N * (double)x.V, xent_backward_rows, &j);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value f;
  CHECK(napi_get_boolean(env, EDGETUNE_HAS_BLAS, &f));
  CHECK(napi_set_named_property(env, exports, "hasBlas", f));
  CHECK(napi_create_function(env, "sgemm", NAPI_AUTO_LENGTH, sgemm, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "sgemm", f));
  CHECK(napi_create_function(env, "setThreads", NAPI_AUTO_LENGTH, set_threads, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "setThreads", f));
  CHECK(napi_create_function(env, "getThreads", NAPI_AUTO_LENGTH, get_threads, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "getThreads", f));
  CHECK(napi_create_function(env, "info", NAPI_AUTO_LENGTH, get_info, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "info", f));
  CHECK(napi_create_function(env, "xentForward", NAPI_AUTO_LENGTH, xent_forward, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "xentForward", f));
  CHECK(napi_create_function(env, "xentBackward", NAPI_AUTO_LENGTH, xent_backward, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "xentBackward", f));
  CHECK(edgetune_register_fused(env, exports));
  CHECK(edgetune_register_frozen(env, exports));
  return exports;
}
