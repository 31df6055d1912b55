"""``model.export()``: the module's forward pass as a file for inference, as Keras 3's ``model.export``.

``format="torch"``: a ``torch.export`` ExportedProgram (``.pt2``, read back with ``torch.export.load``).
``format="onnx"``: an ONNX model (torch's dynamo exporter; the ``onnx`` extra). Both take any batch size
(the first dimension of every input is dynamic) and are written atomically.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..insight import summary as _inputs
from . import files

__all__ = ["FORMATS", "export"]

FORMATS = ("torch", "onnx")
_KERAS_ONLY = {"tf_saved_model": "TensorFlow", "litert": "TensorFlow Lite", "openvino": "OpenVINO"}
_NEEDS_SHAPES = ("export() needs the inputs' shapes: pass input_signature= with one sample's shape, without the "
                 "batch dimension (e.g. input_signature=(28, 28) for 28x28 images; a list of shapes for several "
                 "inputs, a dict for keyword inputs), example=a batch of inputs (for integer inputs, e.g. token "
                 "ids), or call fit / evaluate / predict first")


def _check_format(format: Any, path: Path) -> str:
    if format not in FORMATS:
        hint = ""
        if format in _KERAS_ONLY:
            hint = f" ({_KERAS_ONLY[format]} formats need Keras's own backends; export to ONNX and convert that)"
        raise ValueError(f"format={format!r} is not an export format; use one of {list(FORMATS)}: 'torch' (a "
                         f"torch.export program, .pt2) or 'onnx'{hint}")
    if format == "torch" and path.suffix != ".pt2":
        raise ValueError(f"format='torch' writes a torch.export archive, whose name must end in .pt2 (torch.export"
                         f".load needs it): use {str(path.with_suffix('.pt2'))!r}")
    if format == "onnx":
        missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
        if missing:
            raise ImportError(f"format='onnx' needs the {' and '.join(missing)} package(s): "
                              "pip install epochwise[onnx]")
    return format


def _arguments(batch: Any) -> tuple[tuple, dict]:
    """How fit calls the module (``engine.step.call_module``): a tuple or list as positional arguments, a dict
    as keyword arguments, anything else as the one argument."""
    if isinstance(batch, dict):
        return (), dict(batch)
    if isinstance(batch, (tuple, list)):
        return tuple(batch), {}
    return (batch,), {}


def _dynamic_batch(args: tuple, kwargs: dict) -> tuple | dict:
    """The first dimension of every input tensor is one dynamic size, ``batch``."""
    batch = torch.export.Dim("batch", min=1)
    spec = _inputs.nested_map(lambda t: {0: batch} if isinstance(t, torch.Tensor) and t.ndim else None, (args, kwargs))
    return spec[1] if kwargs else spec[0]


def _input_names(args: tuple, kwargs: dict) -> list[str] | None:
    """``input`` or ``input_0``, ``input_1``, …; keyword inputs keep their names (the exporter's, in the order of
    forward's parameters)."""
    if kwargs:
        return None
    n = len(_inputs.nested_leaves(args))
    return ["input"] if n == 1 else [f"input_{i}" for i in range(n)]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch's exporters log notes about packages nobody asked for (torchvision) and internal deprecations."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=FutureWarning)
            # every input's first dimension is the one size "batch": the ONNX exporter notes each repeat
            warnings.filterwarnings("ignore", message=r".*axis name: batch will not be used", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _failed(format: str, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"export(format={format!r}) could not trace the module's forward: {type(err).__name__}: {err}. Common causes: "
        "Python control flow that depends on tensor values, or on the batch size (it is exported as dynamic); "
        "operations the exporter does not know. Check that model.predict works on the same inputs first")


def export(model: Any, filepath: str | os.PathLike, format: str = "torch", verbose: bool | None = None,
           input_signature: Any = None, *, example: Any = None, opset_version: int | None = None) -> str:
    """Write ``model.module``'s forward pass (eval mode, any batch size) to ``filepath``; returns the path."""
    path = Path(filepath)
    format = _check_format(format, path)
    if opset_version is not None and format != "onnx":
        raise ValueError("opset_version applies to format='onnx' only")
    if distributed.is_sharded(model.module):
        raise ValueError("export() needs the whole module, and this one is sharded by FSDP: save the weights "
                         "(model.save_weights), load them into a fresh module in one process, and export that")
    chosen = _inputs.example_batch(model, input_signature, example, shapes_name="input_signature")
    if chosen is None:
        raise ValueError(_NEEDS_SHAPES)
    if not distributed.is_main_process():
        return str(path)  # under torchrun rank 0 writes the file
    # a dynamic size traced at 1 would be specialised to the constant 1
    batch = chosen.batch if chosen.size > 1 else _inputs.resized(chosen, 2, model.device)
    args, kwargs = _arguments(batch)
    module = model.module
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with _quiet_exporter():
            if format == "torch":
                try:
                    program = torch.export.export(module, args, kwargs, dynamic_shapes=_dynamic_batch(args, kwargs),
                                                  strict=False)
                except Exception as err:
                    raise _failed(format, err) from err

                def write(tmp: str) -> None:
                    with open(tmp, "wb") as fh:  # a file object: torch.export.save wants a name ending in .pt2
                        torch.export.save(program, fh)
            else:
                try:
                    outputs = _output_tensors(model, batch)
                    onnx_program = torch.onnx.export(
                        module, args, kwargs=kwargs, dynamo=True, dynamic_shapes=_dynamic_batch(args, kwargs),
                        input_names=_input_names(args, kwargs), opset_version=opset_version, verbose=False,
                        output_names=["output"] if outputs == 1 else [f"output_{i}" for i in range(outputs)])
                except Exception as err:
                    raise _failed(format, err) from err

                def write(tmp: str) -> None:
                    onnx_program.save(tmp, external_data=False)
    finally:
        for m, mode in modes:
            m.training = mode
    files.atomic_write(path, write)
    if verbose is None or verbose:
        kind = "a torch.export program" if format == "torch" else "an ONNX model"
        print(f"Saved {kind} at {str(path)!r} (inputs {_inputs.input_text(chosen)} from {chosen.origin})")
    return str(path)


def _output_tensors(model: Any, batch: Any) -> int:
    """How many tensors the module returns (to name them), from one forward pass that changes nothing."""
    with _inputs.inference_pass(model.module, model.device):
        args, kwargs = _arguments(batch)
        outputs = model.module(*args, **kwargs)
    return sum(isinstance(t, torch.Tensor) for t in _inputs.nested_leaves(outputs))
