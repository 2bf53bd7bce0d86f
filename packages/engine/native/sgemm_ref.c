// Plain C SGEMM for addons built without BLAS (EDGETUNE_NO_BLAS, see blas.h): the GEMMs inside the
// fused kernels (attention, LoRA linear) call it under the cblas_sgemm name. Rows of C are split
// over fused.c's thread pool (a call from inside a pool job runs on its own thread); the loops are
// cache-blocked and vectorized per row, far from OpenBLAS's packed micro-kernels but without a
// dependency. The "threads" below only record setThreads for getThreads/info.
#include <stdbool.h>
#include <stdint.h>

#include "blas.h"
#include "vmath.h"

typedef void (*edgetune_range_fn)(void *ctx, int64_t lo, int64_t hi, int tid);
void edgetune_par_range(int64_t n, double work, edgetune_range_fn fn, void *ctx);

enum { NB = 256, KB = 128, L = 16 };  // column and depth blocks (a KB x NB panel of B is 128 KiB); dot lanes

typedef struct {
  bool ta, tb;
  int64_t N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
} Gemm;

// c[0, n) += a * b[0, n)
EDGETUNE_CLONES static void axpy(int64_t n, float a, const float *b, float *c) {
  for (int64_t j = 0; j < n; j++) c[j] += a * b[j];
}

// Dot product with lane-wise partial sums (vectorizable).
EDGETUNE_CLONES static float dot(int64_t n, const float *a, const float *b) {
  float acc[L] = {0};
  int64_t k = 0;
  for (; k + L <= n; k += L)
    for (int l = 0; l < L; l++) acc[l] += a[k + l] * b[k + l];
  float s = 0;
  for (int l = 0; l < L; l++) s += acc[l];
  for (; k < n; k++) s += a[k] * b[k];
  return s;
}

static inline float op_a(const Gemm *g, int64_t i, int64_t k) {
  return g->ta ? g->A[k * g->lda + i] : g->A[i * g->lda + k];
}

// Rows [lo, hi) of C = alpha op(A) op(B) + beta C.
static void gemm_rows(void *p, int64_t lo, int64_t hi, int tid) {
  (void)tid;
  const Gemm *g = p;
  const int64_t N = g->N, K = g->K;
  for (int64_t i = lo; i < hi; i++) {
    float *c = g->C + i * g->ldc;
    for (int64_t j = 0; j < N; j++) c[j] = g->beta == 0.f ? 0.f : g->beta * c[j];  // beta 0 ignores NaN in C
  }
  if (!g->tb) {  // rows of B are contiguous: C_i += (alpha A_ik) B_k
    for (int64_t j0 = 0; j0 < N; j0 += NB) {
      const int64_t nb = N - j0 < NB ? N - j0 : NB;
      for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const int64_t k1 = K - k0 < KB ? K : k0 + KB;
        for (int64_t i = lo; i < hi; i++)
          for (int64_t k = k0; k < k1; k++)
            axpy(nb, g->alpha * op_a(g, i, k), g->B + k * g->ldb + j0, g->C + i * g->ldc + j0);
      }
    }
  } else if (!g->ta) {  // B [N, K] and A [M, K]: C_ij += alpha A_i . B_j, blocked over K
    for (int64_t k0 = 0; k0 < K; k0 += KB * 4) {
      const int64_t kb = K - k0 < KB * 4 ? K - k0 : KB * 4;
      for (int64_t j0 = 0; j0 < N; j0 += 64) {
        const int64_t j1 = N - j0 < 64 ? N : j0 + 64;
        for (int64_t i = lo; i < hi; i++)
          for (int64_t j = j0; j < j1; j++)
            g->C[i * g->ldc + j] += g->alpha * dot(kb, g->A + i * g->lda + k0, g->B + j * g->ldb + k0);
      }
    }
  } else {  // both transposed: not used by the kernels, kept correct and simple
    for (int64_t i = lo; i < hi; i++)
      for (int64_t j = 0; j < N; j++) {
        float s = 0;
        for (int64_t k = 0; k < K; k++) s += op_a(g, i, k) * g->B[j * g->ldb + k];
        g->C[i * g->ldc + j] += g->alpha * s;
      }
  }
}

/** cblas_sgemm's contract (row- or column-major, op = transpose when Trans/ConjTrans; real floats). */
void edgetune_sgemm_ref(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE transA, enum CBLAS_TRANSPOSE transB, int M, int N,
                        int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc) {
  if (order == CblasColMajor) {  // column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T
    edgetune_sgemm_ref(CblasRowMajor, transB, transA, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
    return;
  }
  if (M <= 0 || N <= 0) return;
  Gemm g = {.ta = transA != CblasNoTrans, .tb = transB != CblasNoTrans, .N = N, .K = K < 0 ? 0 : K, .lda = lda,
            .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C};
  edgetune_par_range(M, (double)M * N * (K > 0 ? K : 1) / 8, gemm_rows, &g);
}

static int g_ref_threads = 1;

void edgetune_ref_set_threads(int n) {
  g_ref_threads = n;
}

int edgetune_ref_get_threads(void) {
  return g_ref_threads;
}

char *edgetune_ref_config(void) {
  return "none (plain C GEMM, no BLAS)";
}
