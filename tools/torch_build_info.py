"""Prints what CMakeLists.txt needs to know about the installed torch.

pip builds in an isolated environment by default, which hides the torch that
is installed; qlam must be built against that one (its C++ ABI is tied to the
exact torch version), so when torch is not importable here we look in the
site-packages of the interpreter's own environment before giving up.
"""
import sys
import sysconfig

try:
    import torch
except ImportError:
    for key in ("purelib", "platlib"):
        path = sysconfig.get_path(key)
        if path not in sys.path:
            sys.path.append(path)
    import torch  # noqa: F811  (raises the real error if torch is truly absent)

    print(f"qlam: building against the installed torch {torch.__version__} found at {torch.__file__} "
          "(outside pip's isolated build environment)", file=sys.stderr)

import os
import re

# The same paths torch.utils.cpp_extension uses, without importing it (it
# logs a warning about the CUDA runtime on machines without a GPU).
root = os.path.dirname(torch.__file__)
include = os.path.join(root, "include")
print("|".join([include, os.path.join(include, "torch", "csrc", "api", "include")]))
print(os.path.join(root, "lib"))
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(torch.version.cuda or "")
print(torch.__version__)


def cxx_standard(include_dir: str) -> int:
    """The C++ standard torch's headers demand: ATen.h stops with '#error C++NN or later'
    behind a `__cplusplus < NNNNNNL` test (201703L in torch <= 2.14, 202002L from 2.15)."""
    try:
        with open(os.path.join(include_dir, "ATen", "ATen.h")) as f:
            text = f.read()
    except OSError:
        return 17
    years = [int(m) for m in re.findall(r"__cplusplus\s*<\s*(\d{6})L", text)]
    return max(17, max(years, default=201703) // 100 % 100)  # 202002 -> 20


print(cxx_standard(include))
