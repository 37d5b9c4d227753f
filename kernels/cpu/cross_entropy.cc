#include "kernels/cpu/cross_entropy.h"

#include <cmath>
#include <vector>

namespace vigil::kernels::cpu {

float CrossEntropyForwardBackward(float* dlogits, const float* logits, const int32_t* targets,
                                  int N, int V) {
  std::vector<double> row_loss(N);
  const float invN = 1.0f / static_cast<float>(N);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; ++i) {
    const float* z = logits + static_cast<long>(i) * V;
    float maxv = z[0];
    for (int v = 1; v < V; ++v) maxv = z[v] > maxv ? z[v] : maxv;
    float sum = 0.0f;
    for (int v = 0; v < V; ++v) sum += std::exp(z[v] - maxv);
    const float logsum = std::log(sum) + maxv;
    row_loss[i] = logsum - z[targets[i]];
    if (dlogits) {
      float* dz = dlogits + static_cast<long>(i) * V;
      for (int v = 0; v < V; ++v) dz[v] = std::exp(z[v] - logsum) * invN;
      dz[targets[i]] -= invN;
    }
  }
  // Summed in row order whatever the thread count.
  double total = 0.0;
  for (double l : row_loss) total += l;
  return static_cast<float>(total / N);
}

}  // namespace vigil::kernels::cpu
