// edgetune native addon, part 2: fused training kernels behind packages/engine/src/backend/fused.ts.
// Every function works in place on Float32Array views (on wasm: views of the TF.js heap), addressed
// as (array, element offset) pairs and bounds-checked before anything is written. Sizes come first
// in every signature. Loops over rows run on a small work-claiming thread pool (up to
// `setFusedThreads(n)` threads, see par_range) when the work is large enough; GEMMs go to OpenBLAS
// (its own threads, or one thread per pool worker inside the attention kernels), or to sgemm_ref.c
// in an addon built without BLAS (blas.h). The attention products skip the key blocks right of
// the causal diagonal (block 64, EDGETUNE_ATTN_BLOCK).
//
// Exports (all shapes row-major, float32):
//   setFusedThreads(n), getFusedThreads()
//   rmsNormForward(n, d, eps, x,o, w,o, y,o, rstd,o)            y = x * rstd * w, rstd = 1/sqrt(mean(x^2)+eps)
//   rmsNormBackward(n, d, dy,o, x,o, w,o, rstd,o, dx,o, dw,o)   dw may be null
//   swigluForward(n, g,o, u,o, y,o)                            y = g * sigmoid(g) * u
//   swigluBackward(n, dy,o, g,o, u,o, dg,o, du,o)
//   ropeForward(B, T, nh, dh, rotate, x,o, cos,o, sin,o, y,o)  x [B*T, nh*dh] -> y [B, nh, T, dh]
//        y = x*cos + rotate_half(x)*sin (HF), or a plain head split when rotate is false (cos/sin null)
//   ropeBackward(B, T, nh, dh, rotate, dy,o, cos,o, sin,o, dx,o)
//   attentionForward(B, H, KV, T, dh, scale, merged, q,o, k,o, v,o, keyMask,o, out,o, probs,o)
//        q [B,H,T,dh], k/v [B,KV,T,dh] (query head h uses kv head h / (H/KV)), keyMask [B,T] or null
//        (0 = padding key), probs [B,H,T,T] = softmax(scale*q.k^T + causal/key mask),
//        out = probs.v as [B,H,T,dh], or [B,T,H*dh] when merged. A row whose keys are all masked gets
//        uniform probabilities over all T keys (what an additive -1e9 mask gives).
//   attentionBackward(B, H, KV, T, dh, scale, merged, dout,o, q,o, k,o, v,o, probs,o, dq,o, dk,o, dv,o)
//        dout in the layout of `out`; dq [B,H,T,dh], dk/dv [B,KV,T,dh].
//   adamw(n, w,o, m,o, v,o, g,o, b1, omb1, b2, omb2, sqrtC2, eps, lrC1, lrWd)   in place on w, m, v
//        (see adamw_range for the exact float32 operations)
//   sumSquares(n, x,o) -> float64 sum of x^2
//   dropoutForward(n, rate, seed, x,o, y,o), dropoutBackward(n, rate, seed, dy,o, dx,o)
//        y = x * keep / (1 - rate); keep from a counter-based hash of (seed, index), so the backward
//        pass regenerates the mask instead of storing it.
//   loraLinearForward(n, in, out, r, scale, rate, seed, x,o, w,o, a,o, b,o, y,o)
//        y = x W^T + scale * (drop(x) A^T) B^T  (x [n,in], W [out,in], A [r,in], B [out,r])
//   loraLinearGradX(n, in, out, r, scale, rate, seed, dy,o, w,o, a,o, b,o, dlow,o, dx,o)   dlow [n,r] optional
//   loraLinearGradAB(n, in, out, r, scale, rate, seed, dy,o, x,o, a,o, b,o, da,o, db,o, dlow,o)
//        dlow (optional output) = scale * dy B, reusable by loraLinearGradX
//   add(n, a,o, b,o, out,o)                                     out = a + b
#include <node_api.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>

#include "blas.h"
#include "vmath.h"

// ---------------------------------------------------------------------------------------------
// Argument parsing: sequential, stops at the first error (a JS exception is then pending).

typedef struct {
  napi_env env;
  napi_value *v;
  size_t n, i;
  bool ok;
  const char *fn;
} Args;

static void arg_fail(Args *a, const char *name, const char *what, bool range) {
  if (!a->ok) return;
  char msg[192];
  snprintf(msg, sizeof msg, "blas_addon.%s: %s %s", a->fn, name, what);
  if (range) napi_throw_range_error(a->env, NULL, msg);
  else napi_throw_type_error(a->env, NULL, msg);
  a->ok = false;
}

static napi_value arg_next(Args *a, const char *name) {
  if (!a->ok) return NULL;
  if (a->i >= a->n) {
    arg_fail(a, name, "is missing", false);
    return NULL;
  }
  return a->v[a->i++];
}

static double arg_num(Args *a, const char *name) {
  napi_value v = arg_next(a, name);
  double d = 0;
  if (v && napi_get_value_double(a->env, v, &d) != napi_ok) arg_fail(a, name, "must be a number", false);
  return d;
}

// A non-negative integer below 2^40.
static int64_t arg_size(Args *a, const char *name) {
  const double d = arg_num(a, name);
  if (!a->ok) return 0;
  if (!(d >= 0 && d <= 1099511627776.0) || d != (double)(int64_t)d) {
    arg_fail(a, name, "must be an integer in [0, 2^40]", true);
    return 0;
  }
  return (int64_t)d;
}

static bool arg_bool(Args *a, const char *name) {
  napi_value v = arg_next(a, name);
  bool b = false;
  if (v && napi_get_value_bool(a->env, v, &b) != napi_ok) arg_fail(a, name, "must be a boolean", false);
  return b;
}

// (Float32Array | null, offset): pointer to element `offset`, with `need` elements in range.
// null (or undefined) is accepted only when `optional`, and gives NULL.
static float *arg_f32(Args *a, const char *name, double need, bool optional) {
  napi_value arr = arg_next(a, name);
  const double off = arg_num(a, name);
  if (!a->ok) return NULL;
  napi_valuetype t;
  if (napi_typeof(a->env, arr, &t) != napi_ok) {
    arg_fail(a, name, "could not be read", false);
    return NULL;
  }
  if (t == napi_null || t == napi_undefined) {
    if (!optional) arg_fail(a, name, "must be a Float32Array", false);
    return NULL;
  }
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t len;
  void *p;
  napi_value ab;
  size_t byte_off;
  if (napi_is_typedarray(a->env, arr, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(a->env, arr, &tt, &len, &p, &ab, &byte_off) != napi_ok || tt != napi_float32_array) {
    arg_fail(a, name, "must be a Float32Array", false);
    return NULL;
  }
  if (!(off >= 0 && off == (double)(int64_t)off && off + need <= (double)len)) {
    char what[128];
    snprintf(what, sizeof what, "out of range (needs elements [%.0f, %.0f) of %zu)", off, off + need, len);
    arg_fail(a, name, what, true);
    return NULL;
  }
  return (float *)p + (int64_t)off;
}

static bool args_init(Args *a, napi_env env, napi_callback_info info, napi_value *buf, size_t cap, const char *fn) {
  a->env = env;
  a->v = buf;
  a->n = cap;
  a->i = 0;
  a->ok = true;
  a->fn = fn;
  if (napi_get_cb_info(env, info, &a->n, buf, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "blas_addon: napi_get_cb_info failed");
    return false;
  }
  if (a->n > cap) a->n = cap;
  return true;
}

static bool args_done(Args *a) {
  if (a->ok && a->i != a->n) {
    char msg[128];
    snprintf(msg, sizeof msg, "blas_addon.%s: expects %zu arguments, got %zu", a->fn, a->i, a->n);
    napi_throw_type_error(a->env, NULL, msg);
    a->ok = false;
  }
  return a->ok;
}

// ---------------------------------------------------------------------------------------------
// Threads: a small pool of persistent workers that claim chunks of a job (par_range). The calling
// thread claims chunks too and waits only for chunks a worker has actually started, never for a
// worker to wake up: on a busy machine a descheduled worker costs nothing (the caller does its
// share), where an OpenMP fork/join waits for every thread (kernels many times slower under load).
// A job gets one thread per PAR_MIN of work (about the floats it touches), at most
// setFusedThreads(n); small jobs run on the caller alone.

#define PAR_MIN 32768
#define MAX_THREADS 64
#define SPIN 256  // pause iterations a worker polls for the next job before sleeping

typedef void (*range_fn)(void *ctx, int64_t lo, int64_t hi, int tid);

typedef struct {
  range_fn fn;
  void *ctx;
  int64_t n;
} Job;

static int g_threads = 1;  // requested threads (caller + workers)
static Job g_job;          // written by the caller before publishing a generation in g_claim
// (generation << 32) | (chunks << 16) | next chunk: claiming compares the whole word, so a late
// worker can never take a chunk of a newer job by mistake.
static _Atomic uint64_t g_claim;
static _Atomic int64_t g_done;   // chunks finished in the current generation
static _Atomic int g_active = 1; // workers with tid < g_active take part
static uint32_t g_gen;           // caller side
static int g_started;            // workers started (caller side)
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER, g_run_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_sleeping;  // under g_mu

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void run_chunks(uint32_t gen, int tid) {
  for (;;) {
    uint64_t c = atomic_load_explicit(&g_claim, memory_order_acquire);
    if ((uint32_t)(c >> 32) != gen) return;
    const int64_t next = (int64_t)(c & 0xffff), chunks = (int64_t)((c >> 16) & 0xffff);
    if (next >= chunks) return;
    if (!atomic_compare_exchange_weak_explicit(&g_claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
      continue;
    const Job j = g_job;  // stable: the caller waits for this chunk before it publishes another job
    j.fn(j.ctx, j.n * next / chunks, j.n * (next + 1) / chunks, tid);
    atomic_fetch_add_explicit(&g_done, 1, memory_order_acq_rel);
  }
}

static void *worker_main(void *arg) {
  const int tid = (int)(intptr_t)arg;
  uint32_t seen = 0;
  for (;;) {
    uint64_t c = atomic_load_explicit(&g_claim, memory_order_acquire);
    for (int i = 0; i < SPIN && (uint32_t)(c >> 32) == seen; i++) {
      cpu_relax();
      c = atomic_load_explicit(&g_claim, memory_order_acquire);
    }
    if ((uint32_t)(c >> 32) == seen) {
      pthread_mutex_lock(&g_mu);
      g_sleeping++;
      while ((uint32_t)((c = atomic_load_explicit(&g_claim, memory_order_acquire)) >> 32) == seen)
        pthread_cond_wait(&g_cv, &g_mu);
      g_sleeping--;
      pthread_mutex_unlock(&g_mu);
    }
    seen = (uint32_t)(c >> 32);
    if (tid < atomic_load_explicit(&g_active, memory_order_relaxed)) run_chunks(seen, tid);
  }
  return NULL;
}

// Threads a job of `work` may use (per-thread scratch is indexed by tid < this).
static int par_threads(double work) {
  const double t = work / PAR_MIN;
  return t < 2 ? 1 : t >= g_threads ? g_threads : (int)t;
}

// fn(ctx, lo, hi, tid) over chunks of [0, n), on up to par_threads(work) threads.
static void par_range(int64_t n, double work, range_fn fn, void *ctx);

// For blas_addon.c (cross-entropy rows).
void edgetune_par_range(int64_t n, double work, range_fn fn, void *ctx) {
  par_range(n, work, fn, ctx);
}
int edgetune_par_threads(double work) {
  return par_threads(work);
}

static void par_range(int64_t n, double work, range_fn fn, void *ctx) {
  const int nt = par_threads(work);
  if (nt <= 1 || n <= 1 || pthread_mutex_trylock(&g_run_mu) != 0) {  // busy: another JS thread's job
    if (n > 0) fn(ctx, 0, n, 0);
    return;
  }
  while (g_started < nt - 1) {
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    const int ok = pthread_create(&th, &at, worker_main, (void *)(intptr_t)(g_started + 1)) == 0;
    pthread_attr_destroy(&at);
    if (!ok) break;
    g_started++;
  }
  atomic_store_explicit(&g_active, nt, memory_order_relaxed);
  const int64_t chunks = n < 8 * nt ? n : 8 * nt;  // several per thread: a late worker's share shrinks
  g_job = (Job){fn, ctx, n};
  atomic_store_explicit(&g_done, 0, memory_order_relaxed);
  const uint32_t gen = ++g_gen;
  atomic_store_explicit(&g_claim, ((uint64_t)gen << 32) | ((uint64_t)chunks << 16), memory_order_release);
  pthread_mutex_lock(&g_mu);
  if (g_sleeping) pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  run_chunks(gen, 0);
  while (atomic_load_explicit(&g_done, memory_order_acquire) < chunks) cpu_relax();
  pthread_mutex_unlock(&g_run_mu);
}

static napi_value set_fused_threads(napi_env env, napi_callback_info info) {
  napi_value buf[1];
  Args a;
  if (!args_init(&a, env, info, buf, 1, "setFusedThreads")) return NULL;
  const int64_t n = arg_size(&a, "threads");
  if (!args_done(&a)) return NULL;
  if (n < 1 || n > MAX_THREADS) {
    napi_throw_range_error(env, NULL, "blas_addon.setFusedThreads: threads must be in [1, 64]");
    return NULL;
  }
  g_threads = (int)n;
  return NULL;
}

static napi_value get_fused_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  if (napi_create_int32(env, g_threads, &r) != napi_ok) return NULL;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Row helpers (vectorizable: lane-wise partial sums, no reductions the compiler must reorder).

enum { LANES = 16 };

EDGETUNE_CLONES static double sum_sq(const float *x, int64_t n) {
  float acc[LANES] = {0};
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += x[j + l] * x[j + l];
  double s = 0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; j < n; j++) s += (double)x[j] * x[j];
  return s;
}

EDGETUNE_CLONES static double dot3(const float *a, const float *b, const float *c, int64_t n) {
  float acc[LANES] = {0};
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += a[j + l] * b[j + l] * c[j + l];
  double s = 0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; j < n; j++) s += (double)a[j] * b[j] * c[j];
  return s;
}

EDGETUNE_CLONES static double dot2(const float *a, const float *b, int64_t n) {
  float acc[LANES] = {0};
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += a[j + l] * b[j + l];
  double s = 0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; j < n; j++) s += (double)a[j] * b[j];
  return s;
}

// ---------------------------------------------------------------------------------------------
// RMSNorm (HF LlamaRMSNorm): y = (x * rstd) * w, rstd = 1 / sqrt(mean(x^2) + eps), per row of d.

EDGETUNE_CLONES static void rms_fwd_rows(const float *x, const float *w, float *y, float *rstd, int64_t r0, int64_t r1,
                                         int64_t d, float eps) {
  for (int64_t i = r0; i < r1; i++) {
    const float *xi = x + i * d;
    float *yi = y + i * d;
    const float mean = (float)(sum_sq(xi, d) / (double)d);
    const float r = 1.f / sqrtf(mean + eps);
    rstd[i] = r;
    for (int64_t j = 0; j < d; j++) yi[j] = (xi[j] * r) * w[j];
  }
}

// dx = r * (w*dy) - x * (r^3 * sum(dy*w*x) / d); dwacc[j] += dy*x*r (float64 partial sums).
EDGETUNE_CLONES static void rms_bwd_rows(const float *dy, const float *x, const float *w, const float *rstd, float *dx,
                                         double *dwacc, int64_t r0, int64_t r1, int64_t d) {
  for (int64_t i = r0; i < r1; i++) {
    const float *dyi = dy + i * d, *xi = x + i * d;
    const float r = rstd[i];
    if (dx) {
      const float c = (float)((double)r * r * r * dot3(dyi, w, xi, d) / (double)d);
      float *dxi = dx + i * d;
      for (int64_t j = 0; j < d; j++) dxi[j] = r * (w[j] * dyi[j]) - xi[j] * c;
    }
    if (dwacc)
      for (int64_t j = 0; j < d; j++) dwacc[j] += (double)(dyi[j] * xi[j] * r);
  }
}

typedef struct {
  const float *x, *w, *dy, *rstd;
  float *y, *dx;
  double *acc;  // [threads, d] partial sums of dw
  int64_t d;
  float eps;
} RmsCtx;

static void rms_fwd_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  RmsCtx *c = p;
  rms_fwd_rows(c->x, c->w, c->y, (float *)c->rstd, lo, hi, c->d, c->eps);
}

static void rms_bwd_job(void *p, int64_t lo, int64_t hi, int tid) {
  RmsCtx *c = p;
  rms_bwd_rows(c->dy, c->x, c->w, c->rstd, c->dx, c->acc ? c->acc + (int64_t)tid * c->d : NULL, lo, hi, c->d);
}

static napi_value rms_norm_forward(napi_env env, napi_callback_info info) {
  napi_value buf[11];
  Args a;
  if (!args_init(&a, env, info, buf, 11, "rmsNormForward")) return NULL;
  const int64_t n = arg_size(&a, "n"), d = arg_size(&a, "d");
  const double eps = arg_num(&a, "eps");
  const double nd = (double)n * (double)d;
  const float *x = arg_f32(&a, "x", nd, false), *w = arg_f32(&a, "w", (double)d, false);
  float *y = arg_f32(&a, "y", nd, false), *rstd = arg_f32(&a, "rstd", (double)n, false);
  if (!args_done(&a) || n == 0) return NULL;
  RmsCtx c = {.x = x, .w = w, .y = y, .rstd = rstd, .d = d, .eps = (float)eps};
  par_range(n, nd, rms_fwd_job, &c);
  return NULL;
}

static napi_value rms_norm_backward(napi_env env, napi_callback_info info) {
  napi_value buf[14];
  Args a;
  if (!args_init(&a, env, info, buf, 14, "rmsNormBackward")) return NULL;
  const int64_t n = arg_size(&a, "n"), d = arg_size(&a, "d");
  const double nd = (double)n * (double)d;
  const float *dy = arg_f32(&a, "dy", nd, false), *x = arg_f32(&a, "x", nd, false);
  const float *w = arg_f32(&a, "w", (double)d, false), *rstd = arg_f32(&a, "rstd", (double)n, false);
  float *dx = arg_f32(&a, "dx", nd, true), *dw = arg_f32(&a, "dw", (double)d, true);
  if (!args_done(&a)) return NULL;
  const int nt = par_threads(nd);
  double *acc = NULL;
  if (dw) {
    acc = calloc((size_t)nt * (size_t)(d > 0 ? d : 1), sizeof(double));
    if (!acc) {
      napi_throw_error(env, NULL, "blas_addon.rmsNormBackward: out of memory");
      return NULL;
    }
  }
  RmsCtx c = {.x = x, .w = w, .dy = dy, .rstd = rstd, .dx = dx, .acc = acc, .d = d};
  par_range(n, nd, rms_bwd_job, &c);
  if (dw) {
    for (int64_t j = 0; j < d; j++) {
      double s = 0;
      for (int t = 0; t < nt; t++) s += acc[(int64_t)t * d + j];
      dw[j] = (float)s;
    }
    free(acc);
  }
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// SwiGLU: y = silu(g) * u = g * sigmoid(g) * u.

static inline float sigmoid_approx(float x) {
  return 1.f / (1.f + exp_approx(-x));
}

EDGETUNE_CLONES static void swiglu_fwd_range(const float *g, const float *u, float *y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i++) y[i] = (g[i] * sigmoid_approx(g[i])) * u[i];
}

// d/dg silu(g) = s * (1 + g * (1 - s)).
EDGETUNE_CLONES static void swiglu_bwd_range(const float *dy, const float *g, const float *u, float *dg, float *du,
                                             int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i++) {
    const float s = sigmoid_approx(g[i]);
    du[i] = dy[i] * (g[i] * s);
    dg[i] = (dy[i] * u[i]) * (s * (1.f + g[i] * (1.f - s)));
  }
}

typedef struct {
  const float *g, *u, *dy;
  float *y, *dg, *du;
} SwigluCtx;

static void swiglu_fwd_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  SwigluCtx *c = p;
  swiglu_fwd_range(c->g, c->u, c->y, lo, hi);
}

static void swiglu_bwd_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  SwigluCtx *c = p;
  swiglu_bwd_range(c->dy, c->g, c->u, c->dg, c->du, lo, hi);
}

static napi_value swiglu_forward(napi_env env, napi_callback_info info) {
  napi_value buf[7];
  Args a;
  if (!args_init(&a, env, info, buf, 7, "swigluForward")) return NULL;
  const int64_t n = arg_size(&a, "n");
  const float *g = arg_f32(&a, "g", (double)n, false), *u = arg_f32(&a, "u", (double)n, false);
  float *y = arg_f32(&a, "y", (double)n, false);
  if (!args_done(&a)) return NULL;
  SwigluCtx c = {.g = g, .u = u, .y = y};
  par_range(n, 4.0 * n, swiglu_fwd_job, &c);
  return NULL;
}

static napi_value swiglu_backward(napi_env env, napi_callback_info info) {
  napi_value buf[11];
  Args a;
  if (!args_init(&a, env, info, buf, 11, "swigluBackward")) return NULL;
  const int64_t n = arg_size(&a, "n");
  const float *dy = arg_f32(&a, "dy", (double)n, false), *g = arg_f32(&a, "g", (double)n, false);
  const float *u = arg_f32(&a, "u", (double)n, false);
  float *dg = arg_f32(&a, "dg", (double)n, false), *du = arg_f32(&a, "du", (double)n, false);
  if (!args_done(&a)) return NULL;
  SwigluCtx c = {.g = g, .u = u, .dy = dy, .dg = dg, .du = du};
  par_range(n, 6.0 * n, swiglu_bwd_job, &c);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// RoPE + head split. x [B*T, nh*dh] (rows b*T+t) <-> y [B, nh, T, dh].
// rotate_half(x) = cat(-x[half:], x[:half]); y = x*cos + rotate_half(x)*sin (cos/sin [T, dh]).

EDGETUNE_CLONES static void rope_fwd_rows(const float *x, const float *cs, const float *sn, float *y, int64_t r0,
                                          int64_t r1, int64_t T, int64_t nh, int64_t dh) {
  const int64_t half = dh / 2;
  for (int64_t r = r0; r < r1; r++) {  // r = b*T + t
    const int64_t b = r / T, t = r % T;
    for (int64_t h = 0; h < nh; h++) {
      const float *xr = x + (r * nh + h) * dh;
      float *yr = y + ((b * nh + h) * T + t) * dh;
      if (!cs) {
        memcpy(yr, xr, sizeof(float) * (size_t)dh);
        continue;
      }
      const float *c = cs + t * dh, *s = sn + t * dh;
      for (int64_t j = 0; j < half; j++) yr[j] = xr[j] * c[j] + (-xr[j + half]) * s[j];
      for (int64_t j = half; j < dh; j++) yr[j] = xr[j] * c[j] + xr[j - half] * s[j];
    }
  }
}

// dx_i = dy_i*cos_i + (i < half ? dy_{i+half}*sin_{i+half} : -dy_{i-half}*sin_{i-half}).
EDGETUNE_CLONES static void rope_bwd_rows(const float *dy, const float *cs, const float *sn, float *dx, int64_t r0,
                                          int64_t r1, int64_t T, int64_t nh, int64_t dh) {
  const int64_t half = dh / 2;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t b = r / T, t = r % T;
    for (int64_t h = 0; h < nh; h++) {
      const float *dyr = dy + ((b * nh + h) * T + t) * dh;
      float *dxr = dx + (r * nh + h) * dh;
      if (!cs) {
        memcpy(dxr, dyr, sizeof(float) * (size_t)dh);
        continue;
      }
      const float *c = cs + t * dh, *s = sn + t * dh;
      for (int64_t j = 0; j < half; j++) dxr[j] = dyr[j] * c[j] + dyr[j + half] * s[j + half];
      for (int64_t j = half; j < dh; j++) dxr[j] = dyr[j] * c[j] - dyr[j - half] * s[j - half];
    }
  }
}

typedef struct {
  const float *x, *cs, *sn;
  float *y;
  int64_t T, nh, dh;
  bool backward;
} RopeCtx;

static void rope_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  RopeCtx *c = p;
  if (c->backward) rope_bwd_rows(c->x, c->cs, c->sn, c->y, lo, hi, c->T, c->nh, c->dh);
  else rope_fwd_rows(c->x, c->cs, c->sn, c->y, lo, hi, c->T, c->nh, c->dh);
}

static napi_value rope_common(napi_env env, napi_callback_info info, bool backward) {
  napi_value buf[13];
  Args a;
  if (!args_init(&a, env, info, buf, 13, backward ? "ropeBackward" : "ropeForward")) return NULL;
  const int64_t B = arg_size(&a, "B"), T = arg_size(&a, "T"), nh = arg_size(&a, "nh"), dh = arg_size(&a, "dh");
  const bool rotate = arg_bool(&a, "rotate");
  const double n = (double)B * T * nh * dh;
  const float *x = arg_f32(&a, backward ? "dy" : "x", n, false);
  const float *cs = arg_f32(&a, "cos", (double)T * dh, !rotate), *sn = arg_f32(&a, "sin", (double)T * dh, !rotate);
  float *y = arg_f32(&a, backward ? "dx" : "y", n, false);
  if (!args_done(&a)) return NULL;
  if (rotate && dh % 2) {
    napi_throw_range_error(env, NULL, "blas_addon.rope: dh must be even");
    return NULL;
  }
  if (!rotate) cs = sn = NULL;
  const int64_t rows = B * T;
  RopeCtx c = {.x = x, .cs = cs, .sn = sn, .y = y, .T = T, .nh = nh, .dh = dh, .backward = backward};
  par_range(rows, 2.0 * n, rope_job, &c);
  return NULL;
}

static napi_value rope_forward(napi_env env, napi_callback_info info) {
  return rope_common(env, info, false);
}
static napi_value rope_backward(napi_env env, napi_callback_info info) {
  return rope_common(env, info, true);
}

// ---------------------------------------------------------------------------------------------
// Attention core. Scores of (b, h) live at probs + ((b*H + h)*T)*T, row t, column s. Allowed
// keys of row t: s <= t and keyMask[b, s] != 0. firstKey[b] = first s with keyMask != 0 (T if none):
// rows t < firstKey[b] have no allowed key and get uniform probabilities over all T columns.

// Softmax of one score row in place over [0, t] (masked columns -> 0, rest of the row zeroed).
EDGETUNE_CLONES static void softmax_row(float *p, const float *km, int64_t t, int64_t T) {
  const int64_t n = t + 1;
  float m = -INFINITY;
  if (km) {
    for (int64_t s = 0; s < n; s++) {
      const float z = km[s] != 0.f ? p[s] : -INFINITY;
      m = z > m ? z : m;
    }
  } else {
    float mx[LANES];
    for (int l = 0; l < LANES; l++) mx[l] = -INFINITY;
    int64_t s = 0;
    for (; s + LANES <= n; s += LANES)
      for (int l = 0; l < LANES; l++) mx[l] = p[s + l] > mx[l] ? p[s + l] : mx[l];
    for (int l = 0; l < LANES; l++) m = mx[l] > m ? mx[l] : m;
    for (; s < n; s++) m = p[s] > m ? p[s] : m;
  }
  if (km)
    for (int64_t s = 0; s < n; s++) p[s] = km[s] != 0.f ? exp_approx(p[s] - m) : 0.f;
  else
    for (int64_t s = 0; s < n; s++) p[s] = exp_approx(p[s] - m);
  float acc[LANES] = {0};
  int64_t s = 0;
  for (; s + LANES <= n; s += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += p[s + l];
  double sum = 0;
  for (int l = 0; l < LANES; l++) sum += acc[l];
  for (; s < n; s++) sum += p[s];
  const float inv = (float)(1.0 / sum);
  for (int64_t s2 = 0; s2 < n; s2++) p[s2] *= inv;
  for (int64_t s2 = n; s2 < T; s2++) p[s2] = 0.f;
}

static void softmax_rows(float *probs, const float *keyMask, const int64_t *firstKey, int64_t r0, int64_t r1,
                         int64_t H, int64_t T) {
  for (int64_t r = r0; r < r1; r++) {  // r = (b*H + h)*T + t
    const int64_t t = r % T, b = r / T / H;
    float *p = probs + r * T;
    if (keyMask && t < firstKey[b]) {
      const float u = 1.f / (float)T;
      for (int64_t s = 0; s < T; s++) p[s] = u;
      continue;
    }
    softmax_row(p, keyMask ? keyMask + b * T : NULL, t, T);
  }
}

// dS = P * (dP - sum(P * dP)) in place over dP, on the columns where P can be non-zero.
EDGETUNE_CLONES static void dsoftmax_row(const float *p, float *dp, int64_t n, int64_t T) {
  const float d = (float)dot2(p, dp, n);
  for (int64_t s = 0; s < n; s++) dp[s] = p[s] * (dp[s] - d);
  for (int64_t s = n; s < T; s++) dp[s] = 0.f;
}

static int64_t *first_keys(const float *keyMask, int64_t B, int64_t T) {
  int64_t *f = malloc(sizeof(int64_t) * (size_t)(B > 0 ? B : 1));
  if (!f) return NULL;
  for (int64_t b = 0; b < B; b++) {
    f[b] = T;
    for (int64_t s = 0; s < T; s++)
      if (keyMask[b * T + s] != 0.f) {
        f[b] = s;
        break;
      }
  }
  return f;
}

typedef struct {
  int64_t B, H, KV, T, dh, rep;
  float scale;
  bool merged;
  int64_t block;  // causal row/key block of the GEMMs (0: whole [T, T] products)
} AttnDims;

// Causal block size: the products skip the key blocks right of the diagonal block, computing
// (1 + 1/nb)/2 of the [T, T] work with nb = T/block blocks. EDGETUNE_ATTN_BLOCK overrides (0 = off).
static int64_t attn_block(void) {
  static int64_t block = -1;
  if (block < 0) {
    const char *e = getenv("EDGETUNE_ATTN_BLOCK");
    block = e && *e ? atoll(e) : 64;
    if (block < 0) block = 0;
  }
  return block;
}

static bool attn_dims(Args *a, AttnDims *d) {
  d->B = arg_size(a, "B");
  d->H = arg_size(a, "H");
  d->KV = arg_size(a, "KV");
  d->T = arg_size(a, "T");
  d->dh = arg_size(a, "dh");
  d->scale = (float)arg_num(a, "scale");
  d->merged = arg_bool(a, "merged");
  if (!a->ok) return false;
  if (d->KV == 0 || d->H % d->KV != 0 || d->T > INT32_MAX / 4 || d->dh > INT32_MAX / 4 || d->H > 65536) {
    napi_throw_range_error(a->env, NULL, "blas_addon.attention: need KV >= 1 dividing H, and 32-bit T, dh");
    a->ok = false;
    return false;
  }
  d->rep = d->H / d->KV;
  d->block = attn_block();
  if (d->block >= d->T) d->block = 0;
  return true;
}

// Pointer helpers: q-like tensors [B, n, T, dh].
#define HEAD(p, b, h, n, T, dh) ((p) + (((b) * (n) + (h)) * (T)) * (dh))

// One (batch, kv group): the rep query heads of group g are rows (r, t) of one [rep*T, dh] matrix,
// so each product is one GEMM. Working per group keeps the [rep*T, T] scores in L2 between the
// GEMMs and the softmax.
static void attn_fwd_group(const AttnDims *d, int64_t b, int64_t g, const float *q, const float *k, const float *v,
                           const float *km, const int64_t *fk, float *out, float *probs) {
  const int64_t H = d->H, KV = d->KV, T = d->T, dh = d->dh, rep = d->rep;
  const int M = (int)(rep * T), iT = (int)T, idh = (int)dh;
  float *S = probs + ((b * H + g * rep) * T) * T;
  // Blocked causal products, unless some query of this batch has no allowed key (its uniform
  // probabilities cover all T keys).
  if (d->block > 0 && dh > 0 && !(fk && fk[b] > 0)) {
    const int64_t Tb = d->block, r0 = (b * H + g * rep) * T;
    const float *K = HEAD(k, b, g, KV, T, dh), *V = HEAD(v, b, g, KV, T, dh);
    for (int64_t r = 0; r < rep; r++)
      for (int64_t i0 = 0; i0 < T; i0 += Tb) {
        const int64_t i1 = i0 + Tb < T ? i0 + Tb : T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(i1 - i0), (int)i1, idh, d->scale,
                    HEAD(q, b, g * rep + r, H, T, dh) + i0 * dh, idh, K, idh, 0.f, S + (r * T + i0) * T, iT);
      }
    softmax_rows(probs, km, fk, r0, r0 + rep * T, H, T);
    for (int64_t r = 0; r < rep; r++) {
      const int64_t h = g * rep + r;
      float *o = d->merged ? out + (b * T) * H * dh + h * dh : HEAD(out, b, h, H, T, dh);
      const int64_t ldo = d->merged ? H * dh : dh;
      for (int64_t i0 = 0; i0 < T; i0 += Tb) {
        const int64_t i1 = i0 + Tb < T ? i0 + Tb : T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(i1 - i0), idh, (int)i1, 1.f, S + (r * T + i0) * T,
                    iT, V, idh, 0.f, o + i0 * ldo, (int)ldo);
      }
    }
    return;
  }
  if (dh > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, iT, idh, d->scale, HEAD(q, b, g * rep, H, T, dh), idh,
                HEAD(k, b, g, KV, T, dh), idh, 0.f, S, iT);
  else
    memset(S, 0, sizeof(float) * (size_t)(rep * T * T));
  const int64_t r0 = (b * H + g * rep) * T;
  softmax_rows(probs, km, fk, r0, r0 + rep * T, H, T);
  if (dh == 0) return;
  const float *V = HEAD(v, b, g, KV, T, dh);
  if (!d->merged) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, idh, iT, 1.f, S, iT, V, idh, 0.f,
                HEAD(out, b, g * rep, H, T, dh), idh);
  } else {
    for (int64_t r = 0; r < rep; r++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iT, idh, iT, 1.f, S + r * T * T, iT, V, idh, 0.f,
                  out + (b * T) * H * dh + (g * rep + r) * dh, (int)(H * dh));
  }
}

// Blocked causal backward of one (batch, kv group): like attn_bwd_group, the products restricted to
// key blocks at or left of each row block (P and dS are zero right of the diagonal).
static void attn_bwd_group_blocked(const AttnDims *d, int64_t b, int64_t g, const float *dout, const float *q,
                                   const float *k, const float *v, const float *P, float *dq, float *dk, float *dv,
                                   float *dP) {
  const int64_t H = d->H, KV = d->KV, T = d->T, dh = d->dh, rep = d->rep, Tb = d->block;
  const int iT = (int)T, idh = (int)dh;
  const int64_t ldo = d->merged ? H * dh : dh;
  const float *K = HEAD(k, b, g, KV, T, dh), *V = HEAD(v, b, g, KV, T, dh);
  float *dK = HEAD(dk, b, g, KV, T, dh), *dV = HEAD(dv, b, g, KV, T, dh);
  for (int64_t r = 0; r < rep; r++) {
    const int64_t h = g * rep + r;
    const float *dO = d->merged ? dout + b * T * H * dh + h * dh : HEAD(dout, b, h, H, T, dh);
    const float *Ph = P + r * T * T, *Q = HEAD(q, b, h, H, T, dh);
    float *dPh = dP + r * T * T, *dQ = HEAD(dq, b, h, H, T, dh);
    for (int64_t i0 = 0; i0 < T; i0 += Tb) {  // dP = dO . V^T, then dS, then dQ = scale * dS . K
      const int64_t i1 = i0 + Tb < T ? i0 + Tb : T;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(i1 - i0), (int)i1, idh, 1.f, dO + i0 * ldo, (int)ldo,
                  V, idh, 0.f, dPh + i0 * T, iT);
      for (int64_t t = i0; t < i1; t++) dsoftmax_row(Ph + t * T, dPh + t * T, t + 1, T);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(i1 - i0), idh, (int)i1, d->scale, dPh + i0 * T, iT,
                  K, idh, 0.f, dQ + i0 * dh, idh);
    }
    const float beta = r == 0 ? 0.f : 1.f;
    for (int64_t j0 = 0; j0 < T; j0 += Tb) {  // key block j: rows t >= j0 contribute
      const int64_t j1 = j0 + Tb < T ? j0 + Tb : T;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(j1 - j0), idh, (int)(T - j0), 1.f, Ph + j0 * T + j0, iT,
                  dO + j0 * ldo, (int)ldo, beta, dV + j0 * dh, idh);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(j1 - j0), idh, (int)(T - j0), d->scale,
                  dPh + j0 * T + j0, iT, Q + j0 * dh, idh, beta, dK + j0 * dh, idh);
    }
  }
}

// Backward of one (batch, kv group); dP: rep*T*T floats of scratch.
static void attn_bwd_group(const AttnDims *d, int64_t b, int64_t g, const float *dout, const float *q, const float *k,
                           const float *v, const float *probs, float *dq, float *dk, float *dv, float *dP) {
  const int64_t H = d->H, KV = d->KV, T = d->T, dh = d->dh, rep = d->rep;
  const int M = (int)(rep * T), iT = (int)T, idh = (int)dh, ldo = d->merged ? (int)(H * dh) : idh;
  const float *V = HEAD(v, b, g, KV, T, dh), *P = probs + ((b * H + g * rep) * T) * T;
  float *dV = HEAD(dv, b, g, KV, T, dh);
  if (d->block > 0) {
    bool full_rows = false;  // a query with no allowed key: uniform over all T keys
    for (int64_t i = 0; i < rep * T && !full_rows; i++) full_rows = i % T < T - 1 && P[i * T + T - 1] != 0.f;
    if (!full_rows) {
      attn_bwd_group_blocked(d, b, g, dout, q, k, v, P, dq, dk, dv, dP);
      return;
    }
  }
  // dO of head h of batch b (row stride ldo).
#define DOUT(h) (d->merged ? dout + b * T * H * dh + (h) * dh : HEAD(dout, b, h, H, T, dh))
  // dP = dO . V^T, dV = P^T . dO
  if (!d->merged) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, iT, idh, 1.f, DOUT(g * rep), idh, V, idh, 0.f, dP, iT);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, iT, idh, M, 1.f, P, iT, DOUT(g * rep), idh, 0.f, dV, idh);
  } else {
    for (int64_t r = 0; r < rep; r++) {
      const int64_t h = g * rep + r;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iT, iT, idh, 1.f, DOUT(h), ldo, V, idh, 0.f, dP + r * T * T,
                  iT);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, iT, idh, iT, 1.f, P + r * T * T, iT, DOUT(h), ldo,
                  r == 0 ? 0.f : 1.f, dV, idh);
    }
  }
#undef DOUT
  // dS = P * (dP - rowsum(P * dP)), in place over dP (rows of this group only)
  for (int64_t i = 0; i < rep * T; i++) {
    const int64_t t = i % T;
    const float *p = P + i * T;
    dsoftmax_row(p, dP + i * T, p[T - 1] != 0.f ? T : t + 1, T);
  }
  // dQ = scale * dS . K, dK = scale * dS^T . Q
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, idh, iT, d->scale, dP, iT, HEAD(k, b, g, KV, T, dh), idh,
              0.f, HEAD(dq, b, g * rep, H, T, dh), idh);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, iT, idh, M, d->scale, dP, iT, HEAD(q, b, g * rep, H, T, dh), idh,
              0.f, HEAD(dk, b, g, KV, T, dh), idh);
}

// Groups [0, B*KV) run on the pool with single-threaded OpenBLAS calls (the groups are
// independent, and the softmax passes then run in parallel too), or on this thread with
// OpenBLAS's own threads when the pool is off.
typedef struct {
  const AttnDims *d;
  const float *q, *k, *v, *km, *dout, *probs;
  const int64_t *fk;
  float *out, *probs_out, *dq, *dk, *dv, *scratch;
} AttnCtx;

static void attn_fwd_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  AttnCtx *c = p;
  for (int64_t bg = lo; bg < hi; bg++)
    attn_fwd_group(c->d, bg / c->d->KV, bg % c->d->KV, c->q, c->k, c->v, c->km, c->fk, c->out, c->probs_out);
}

static void attn_bwd_job(void *p, int64_t lo, int64_t hi, int tid) {
  AttnCtx *c = p;
  float *dP = c->scratch + (size_t)tid * (size_t)(c->d->rep * c->d->T * c->d->T);
  for (int64_t bg = lo; bg < hi; bg++)
    attn_bwd_group(c->d, bg / c->d->KV, bg % c->d->KV, c->dout, c->q, c->k, c->v, c->probs, c->dq, c->dk, c->dv, dP);
}

// par_range over the (batch, kv group) pairs, OpenBLAS single-threaded while the pool runs.
static void attn_run(const AttnDims *d, range_fn fn, AttnCtx *c) {
  const int64_t groups = d->B * d->KV;
  const double work = (double)d->B * d->H * d->T * d->T * 4;
  if (par_threads(work) > 1 && groups > 1) {
    const int blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
    par_range(groups, work, fn, c);
    openblas_set_num_threads(blas);
  } else {
    fn(c, 0, groups, 0);
  }
}

static napi_value attention_forward(napi_env env, napi_callback_info info) {
  napi_value buf[19];
  Args a;
  AttnDims d;
  if (!args_init(&a, env, info, buf, 19, "attentionForward") || !attn_dims(&a, &d)) return NULL;
  const int64_t B = d.B, H = d.H, KV = d.KV, T = d.T, dh = d.dh;
  const double nq = (double)B * H * T * dh, nk = (double)B * KV * T * dh;
  const float *q = arg_f32(&a, "q", nq, false), *k = arg_f32(&a, "k", nk, false), *v = arg_f32(&a, "v", nk, false);
  const float *km = arg_f32(&a, "keyMask", (double)B * T, true);
  float *out = arg_f32(&a, "out", nq, false), *probs = arg_f32(&a, "probs", (double)B * H * T * T, false);
  if (!args_done(&a) || B * H * T == 0) return NULL;
  if (dh == 0) memset(out, 0, sizeof(float) * (size_t)nq);
  int64_t *fk = NULL;
  if (km && !(fk = first_keys(km, B, T))) {
    napi_throw_error(env, NULL, "blas_addon.attentionForward: out of memory");
    return NULL;
  }
  AttnCtx c = {.d = &d, .q = q, .k = k, .v = v, .km = km, .fk = fk, .out = out, .probs_out = probs};
  attn_run(&d, attn_fwd_job, &c);
  free(fk);
  return NULL;
}

static napi_value attention_backward(napi_env env, napi_callback_info info) {
  napi_value buf[25];
  Args a;
  AttnDims d;
  if (!args_init(&a, env, info, buf, 25, "attentionBackward") || !attn_dims(&a, &d)) return NULL;
  const int64_t B = d.B, H = d.H, KV = d.KV, T = d.T, dh = d.dh, rep = d.rep;
  const double nq = (double)B * H * T * dh, nk = (double)B * KV * T * dh;
  const float *dout = arg_f32(&a, "dout", nq, false), *q = arg_f32(&a, "q", nq, false);
  const float *k = arg_f32(&a, "k", nk, false), *v = arg_f32(&a, "v", nk, false);
  const float *probs = arg_f32(&a, "probs", (double)B * H * T * T, false);
  float *dq = arg_f32(&a, "dq", nq, false), *dk = arg_f32(&a, "dk", nk, false), *dv = arg_f32(&a, "dv", nk, false);
  if (!args_done(&a)) return NULL;
  if (B * H * T * dh == 0) {
    if (nq > 0) memset(dq, 0, sizeof(float) * (size_t)nq);
    if (nk > 0) {
      memset(dk, 0, sizeof(float) * (size_t)nk);
      memset(dv, 0, sizeof(float) * (size_t)nk);
    }
    return NULL;
  }
  const int nt = par_threads((double)B * H * T * T * 4);
  float *scratch = malloc(sizeof(float) * (size_t)nt * (size_t)(rep * T * T));
  if (!scratch) {
    napi_throw_error(env, NULL, "blas_addon.attentionBackward: out of memory");
    return NULL;
  }
  AttnCtx c = {.d = &d, .q = q, .k = k, .v = v, .dout = dout, .probs = probs, .dq = dq, .dk = dk, .dv = dv,
               .scratch = scratch};
  attn_run(&d, attn_bwd_job, &c);
  free(scratch);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// AdamW, in place, the same float32 operations in the same order as the TF.js composition in
// tune/optim.ts: m1 = m*b1 + g*omb1; v1 = v*b2 + (g*g)*omb2; upd = m1 / (sqrt(v1)/sqrtC2 + eps);
// w1 = w - upd*lrC1; w1 = w1 - w*lrWd (when lrWd != 0). All scalars are float32 (as tf scalars).

typedef struct {
  float b1, omb1, b2, omb2, sqrtC2, eps, lrC1, lrWd;
} AdamScalars;

EDGETUNE_CLONES static void adamw_range(float *w, float *m, float *v, const float *g, int64_t i0, int64_t i1,
                                        AdamScalars s) {
  if (s.lrWd != 0.f) {
    for (int64_t i = i0; i < i1; i++) {
      const float m1 = m[i] * s.b1 + g[i] * s.omb1;
      const float v1 = v[i] * s.b2 + (g[i] * g[i]) * s.omb2;
      const float upd = m1 / (sqrtf(v1) / s.sqrtC2 + s.eps);
      const float w0 = w[i];
      w[i] = (w0 - upd * s.lrC1) - w0 * s.lrWd;
      m[i] = m1;
      v[i] = v1;
    }
  } else {
    for (int64_t i = i0; i < i1; i++) {
      const float m1 = m[i] * s.b1 + g[i] * s.omb1;
      const float v1 = v[i] * s.b2 + (g[i] * g[i]) * s.omb2;
      const float upd = m1 / (sqrtf(v1) / s.sqrtC2 + s.eps);
      w[i] = w[i] - upd * s.lrC1;
      m[i] = m1;
      v[i] = v1;
    }
  }
}

typedef struct {
  float *w, *m, *v;
  const float *g;
  AdamScalars s;
} AdamCtx;

static void adamw_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  AdamCtx *c = p;
  adamw_range(c->w, c->m, c->v, c->g, lo, hi, c->s);
}

static napi_value adamw(napi_env env, napi_callback_info info) {
  napi_value buf[17];
  Args a;
  if (!args_init(&a, env, info, buf, 17, "adamw")) return NULL;
  const int64_t n = arg_size(&a, "n");
  float *w = arg_f32(&a, "w", (double)n, false), *m = arg_f32(&a, "m", (double)n, false);
  float *v = arg_f32(&a, "v", (double)n, false);
  const float *g = arg_f32(&a, "g", (double)n, false);
  AdamScalars s;
  s.b1 = (float)arg_num(&a, "b1");
  s.omb1 = (float)arg_num(&a, "omb1");
  s.b2 = (float)arg_num(&a, "b2");
  s.omb2 = (float)arg_num(&a, "omb2");
  s.sqrtC2 = (float)arg_num(&a, "sqrtC2");
  s.eps = (float)arg_num(&a, "eps");
  s.lrC1 = (float)arg_num(&a, "lrC1");
  s.lrWd = (float)arg_num(&a, "lrWd");
  if (!args_done(&a)) return NULL;
  AdamCtx c = {.w = w, .m = m, .v = v, .g = g, .s = s};
  par_range(n, 7.0 * n, adamw_job, &c);
  return NULL;
}

static napi_value sum_squares(napi_env env, napi_callback_info info) {
  napi_value buf[3];
  Args a;
  if (!args_init(&a, env, info, buf, 3, "sumSquares")) return NULL;
  const int64_t n = arg_size(&a, "n");
  const float *x = arg_f32(&a, "x", (double)n, false);
  if (!args_done(&a)) return NULL;
  double s = 0;
  for (int64_t i = 0; i < n; i += 65536) s += sum_sq(x + i, n - i < 65536 ? n - i : 65536);
  napi_value r;
  if (napi_create_double(env, s, &r) != napi_ok) return NULL;
  return r;
}

// ---------------------------------------------------------------------------------------------
// y = a + b elementwise (same length): the residual adds and gradient accumulations of a step.

EDGETUNE_CLONES static void add_range(const float *a, const float *b, float *y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i++) y[i] = a[i] + b[i];
}

typedef struct {
  const float *a, *b;
  float *y;
} AddCtx;

static void add_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  AddCtx *c = p;
  add_range(c->a, c->b, c->y, lo, hi);
}

static napi_value add_f32(napi_env env, napi_callback_info info) {
  napi_value buf[7];
  Args a;
  if (!args_init(&a, env, info, buf, 7, "add")) return NULL;
  const int64_t n = arg_size(&a, "n");
  const float *x = arg_f32(&a, "a", (double)n, false), *y = arg_f32(&a, "b", (double)n, false);
  float *out = arg_f32(&a, "out", (double)n, false);
  if (!args_done(&a)) return NULL;
  AddCtx c = {.a = x, .b = y, .y = out};
  par_range(n, 3.0 * n, add_job, &c);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// Dropout with a counter-based mask: element i is kept when hash(seed, i) >= rate * 2^32.

static inline uint32_t mix32(uint32_t x) {  // "lowbias32" (C. Wellons, hash-prospector)
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

typedef struct {
  uint32_t k0, k1, thr;
  float scale;
} DropKey;

static DropKey drop_key(double rate, double seed) {
  DropKey k;
  const uint64_t s = (uint64_t)(int64_t)seed;
  k.k0 = mix32((uint32_t)s ^ 0x9e3779b9U);
  k.k1 = mix32((uint32_t)(s >> 32) ^ k.k0 ^ 0x85ebca6bU);
  const double t = rate * 4294967296.0;
  k.thr = t >= 4294967295.0 ? 4294967295U : (uint32_t)t;
  k.scale = 1.f / (float)(1.0 - rate);
  return k;
}

// xd = drop(x row starting at flat index `base`), or a copy when rate = 0. x may equal xd.
EDGETUNE_CLONES static void drop_row(const float *x, float *xd, int64_t base, int64_t n, const DropKey *key, bool on) {
  if (!on) {
    if (xd != x) memcpy(xd, x, sizeof(float) * (size_t)n);
    return;
  }
  const uint32_t k0 = key->k0, k1 = key->k1, thr = key->thr, b = (uint32_t)base;
  const float scale = key->scale;
  for (int64_t j = 0; j < n; j++) {
    const uint32_t h = mix32(mix32(b + (uint32_t)j + k0) ^ k1);
    xd[j] = x[j] * (h >= thr ? scale : 0.f);
  }
}

EDGETUNE_CLONES static void dropout_range(const float *x, float *y, int64_t i0, int64_t i1, DropKey k) {
  drop_row(x + i0, y + i0, i0, i1 - i0, &k, true);
}

typedef struct {
  const float *x;
  float *y;
  DropKey k;
} DropCtx;

static void dropout_job(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  DropCtx *c = p;
  dropout_range(c->x, c->y, lo, hi, c->k);
}

static napi_value dropout_common(napi_env env, napi_callback_info info, const char *fn) {
  napi_value buf[7];
  Args a;
  if (!args_init(&a, env, info, buf, 7, fn)) return NULL;
  const int64_t n = arg_size(&a, "n");
  const double rate = arg_num(&a, "rate"), seed = arg_num(&a, "seed");
  const float *x = arg_f32(&a, "x", (double)n, false);
  float *y = arg_f32(&a, "y", (double)n, false);
  if (!args_done(&a)) return NULL;
  if (!(rate >= 0 && rate < 1) || !(fabs(seed) <= 9.0e15) || seed != floor(seed)) {
    napi_throw_range_error(env, NULL, "blas_addon.dropout: need 0 <= rate < 1 and an integer seed");
    return NULL;
  }
  const DropKey k = drop_key(rate, seed);
  DropCtx c = {.x = x, .y = y, .k = k};
  par_range(n, 3.0 * n, dropout_job, &c);
  return NULL;
}

static napi_value dropout_forward(napi_env env, napi_callback_info info) {
  return dropout_common(env, info, "dropoutForward");
}
static napi_value dropout_backward(napi_env env, napi_callback_info info) {
  return dropout_common(env, info, "dropoutBackward");  // dx = dy * mask * scale: the same map
}

// ---------------------------------------------------------------------------------------------
// Linear with a LoRA branch (PEFT LoraLayer, no bias): x [n, in], W [out, in], A [r, in], B [out, r],
//   y = x W^T + scale * (drop(x) A^T) B^T,
// drop = the dropout above with (rate, seed) over the elements of x (identity when rate = 0). The
// main product goes to OpenBLAS; the rank-r branch runs as one pass over the rows (x, y or dy, dx),
// instead of skinny GEMMs (memory-bound, badly threaded) plus dropout, scale and add kernels.

// y[o] += sum_k l[k] * M[k*n + o] over k < r (M [r, n] row-major), four k per pass over y.
EDGETUNE_CLONES static void gemv_t_acc(float *restrict y, const float *restrict M, const float *restrict l, int64_t r,
                                       int64_t n) {
  int64_t k = 0;
  for (; k + 4 <= r; k += 4) {
    const float l0 = l[k], l1 = l[k + 1], l2 = l[k + 2], l3 = l[k + 3];
    const float *m0 = M + k * n, *m1 = m0 + n, *m2 = m1 + n, *m3 = m2 + n;
    for (int64_t o = 0; o < n; o++) y[o] += (l0 * m0[o] + l1 * m1[o]) + (l2 * m2[o] + l3 * m3[o]);
  }
  for (; k < r; k++) {
    const float lk = l[k];
    const float *m = M + k * n;
    for (int64_t o = 0; o < n; o++) y[o] += lk * m[o];
  }
}

// out[k] = scale * dot(M[k*n ...], v) for k < r (M [r, n] row-major): four rows of M per pass over v.
EDGETUNE_CLONES static void multi_dot(const float *restrict M, const float *restrict v, int64_t r, int64_t n, float scale,
                                      float *restrict out) {
  int64_t k = 0;
  for (; k + 4 <= r; k += 4) {
    float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
    const float *m0 = M + k * n, *m1 = m0 + n, *m2 = m1 + n, *m3 = m2 + n;
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
      for (int l = 0; l < LANES; l++) {
        const float x = v[j + l];
        a0[l] += m0[j + l] * x;
        a1[l] += m1[j + l] * x;
        a2[l] += m2[j + l] * x;
        a3[l] += m3[j + l] * x;
      }
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int l = 0; l < LANES; l++) {
      s0 += a0[l];
      s1 += a1[l];
      s2 += a2[l];
      s3 += a3[l];
    }
    for (; j < n; j++) {
      s0 += (double)m0[j] * v[j];
      s1 += (double)m1[j] * v[j];
      s2 += (double)m2[j] * v[j];
      s3 += (double)m3[j] * v[j];
    }
    out[k] = scale * (float)s0;
    out[k + 1] = scale * (float)s1;
    out[k + 2] = scale * (float)s2;
    out[k + 3] = scale * (float)s3;
  }
  for (; k < r; k++) out[k] = scale * (float)dot2(M + k * n, v, n);
}

// acc[k*n + j] += c[k]*x0[j] + c[r+k]*x1[j] + c[2r+k]*x2[j] + c[3r+k]*x3[j] for k < r: four rank-1
// updates of acc [r, n] per pass over it.
EDGETUNE_CLONES static void rank4_update(float *restrict acc, const float *restrict c, const float *x0, const float *x1,
                                         const float *x2, const float *x3, int64_t r, int64_t n) {
  for (int64_t k = 0; k < r; k++) {
    const float c0 = c[k], c1 = c[r + k], c2 = c[2 * r + k], c3 = c[3 * r + k];
    float *restrict a = acc + k * n;
    for (int64_t j = 0; j < n; j++) a[j] += (c0 * x0[j] + c1 * x1[j]) + (c2 * x2[j] + c3 * x3[j]);
  }
}

typedef struct {
  int64_t n, in, out, r;
  float scale;
  bool drop;
  DropKey key;
} LoraDims;

static bool lora_dims(Args *a, LoraDims *d) {
  d->n = arg_size(a, "n");
  d->in = arg_size(a, "in");
  d->out = arg_size(a, "out");
  d->r = arg_size(a, "r");
  d->scale = (float)arg_num(a, "scale");
  const double rate = arg_num(a, "rate"), seed = arg_num(a, "seed");
  if (!a->ok) return false;
  if (!(rate >= 0 && rate < 1) || !(fabs(seed) <= 9.0e15) || seed != floor(seed) || d->in > INT32_MAX ||
      d->out > INT32_MAX || d->n > INT32_MAX || d->r > 4096) {
    napi_throw_range_error(a->env, NULL, "blas_addon.loraLinear: need 0 <= rate < 1, an integer seed, 32-bit sizes");
    a->ok = false;
    return false;
  }
  d->drop = rate > 0;
  d->key = drop_key(rate, seed);
  return true;
}

typedef struct {
  const LoraDims *d;
  const float *x, *dy, *A, *Bt, *dlow;
  float *y, *dx, *scratch;  // scratch: per thread
  float *dlowOut;           // lora_dab: the rows' dlow [n, r] (optional)
  double *acc;              // lora_dab: per thread, r*(in+out)
  size_t per;               // floats of scratch per thread
} LoraCtx;

// Bt [r, out] = B^T, so the rows of the branch work on contiguous vectors.
static float *transpose_b(const float *b, int64_t out, int64_t r) {
  float *bt = malloc(sizeof(float) * (size_t)(out * r + 1));
  if (!bt) return NULL;
  for (int64_t o = 0; o < out; o++)
    for (int64_t k = 0; k < r; k++) bt[k * out + o] = b[o * r + k];
  return bt;
}

// y_i += Bt^T (scale * A drop(x_i)) for rows [r0, r1). xd: `in` floats, low: r floats.
static void lora_fwd_rows(const LoraDims *d, const float *x, const float *A, const float *Bt, float *y, float *xd,
                          float *low, int64_t r0, int64_t r1) {
  const int64_t in = d->in, out = d->out, r = d->r;
  for (int64_t i = r0; i < r1; i++) {
    const float *xi = x + i * in;
    if (d->drop) drop_row(xi, xd, i * in, in, &d->key, true);
    const float *src = d->drop ? xd : xi;
    multi_dot(A, src, r, in, d->scale, low);
    gemv_t_acc(y + i * out, Bt, low, r, out);
  }
}

// dx_i += drop'(A^T (scale * Bt dy_i)) for rows [r0, r1) (drop' = the forward mask and scale).
// dlowAll: the rows' dlow [n, r] when the caller has them (loraLinearGradAB outputs them), else NULL.
static void lora_dx_rows(const LoraDims *d, const float *dy, const float *A, const float *Bt, const float *dlowAll,
                         float *dx, float *t, float *dlowBuf, int64_t r0, int64_t r1) {
  const int64_t in = d->in, out = d->out, r = d->r;
  for (int64_t i = r0; i < r1; i++) {
    const float *dlow = dlowBuf;
    if (dlowAll) dlow = dlowAll + i * r;
    else multi_dot(Bt, dy + i * out, r, out, d->scale, dlowBuf);
    float *dxi = dx + i * in;
    if (!d->drop) {
      gemv_t_acc(dxi, A, dlow, r, in);
      continue;
    }
    memset(t, 0, sizeof(float) * (size_t)in);
    gemv_t_acc(t, A, dlow, r, in);
    drop_row(t, t, i * in, in, &d->key, true);
    for (int64_t j = 0; j < in; j++) dxi[j] += t[j];
  }
}

// Partial sums over rows [r0, r1): accA [r, in] += dlow_i xd_i^T and accBt [r, out] += low_i dy_i^T
// with low_i = scale * A xd_i, dlow_i = scale * Bt dy_i, xd_i = drop(x_i). Rows go four at a time
// through rank-4 updates of float block sums (64 rows), flushed into the float64 sums.
static void lora_dab_rows(const LoraDims *d, const float *dy, const float *x, const float *A, const float *Bt,
                          double *accA, double *accBt, float *blkA, float *blkB, float *xd4, const float *zeros,
                          float *coef, float *dlowOut, int64_t r0, int64_t r1) {
  const int64_t in = d->in, out = d->out, r = d->r;
  float *low = coef, *dlow = coef + 4 * r;
  for (int64_t b0 = r0; b0 < r1; b0 += 64) {
    const int64_t b1 = b0 + 64 < r1 ? b0 + 64 : r1;
    memset(blkA, 0, sizeof(float) * (size_t)(r * in));
    memset(blkB, 0, sizeof(float) * (size_t)(r * out));
    for (int64_t i0 = b0; i0 < b1; i0 += 4) {
      const float *xs[4], *dys[4];
      for (int64_t q = 0; q < 4; q++) {
        const int64_t i = i0 + q;
        if (i >= b1) {
          xs[q] = dys[q] = zeros;
          for (int64_t k = 0; k < r; k++) low[q * r + k] = dlow[q * r + k] = 0.f;
          continue;
        }
        xs[q] = x + i * in;
        if (d->drop) {
          drop_row(xs[q], xd4 + q * in, i * in, in, &d->key, true);
          xs[q] = xd4 + q * in;
        }
        dys[q] = dy + i * out;
        multi_dot(A, xs[q], r, in, d->scale, low + q * r);
        multi_dot(Bt, dys[q], r, out, d->scale, dlow + q * r);
        if (dlowOut) memcpy(dlowOut + i * r, dlow + q * r, sizeof(float) * (size_t)r);
      }
      rank4_update(blkA, dlow, xs[0], xs[1], xs[2], xs[3], r, in);
      rank4_update(blkB, low, dys[0], dys[1], dys[2], dys[3], r, out);
    }
    for (int64_t j = 0; j < r * in; j++) accA[j] += blkA[j];
    for (int64_t j = 0; j < r * out; j++) accBt[j] += blkB[j];
  }
}

static void lora_fwd_job(void *p, int64_t lo, int64_t hi, int tid) {
  LoraCtx *c = p;
  float *xd = c->scratch + (size_t)tid * c->per;
  lora_fwd_rows(c->d, c->x, c->A, c->Bt, c->y, xd, xd + c->d->in, lo, hi);
}

static void lora_dx_job(void *p, int64_t lo, int64_t hi, int tid) {
  LoraCtx *c = p;
  float *t = c->scratch + (size_t)tid * c->per;
  lora_dx_rows(c->d, c->dy, c->A, c->Bt, c->dlow, c->dx, t, t + c->d->in, lo, hi);
}

static void lora_dab_job(void *p, int64_t lo, int64_t hi, int tid) {
  LoraCtx *c = p;
  const LoraDims *d = c->d;
  const int64_t in = d->in, out = d->out, r = d->r;
  double *accA = c->acc + (size_t)tid * (size_t)(r * (in + out));
  float *s = c->scratch + (size_t)tid * c->per;
  float *xd4 = s + r * (in + out), *zeros = xd4 + 4 * in, *coef = zeros + (in > out ? in : out);
  lora_dab_rows(d, c->dy, c->x, c->A, c->Bt, accA, accA + r * in, s, s + r * in, xd4, zeros, coef, c->dlowOut, lo, hi);
}
/**
 * Runs the low-rank branch `job` over the rows of c->d in parallel: transposes B [out, r] once, gives each
 * thread (in + r) floats of scratch, frees both. Throws `oom` (a JS Error) when allocation fails.
 */
static void lora_branch(napi_env env, LoraCtx *c, const float *B, range_fn job, const char *oom) {
  const LoraDims *d = c->d;
  float *Bt = transpose_b(B, d->out, d->r);
  const double work = (double)d->n * (d->in + d->out) * d->r / 4;
  const int nt = par_threads(work);
  float *scratch = malloc(sizeof(float) * (size_t)nt * (size_t)(d->in + d->r));
  if (!Bt || !scratch) {
    free(Bt);
    free(scratch);
    napi_throw_error(env, NULL, oom);
    return;
  }
  c->Bt = Bt;
  c->scratch = scratch;
  c->per = (size_t)(d->in + d->r);
  par_range(d->n, work, job, c);
  free(Bt);
  free(scratch);
}


static napi_value lora_linear_forward(napi_env env, napi_callback_info info) {
  napi_value buf[17];
  Args a;
  LoraDims d;
  if (!args_init(&a, env, info, buf, 17, "loraLinearForward") || !lora_dims(&a, &d)) return NULL;
  const float *x = arg_f32(&a, "x", (double)d.n * d.in, false), *w = arg_f32(&a, "w", (double)d.out * d.in, false);
  const float *A = arg_f32(&a, "a", (double)d.r * d.in, false), *B = arg_f32(&a, "b", (double)d.out * d.r, false);
  float *y = arg_f32(&a, "y", (double)d.n * d.out, false);
  if (!args_done(&a) || d.n * d.out == 0) return NULL;
  if (d.in == 0) {
    memset(y, 0, sizeof(float) * (size_t)(d.n * d.out));
    return NULL;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d.n, (int)d.out, (int)d.in, 1.f, x, (int)d.in, w,
              (int)d.in, 0.f, y, (int)d.out);
  if (d.r == 0) return NULL;
  LoraCtx c = {.d = &d, .x = x, .A = A, .y = y};
  lora_branch(env, &c, B, lora_fwd_job, "blas_addon.loraLinearForward: out of memory");
  return NULL;
}

static napi_value lora_linear_grad_x(napi_env env, napi_callback_info info) {
  napi_value buf[19];
  Args a;
  LoraDims d;
  if (!args_init(&a, env, info, buf, 19, "loraLinearGradX") || !lora_dims(&a, &d)) return NULL;
  const float *dy = arg_f32(&a, "dy", (double)d.n * d.out, false), *w = arg_f32(&a, "w", (double)d.out * d.in, false);
  const float *A = arg_f32(&a, "a", (double)d.r * d.in, false), *B = arg_f32(&a, "b", (double)d.out * d.r, false);
  const float *dlow = arg_f32(&a, "dlow", (double)d.n * d.r, true);
  float *dx = arg_f32(&a, "dx", (double)d.n * d.in, false);
  if (!args_done(&a) || d.n * d.in == 0) return NULL;
  if (d.out == 0) {
    memset(dx, 0, sizeof(float) * (size_t)(d.n * d.in));
    return NULL;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d.n, (int)d.in, (int)d.out, 1.f, dy, (int)d.out, w,
              (int)d.in, 0.f, dx, (int)d.in);
  if (d.r == 0) return NULL;
  LoraCtx c = {.d = &d, .dy = dy, .A = A, .dlow = dlow, .dx = dx};
  lora_branch(env, &c, B, lora_dx_job, "blas_addon.loraLinearGradX: out of memory");
  return NULL;
}

static napi_value lora_linear_grad_ab(napi_env env, napi_callback_info info) {
  napi_value buf[21];
  Args a;
  LoraDims d;
  if (!args_init(&a, env, info, buf, 21, "loraLinearGradAB") || !lora_dims(&a, &d)) return NULL;
  const int64_t n = d.n, in = d.in, out = d.out, r = d.r;
  const float *dy = arg_f32(&a, "dy", (double)n * out, false), *x = arg_f32(&a, "x", (double)n * in, false);
  const float *A = arg_f32(&a, "a", (double)r * in, false), *B = arg_f32(&a, "b", (double)out * r, false);
  float *da = arg_f32(&a, "da", (double)r * in, false), *db = arg_f32(&a, "db", (double)out * r, false);
  float *dlowOut = arg_f32(&a, "dlow", (double)n * r, true);
  if (!args_done(&a) || r * (in + out) == 0) return NULL;
  const double work = (double)n * (in + out) * r / 2;
  const int nt = par_threads(work);
  const size_t per = (size_t)(r * (in + out));                     // accumulators per thread
  const size_t fper = per + (size_t)(4 * in + (in > out ? in : out) + 8 * r);  // float scratch per thread
  float *Bt = transpose_b(B, out, r);
  double *acc = calloc((size_t)nt * per + 1, sizeof(double));
  float *scratch = calloc((size_t)nt * fper + 1, sizeof(float));
  if (!Bt || !acc || !scratch) {
    free(Bt);
    free(acc);
    free(scratch);
    napi_throw_error(env, NULL, "blas_addon.loraLinearGradAB: out of memory");
    return NULL;
  }
  LoraCtx c = {.d = &d, .dy = dy, .x = x, .A = A, .Bt = Bt, .scratch = scratch, .acc = acc, .per = fper,
               .dlowOut = dlowOut};
  par_range(n, work, lora_dab_job, &c);
  for (int64_t j = 0; j < r * in; j++) {
    double v = 0;
    for (int t = 0; t < nt; t++) v += acc[(size_t)t * per + (size_t)j];
    da[j] = (float)v;
  }
  for (int64_t k = 0; k < r; k++)
    for (int64_t o = 0; o < out; o++) {
      double v = 0;
      for (int t = 0; t < nt; t++) v += acc[(size_t)t * per + (size_t)(r * in + k * out + o)];
      db[o * r + k] = (float)v;
    }
  free(Bt);
  free(acc);
  free(scratch);
  return NULL;
}

// ---------------------------------------------------------------------------------------------

napi_status edgetune_register_fused(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"setFusedThreads", set_fused_threads}, {"getFusedThreads", get_fused_threads},
      {"rmsNormForward", rms_norm_forward},   {"rmsNormBackward", rms_norm_backward},
      {"swigluForward", swiglu_forward},      {"swigluBackward", swiglu_backward},
      {"ropeForward", rope_forward},          {"ropeBackward", rope_backward},
      {"attentionForward", attention_forward}, {"attentionBackward", attention_backward},
      {"adamw", adamw},                       {"sumSquares", sum_squares},
      {"dropoutForward", dropout_forward},    {"dropoutBackward", dropout_backward},
      {"loraLinearForward", lora_linear_forward}, {"loraLinearGradX", lora_linear_grad_x},
      {"loraLinearGradAB", lora_linear_grad_ab}, {"add", add_f32},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_status st = napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &f);
    if (st != napi_ok) return st;
    st = napi_set_named_property(env, exports, fns[i].name, f);
    if (st != napi_ok) return st;
  }
  return napi_ok;
}
