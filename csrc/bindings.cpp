// The Python extension module qlam._C. Importing it registers the qlam
// operators (static TORCH_LIBRARY blocks in this library); the module itself
// only reports how the library was built.
#include <pybind11/pybind11.h>

#include <string>

#include "gates.h"
#include "register_program.h"

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
  // The register kernels' lanes per state when torch.ops.qlam._register_forward / _backward get
  // lanes_per_state = 0 (register_program.h choose_lanes_per_state), for tests and the cost model
  // on machines without a GPU: the CUDA launch passes its device's multiprocessor count.
  m.def(
      "register_lanes_per_state",
      [](int n, int64_t states, int multiprocessors, bool float64, bool backward) {
        if (n < 1 || n > qlam::kMaxQubits || states < 0 || multiprocessors < 1)
          throw pybind11::value_error("register_lanes_per_state: need 1 <= n <= " +
                                      std::to_string(qlam::kMaxQubits) +
                                      ", states >= 0 and multiprocessors >= 1");
        namespace rp = qlam::regprog;
        const int max_r = backward ? (float64 ? rp::kMaxBackwardRegisters<double> : rp::kMaxBackwardRegisters<float>)
                                   : (float64 ? rp::kMaxForwardRegisters<double> : rp::kMaxForwardRegisters<float>);
        return rp::choose_lanes_per_state(int64_t(1) << n, states, multiprocessors, max_r);
      },
      pybind11::arg("n"), pybind11::arg("states"), pybind11::arg("multiprocessors"), pybind11::arg("float64"),
      pybind11::arg("backward"));
}
