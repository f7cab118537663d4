// The Python extension module qlam._C. Importing it registers the qlam
// operators (static TORCH_LIBRARY blocks in this library); the module itself
// only reports how the library was built.
#include <pybind11/pybind11.h>

#include "gates.h"

#ifndef QLAM_WITH_CUDA
#define QLAM_WITH_CUDA 0
#endif
#ifndef QLAM_CUDA_ARCHS
#define QLAM_CUDA_ARCHS ""
#endif
#ifndef QLAM_CUDA_VERSION
#define QLAM_CUDA_VERSION ""
#endif
#ifndef QLAM_TORCH_VERSION
#define QLAM_TORCH_VERSION "unknown"
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "qlam's compiled kernels (the operators live in torch.ops.qlam)";
  m.def("build_info", [] {
    pybind11::dict info;
    info["with_cuda"] = bool(QLAM_WITH_CUDA);
    info["cuda_archs"] = std::string(QLAM_CUDA_ARCHS);
    info["cuda_version"] = std::string(QLAM_CUDA_VERSION);
    info["torch_version"] = std::string(QLAM_TORCH_VERSION);
    info["max_qubits"] = qlam::kMaxQubits;
    return info;
  });
}
