"""Source terms for ONNX nodes: which module of the source model (and which op) a node comes from,
so that an error can say ``attn (torch.nn.MultiheadAttention)`` instead of ``node_MatMul_3``.

Two ways to know:

- the dynamo exporter annotates every node (``metadata_props``) with the module path
  (``pkg.torch.onnx.name_scopes``: ``['', 'ff', 'ff.0', 'linear_2']``, full paths) and the classes
  (``pkg.torch.onnx.class_hierarchy``). The shipped file is stripped of those annotations (they are
  most of its size), so :func:`source_map` reads them first and the stage keeps the map in memory;
- the TorchScript exporter (and Hugging Face optimum, which uses it) names nodes by scope:
  ``/bert/encoder/layer.0/attention/self/MatMul``. Each part is the module's name relative to
  the scope above it, but with a ModuleList/Sequential index kept with its container's name
  (``/seq/seq.0/Gemm`` is module ``seq.0``, ``/blocks.0/lin/Gemm`` is ``blocks.0.lin``):
  :func:`scoped_path` undoes that. Any such ONNX file works, with no map.

Stdlib only.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

_SCOPES = "pkg.torch.onnx.name_scopes"
_CLASSES = "pkg.torch.onnx.class_hierarchy"
#: dynamo's pseudo-module for ops outside every module (input sizes): not a place in the source
_NO_MODULE = "_empty_nn_module_stack_from_metadata_hook"


def source_map(model: Any, modules: Mapping[str, str] | None = None) -> dict[str, str]:
    """{node name: source term} for every node that says where it comes from: from the dynamo
    exporter's annotations, else from a scoped name (with ``modules``, module path -> class name,
    naming the class too). Call before the annotations are stripped."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        term = _from_annotations(props) if _SCOPES in props else None
        if term is None:
            path = scoped_path(node.name, modules)
            if path is not None:
                term = describe(path, (modules or {}).get(path))
        if term:
            out[node.name] = term
    return out


def source_term(node_name: str, source_map: Mapping[str, str] | None = None) -> str | None:
    """Where ``node_name`` comes from in the source: the recorded term, else the module path its
    scoped name carries, else None (a name like ``node_MatMul_3`` says nothing)."""
    if source_map and node_name in source_map:
        return source_map[node_name]
    path = scoped_path(node_name)
    return None if path is None else describe(path, None)


def scoped_path(node_name: str, modules: Mapping[str, Any] | None = None) -> str | None:
    """``/bert/encoder/layer.0/attention/self/MatMul_1`` -> ``bert.encoder.layer.0.attention.self``;
    ``/Add`` -> ``""`` (the top-level module); a name that is not scoped -> None. With ``modules``
    (the model's module paths) an ambiguous part is resolved to the path that exists."""
    if not node_name.startswith("/"):
        return None
    path = ""
    for part in node_name.split("/")[1:-1]:
        if not part:
            return None
        nested = f"{path}.{part}" if path else part
        head, _, index = part.partition(".")
        # "seq.0" under "seq": the index of the container just named, not a module "seq" inside it
        merged = f"{path}.{index}" if path and index and path.rsplit(".", 1)[-1] == head else None
        if merged and modules is not None:
            path = merged if merged in modules or nested not in modules else nested
        else:
            path = merged or nested
    return path


def describe(path: str, cls: str | None, op: str | None = None) -> str:
    """``attn (torch.nn.MultiheadAttention), aten.permute``; the top-level module is said so."""
    cls = _public(cls) if cls else None
    where = path if path else "the top-level module"
    text = f"{where} ({cls})" if cls else where
    return f"{text}, {op}" if op else text


def _from_annotations(props: Mapping[str, str]) -> str | None:
    try:
        scopes = ast.literal_eval(props[_SCOPES])
        classes = ast.literal_eval(props.get(_CLASSES, "[]"))
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or not scopes:
        return None
    op = _op(classes[-1]) if isinstance(classes, list) and len(classes) == len(scopes) else None
    if len(scopes) < 2 or _NO_MODULE in scopes:
        return op  # no module: the op alone (e.g. reading an input's size)
    cls = classes[-2] if isinstance(classes, list) and len(classes) == len(scopes) else None
    return describe(str(scopes[-2]), cls, op)


def _public(cls: str) -> str:
    """``torch.nn.modules.activation.MultiheadAttention`` -> ``torch.nn.MultiheadAttention`` (how
    users write it); other classes keep their full path, which says where the code is."""
    return "torch.nn." + cls.rsplit(".", 1)[-1] if cls.startswith("torch.nn.modules.") else cls


def _op(target: str) -> str:
    """``aten.permute.default`` -> ``aten.permute``; ``<built-in function mul>`` -> ``mul``."""
    if target.startswith("<built-in function "):
        return target.removeprefix("<built-in function ").rstrip(">")
    return target.removesuffix(".default")
