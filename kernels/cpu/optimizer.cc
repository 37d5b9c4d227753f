#include "kernels/cpu/optimizer.h"

#include <algorithm>
#include <cmath>

#include "kernels/shared_math.h"

namespace vigil::kernels::cpu {

void AdamWUpdate(float* params, const float* grads, float* m, float* v, long n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, long t) {
  const float c1 = 1.0f - std::pow(beta1, static_cast<float>(t));
  const float c2 = 1.0f - std::pow(beta2, static_cast<float>(t));
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) {
    AdamWElement(params[i], grads[i], m[i], v[i], lr, beta1, beta2, eps, weight_decay, c1, c2);
  }
}

void SgdUpdate(float* params, const float* grads, long n, float lr, float weight_decay) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) params[i] -= lr * (grads[i] + weight_decay * params[i]);
}

double SumOfSquares(const float* x, long n) {
  // Partial sums over a fixed number of chunks, added in chunk order: the
  // same bits for any thread count.
  constexpr long kChunks = 64;
  double partial[kChunks] = {};
  const long chunk = (n + kChunks - 1) / kChunks;
#pragma omp parallel for schedule(static)
  for (long k = 0; k < kChunks; ++k) {
    double sq = 0.0;
    const long end = std::min(n, (k + 1) * chunk);
    for (long i = k * chunk; i < end; ++i) sq += static_cast<double>(x[i]) * x[i];
    partial[k] = sq;
  }
  double sq = 0.0;
  for (double p : partial) sq += p;
  return sq;
}

float ClipScale(double sum_of_squares, float max_norm) {
  const float norm = static_cast<float>(std::sqrt(sum_of_squares));
  return (max_norm > 0.0f && norm > max_norm) ? max_norm / (norm + 1e-6f) : 1.0f;
}

void Scale(float* x, long n, float s) {
  if (s == 1.0f) return;
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) x[i] *= s;
}

float ClipGradNorm(float* grads, long n, float max_norm) {
  const double sq = SumOfSquares(grads, n);
  Scale(grads, n, ClipScale(sq, max_norm));
  return static_cast<float>(std::sqrt(sq));
}

}  // namespace vigil::kernels::cpu
