// Which BLAS the addon calls; scripts/build-native.mjs picks the variant:
//   default             the system's cblas.h, linked against OpenBLAS
//   EDGETUNE_CBLAS_MIN  cblas_min.h, linked against an OpenBLAS runtime installed without its -dev headers
//   EDGETUNE_NO_BLAS    no BLAS: the GEMMs inside the fused kernels run sgemm_ref.c's plain C loops and
//                       the addon reports hasBlas = false (the engine keeps tf.matMul on its wasm kernel)
#ifndef EDGETUNE_BLAS_H
#define EDGETUNE_BLAS_H

#ifdef EDGETUNE_NO_BLAS
#define EDGETUNE_HAS_BLAS 0
// Renamed before the prototypes below, so they declare sgemm_ref.c's functions.
#define cblas_sgemm edgetune_sgemm_ref
#define openblas_set_num_threads edgetune_ref_set_threads
#define openblas_get_num_threads edgetune_ref_get_threads
#define openblas_get_config edgetune_ref_config
#define openblas_get_corename edgetune_ref_config
#else
#define EDGETUNE_HAS_BLAS 1
#endif

#if defined(EDGETUNE_NO_BLAS) || defined(EDGETUNE_CBLAS_MIN)
#include "cblas_min.h"
#else
#include <cblas.h>
#endif

// OpenBLAS extensions (declared by OpenBLAS's cblas.h, repeated here for cblas_min.h and other cblas.h copies).
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

#endif
