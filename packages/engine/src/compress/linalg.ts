/**
 * Dense float64 linear algebra for SparseGPT (TF.js has no Cholesky): Cholesky factorisation,
 * inverse from the factor (torch.cholesky_inverse), and the upper factor of that inverse
 * (IST-DASLab/sparsegpt `sparsegpt.py`: `H = cholesky(H); H = cholesky_inverse(H); H = cholesky(H, upper=True)`).
 * Matrices are row-major n x n Float64Arrays.
 */

/** Error for a matrix that is not symmetric positive definite. */
export class NotPositiveDefiniteError extends Error {
  constructor(readonly pivot: number) {
    super(`matrix is not positive definite (pivot ${pivot})`);
    this.name = 'NotPositiveDefiniteError';
  }
}

/**
 * Lower Cholesky factor L with A = L L^T.
 * @throws NotPositiveDefiniteError when a pivot is <= 0.
 */
export function cholesky(a: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
    if (!(d > 0)) throw new NotPositiveDefiniteError(j);
    const ljj = Math.sqrt(d);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      const ri = i * n,
        rj = j * n;
      for (let k = 0; k < j; k++) s -= L[ri + k] * L[rj + k];
      L[ri + j] = s / ljj;
    }
  }
  return L;
}

/** A^-1 from the lower factor L of A (inverts L, then L^-T L^-1). */
export function choleskyInverse(L: Float64Array, n: number): Float64Array {
  // Inverse of the lower-triangular L by forward substitution, column by column.
  const Li = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    Li[c * n + c] = 1 / L[c * n + c];
    for (let i = c + 1; i < n; i++) {
      let s = 0;
      for (let k = c; k < i; k++) s += L[i * n + k] * Li[k * n + c];
      Li[i * n + c] = -s / L[i * n + i];
    }
  }
  // A^-1 = Li^T Li (symmetric).
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = j; k < n; k++) s += Li[k * n + i] * Li[k * n + j];
      out[i * n + j] = out[j * n + i] = s;
    }
  }
  return out;
}

/** Upper factor U with A = U^T U (the transpose of the lower factor). */
export function choleskyUpper(a: Float64Array, n: number): Float64Array {
  const L = cholesky(a, n);
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) U[j * n + i] = L[i * n + j];
  return U;
}
