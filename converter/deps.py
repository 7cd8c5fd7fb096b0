"""The one place heavy frameworks are imported.

No module of convertkit imports torch, tensorflow, onnxruntime, ... at module level: stages and
runners call :func:`require` inside ``run()`` / ``__enter__`` so that ``convertkit --help``
stays fast and a missing framework is a clear error instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

#: top-level module -> (pip extra of convertkit that installs it, package to name)
_EXTRAS: dict[str, str] = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "torch",
    "safetensors": "torch",
    "tensorflow": "tf",
    "tf_keras": "tf",
    "keras": "tf",
    "h5py": "tf",
    "tensorflowjs": "tf",
    "tf2onnx": "tf",
    "onnx2tf": "tf",
    "optimum": "hf",
    "transformers": "hf",
}


#: imports that start TensorFlow, which logs from C++ to stderr while it loads
_NOISY = ("tensorflow", "tensorflowjs", "tf2onnx", "onnx2tf", "tf_keras", "keras")


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming what to install."""
    from .errors import MissingDependencyError

    if module.split(".")[0] in ("tensorflow", "tensorflowjs", "tf2onnx", "onnx2tf", "tf_keras", "keras"):
        # TF's oneDNN rewrites produce _Mkl* ops the TF.js converter cannot read.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # tensorflowjs imports tensorflow_decision_forests, whose banner imports IPython whenever
        # stdout is not a terminal (pytest, quiet()); IPython is not installed.
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    if module.split(".")[0] in ("transformers", "optimum"):
        os.environ.setdefault("USE_TF", "0")
    try:
        if module.split(".")[0] in _NOISY and "tensorflow" not in sys.modules:
            from .quiet import quiet

            with quiet():  # TF's C++ runtime prints CUDA/XLA registration errors on stderr at import
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top, "all")
        raise MissingDependencyError(
            f"{top} is not installed or fails to import ({exc})",
            hint=f"run `make install`, or `pip install 'convertkit[{extra}]'`",
        ) from exc


def version(dist: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
