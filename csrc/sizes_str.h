// A tensor's (symbolic) sizes as text, for error messages.
#pragma once

#include <ATen/ATen.h>

#include <sstream>
#include <string>

namespace qlam {

inline std::string sizes_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sym_sizes();
  return os.str();
}

}  // namespace qlam
