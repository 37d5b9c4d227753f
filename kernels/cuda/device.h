// Whether a CUDA device can run the kernels here. Tests labelled `gpu` skip
// cleanly when it says no (a machine with the toolkit but no GPU, as in CI).
#pragma once

#include <string>

namespace vigil::kernels::cuda {

bool DeviceAvailable(std::string* why = nullptr);

}  // namespace vigil::kernels::cuda
