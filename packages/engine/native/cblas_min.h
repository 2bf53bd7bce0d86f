// The part of the CBLAS interface the addon uses, declared as OpenBLAS's cblas.h declares it (LP64
// build, 32-bit int sizes). For machines with the OpenBLAS runtime (libopenblas.so.0) but without its
// -dev headers; scripts/build-native.mjs defines EDGETUNE_CBLAS_MIN only when no cblas.h is found.
#ifndef EDGETUNE_CBLAS_MIN_H
#define EDGETUNE_CBLAS_MIN_H

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113, CblasConjNoTrans = 114 };

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE transA, enum CBLAS_TRANSPOSE transB, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
