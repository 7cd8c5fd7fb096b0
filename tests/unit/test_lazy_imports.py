"""No converter module may import a framework at import time, and the CLI must work without them."""

import os
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ["torch", "tensorflow", "tensorflowjs", "onnx2tf", "onnxruntime", "optimum", "onnx", "tf2onnx",
         "transformers", "tf_keras", "keras", "jax"]

BLOCKER = f"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ImportError('blocked by test: ' + name)
sys.meta_path.insert(0, Block())
import converter
mods = [m.name for m in pkgutil.walk_packages(converter.__path__, 'converter.')]
for m in mods:
    importlib.import_module(m)
print(len(mods))
"""


def test_every_module_imports_with_frameworks_blocked():
    r = subprocess.run([sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 15


def test_help_works_with_frameworks_blocked():
    code = BLOCKER.replace("print(len(mods))", "from converter.cli import main\nmain(['--help'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "export" in r.stdout and "Exit codes" in r.stdout


def test_missing_framework_is_a_clear_error():
    code = BLOCKER.replace("print(len(mods))", "from converter.cli import main\n"
                           "main(['export', 'pkg.mod:build', '-i', 'x:1,2', '-o', '/tmp/never'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "torch is not installed" in r.stderr and "make install" in r.stderr
    assert "Traceback" not in r.stderr


def test_tensorflow_loads_without_jax_and_tensorflowjs_package_inits():
    """jax (TFLite's optional helper) and tensorflowjs's package __init__ (every converter it has)
    are skipped while TensorFlow and the graph converter load, and the graph converter's TF Hub and
    TF Decision Forests imports wait for a first use; all of them work when asked for."""
    from tests.conftest import need

    need("tensorflow", "tensorflowjs.converters.tf_saved_model_conversion_v2", "tensorflow_hub")
    code = """
import sys
from converter.deps import require
conv = require("tensorflowjs.converters.tf_saved_model_conversion_v2")
print("tensorflow" in sys.modules, "jax" in sys.modules, hasattr(sys.modules["tensorflowjs"], "__version__"),
      "tensorflow_hub" in sys.modules, "tensorflow_decision_forests" in sys.modules)
import jax
tfjs = require("tensorflowjs")
print(bool(jax.numpy), tfjs.__version__ == tfjs.version.version, callable(tfjs.converters.convert))
print(callable(conv.hub.resolve), conv.hub.resolve is sys.modules["tensorflow_hub"].resolve)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["True", "False", "False", "False", "False", "True", "True", "True", "True", "True"]


def test_onnx_to_tf_loads_tensorflow_with_tf_keras_only():
    """The onnx->tf stage imports onnx2tf first, as onnx2tf's CLI does: TensorFlow then aliases
    tf.keras to tf_keras (onnx2tf's Keras) instead of importing Keras 3 as well. A process that ends
    with its export (the CLI) also skips pandas and scipy, which tf_keras only tries for fit() on
    DataFrames and sparse arrays; a Python API user's process keeps them."""
    from tests.conftest import need

    need("tensorflow", "tf_keras", "onnx2tf")
    code = """
import sys
from converter import deps
from converter.formats.tf.from_onnx import OnnxToTf
if sys.argv[1] == "cli":
    deps.short_lived()
tf = [deps.require(m) for m in OnnxToTf.imports][OnnxToTf.imports.index("tensorflow")]
pd = sys.modules["tf_keras.src.engine.data_adapter"].pd
issparse = sys.modules["tf_keras.src.engine.training_arrays_v1"].issparse
print("keras" in sys.modules, tf.keras.Model is sys.modules["tf_keras"].Model, "pandas" in sys.modules, pd is None,
      "scipy" in sys.modules, issparse is None)
"""
    for mode, pandas in (("cli", False), ("api", True)):  # pandas, and scipy alike
        r = subprocess.run([sys.executable, "-c", code, mode], cwd=ROOT, capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"})
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == ["False", "True", *[str(pandas), str(not pandas)] * 2], mode


def test_transformers_loads_pytorch_models_without_jax():
    """On PyTorch's side (the isolated child, a Hugging Face source) transformers does not look
    for its Flax side: jax (installed for tensorflowjs) stays out; the model still builds and runs."""
    from tests.conftest import need

    need("torch", "transformers", "jax")
    code = """
import sys
from converter.deps import torch_side_env
torch_side_env()
import torch
from fixtures.hf_models import tiny_bert
out = tiny_bert()(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))
print("jax" in sys.modules, "tensorflow" in sys.modules, tuple(out.shape))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_FLAX")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "False", "(1,", "4)"]


def test_frameworks_are_frozen_out_of_the_garbage_collector_only_where_asked():
    """The CLI and the isolated child import frameworks (and load models) without cyclic garbage
    collection, then freeze what is left alive (gc.freeze); a Python API user's process is left as
    it is."""
    from tests.conftest import need

    need("onnx")
    code = """
import gc, sys
from converter import deps
if sys.argv[1] == "freeze":
    deps.short_lived()
deps.require("onnx")
print(gc.get_freeze_count() > 10000)
with deps.framework_loading():
    print(gc.isenabled())
print(gc.isenabled())
"""
    for flag, frozen in (("freeze", "True"), ("api", "False")):
        r = subprocess.run([sys.executable, "-c", code, flag], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == [frozen, str(frozen == "False"), "True"], flag
