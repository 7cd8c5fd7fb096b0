"""The one place heavy frameworks are imported.

No module of convertkit imports torch, tensorflow, onnxruntime, ... at module level: stages and
runners call :func:`require` inside ``run()`` / ``__enter__`` so that ``convertkit --help``
stays fast and a missing framework is a clear error instead of an ImportError traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any, NoReturn

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
    "ray": "ray",
}


#: imports that start TensorFlow, which logs from C++ to stderr while it loads
_NOISY = ("tensorflow", "tensorflowjs", "tf2onnx", "onnx2tf", "tf_keras", "keras")

#: Imported by TensorFlow or tensorflowjs for features convertkit never uses, and slow: TensorFlow's
#: TFLite helpers try-import jax (installed because tensorflowjs declares it), and tensorflowjs's
#: package ``__init__`` imports every converter it has (jax2tf, Keras, ...) where convertkit imports
#: the two it uses as submodules. Skipping them takes a TensorFlow process (TensorFlow, onnx2tf,
#: tensorflowjs's graph converter) from about 3.5 s and 716 MiB to 2.6 s and 605 MiB here. Nothing is
#: removed: jax imports as usual once TensorFlow is loaded (TFLite's jax path stays off in this
#: process), and asking for one of these packages itself runs its ``__init__`` then.
_SKIPPED_WHILE_TF_LOADS = ("jax",)
_BARE_PACKAGES = ("tensorflowjs", "tensorflowjs.converters")
#: Imported at module level by tensorflowjs's graph converter (tf_saved_model_conversion_v2) for what
#: convertkit never asks of it: converting TF Hub modules, and TF Decision Forests' ops (whose import
#: pulls in pandas). While that module imports, each is a ``_Deferred`` stand-in that imports the real
#: package at its first use; everyone else imports them as usual. ~0.25 s and ~58 MiB here.
_DEFERRED_BY_TFJS = ("tensorflow_hub", "tensorflow_decision_forests")


#: Skipped as well where the process ends with its export (see short_lived), tried by tf_keras and
#: TensorFlow's own legacy Keras (which TensorFlow imports with onnx2tf's TF_USE_LEGACY_KERAS=1) for
#: what convertkit never does: pandas to fit() on DataFrames (0.44 s here), scipy for sparse inputs
#: to fit() and image augmentation (~0.2 s, 16 MiB). A Python API user's process keeps them.
_SKIPPED_WHILE_TF_LOADS_SHORT_LIVED = ("pandas", "scipy")

#: Set by processes that end with their export (the CLI, isolate.py's child): see short_lived.
_short_lived = False


def short_lived() -> None:
    """This process ends with its export (the CLI, isolate.py's child): it may trade what only a
    long-lived process needs for speed. From now on:

    * a framework imports, and a source model loads, without cyclic garbage collection, and every
      object alive then moves out of the collector's way (``gc.freeze``; ``framework_loading``): a
      framework's modules, classes and functions live as long as the process, and every full
      collection would walk them again (after TensorFlow: 340k objects, 0.2 s per collection; an
      export through onnx2tf runs several: ~0.25 s of the tiny transformer block's 1.8 s of
      conversion). Objects still freed by reference counting are unaffected; only cyclic garbage
      made while loading stays.
    * while TensorFlow loads, packages it only try-imports for features convertkit never uses are
      skipped (``_SKIPPED_WHILE_TF_LOADS_SHORT_LIVED``): they import as usual afterwards, but the
      module that tried keeps going without them.

    A Python API user's process is left as it is."""
    global _short_lived
    _short_lived = True


def exit_now(code: int) -> NoReturn:
    """End a short-lived process once its work is written: the exit handlers run and the streams are
    flushed, but not the interpreter's own teardown (module clean-up, C++ destructors), which takes
    about a second once TensorFlow, or PyTorch with transformers, is loaded (the tiny BERT's source
    process: 1.1 s)."""
    import atexit
    import logging

    atexit._run_exitfuncs()  # e.g. an unused prestarted Node, weakref finalizers
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe (convertkit ... | head): nothing more can be said
    os._exit(code)


def loads_tensorflow(module: str) -> bool:
    """Whether importing ``module`` imports TensorFlow."""
    return module.split(".")[0] in _NOISY


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming what to install."""
    if module in sys.modules:
        return _require(module)
    with framework_loading():
        return _require(module)


@contextlib.contextmanager
def framework_loading() -> Iterator[None]:
    """While a framework, or a model with its code's imports, loads in a short-lived process: no
    cyclic garbage collection (nearly everything it allocates lives as long as the process, and the
    collector's passes walk it all again and again: TensorFlow's import here 2.3 -> 1.8 s, PyTorch
    with the tiny BERT 3.2 -> 2.9 s), then everything alive moves out of later collections
    (``gc.freeze``; see short_lived). Elsewhere it does nothing."""
    if not _short_lived:
        yield
        return
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.freeze()


def _require(module: str) -> ModuleType:
    from .errors import MissingDependencyError

    top = module.split(".")[0]
    if loads_tensorflow(module):
        # TF's oneDNN rewrites produce _Mkl* ops the TF.js converter cannot read.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # tensorflowjs imports tensorflow_decision_forests, whose banner imports IPython whenever
        # stdout is not a terminal (pytest, quiet()); IPython is not installed.
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    if top in ("transformers", "optimum"):
        torch_side_env()
    try:
        stand_ins: dict[str, ModuleType | None] = {}
        if top == "tensorflowjs":
            _bare_packages(complete=module in _BARE_PACKAGES)
            stand_ins.update((m, _Deferred(m)) for m in _DEFERRED_BY_TFJS)
        loads_tf = loads_tensorflow(module) and "tensorflow" not in sys.modules
        if loads_tf:  # None: `import jax` raises ImportError, as if it were not installed
            stand_ins.update(dict.fromkeys(_SKIPPED_WHILE_TF_LOADS + (_SKIPPED_WHILE_TF_LOADS_SHORT_LIVED
                                                                      if _short_lived else ())))
        with _standing_in(stand_ins):
            if loads_tf:
                from .quiet import quiet

                with quiet():  # TF's C++ runtime prints CUDA/XLA registration errors on stderr at import
                    return importlib.import_module(module)
            return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS.get(top, "all")
        raise MissingDependencyError(
            f"{top} is not installed or fails to import ({exc})",
            hint=f"run `make install`, or `pip install 'convertkit[{extra}]'`",
        ) from exc


@contextlib.contextmanager
def _standing_in(modules: dict[str, ModuleType | None]) -> Iterator[None]:
    """``sys.modules[name] = stand_in`` for each name not imported yet, while the block runs."""
    placed = {m: v for m, v in modules.items() if m not in sys.modules}
    sys.modules.update(placed)
    try:
        yield
    finally:
        for m, v in placed.items():
            if m in sys.modules and sys.modules[m] is v:
                del sys.modules[m]


class _Deferred(ModuleType):
    """Stands for a package that a module imports but may never use: the first use of one of its
    names imports the package (as usual, from then on) and answers with the real name."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # what the import system asks of a module: not a use
            raise AttributeError(attr)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def torch_side_env() -> None:
    """transformers loads PyTorch models only, as convertkit uses it: without it looking for its
    TensorFlow side (imports TensorFlow: ~3 s) or its Flax side (imports jax, through its image
    utilities: ~0.3 s and ~100 MiB here, since tensorflowjs installs jax and flax). A user's own
    setting wins."""
    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("USE_FLAX", "0")


def _bare_packages(complete: bool) -> None:
    """Put the packages of ``_BARE_PACKAGES`` in ``sys.modules`` without running their ``__init__``
    (their submodules import as usual), unless imported already; ``complete`` runs the ``__init__``
    of those left bare (a caller that wants the package's own names)."""
    import importlib.util

    for name in _BARE_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return  # not installed: the import that follows raises, and says what to install
        mod = importlib.util.module_from_spec(spec)
        mod.__convertkit_bare__ = True  # type: ignore[attr-defined]
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, mod)
    if complete:
        for name in reversed(_BARE_PACKAGES):  # the converters package before the one that imports it
            mod = sys.modules[name]
            if getattr(mod, "__convertkit_bare__", False):
                del mod.__convertkit_bare__  # type: ignore[attr-defined]
                mod.__spec__.loader.exec_module(mod)  # type: ignore[union-attr]


def version(dist: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
