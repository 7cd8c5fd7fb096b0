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
    are skipped while TensorFlow and the graph converter load; both work when asked for."""
    from tests.conftest import need

    need("tensorflow", "tensorflowjs.converters.tf_saved_model_conversion_v2")
    code = """
import sys
from converter.deps import require
require("tensorflowjs.converters.tf_saved_model_conversion_v2")
print("tensorflow" in sys.modules, "jax" in sys.modules, hasattr(sys.modules["tensorflowjs"], "__version__"))
import jax
tfjs = require("tensorflowjs")
print(bool(jax.numpy), tfjs.__version__ == tfjs.version.version, callable(tfjs.converters.convert))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["True", "False", "False", "True", "True", "True"]


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
    """The CLI and the isolated child freeze what a framework import leaves alive (gc.freeze);
    a Python API user's process is left as it is."""
    from tests.conftest import need

    need("onnx")
    code = """
import gc, sys
from converter import deps
if sys.argv[1] == "freeze":
    deps.freeze_frameworks()
deps.require("onnx")
print(gc.get_freeze_count() > 10000)
"""
    for flag, frozen in (("freeze", "True"), ("api", "False")):
        r = subprocess.run([sys.executable, "-c", code, flag], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == [frozen], flag
