"""Saving and loading: atomic writes, safe reads (no unpickling), clear mismatch errors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

WEIGHT_SUFFIXES = (".pt", ".safetensors")
CHECKPOINT_KEY = "epochwise_checkpoint"


def check_suffix(path: str | os.PathLike, *, weights_only: bool = True, argument: str = "path") -> Path:
    """Reject Keras file names (.h5, .keras) and anything we cannot write, naming the fix."""
    p = Path(path)
    name = p.name
    suffix = ".safetensors" if name.endswith(".safetensors") else p.suffix
    allowed = WEIGHT_SUFFIXES if weights_only else (".pt",)
    if suffix in allowed:
        return p
    stem = name[: -len(".weights.h5")] if name.endswith(".weights.h5") else (p.stem or "model")
    if suffix in (".h5", ".keras", ".hdf5"):
        hint = f"'{name}' is a Keras file name; epochwise writes PyTorch files: use '{stem}.pt'"
    else:
        hint = f"{argument}={str(path)!r} has an unsupported extension; use '{stem}.pt'"
    if weights_only:
        hint += f" (or '{stem}.safetensors')"
    else:
        hint += " (.safetensors holds weights only)"
    raise ValueError(hint)


#: A test seam: called with the target after the new file is written and synced, before it is renamed
#: into place (the fault-injection tests kill the process there). None in normal use.
before_replace: Callable[[Path], None] | None = None


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``.

    A failure at any point leaves the previous file untouched.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot save to {str(target)!r}: it is a directory; give a file name")
    from .. import distributed

    if not distributed.is_main_process():
        return  # under torchrun only rank 0 writes; the others meet it at the next barrier
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace(target)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone so tensors that share memory (tied weights) are saved independently
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def save_state_dict(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> None:
    p = check_suffix(path)
    tensors = cpu_state(state)
    if p.name.endswith(".safetensors"):
        from safetensors.torch import save_file

        atomic_write(p, lambda tmp: save_file(tensors, tmp))
    else:
        atomic_write(p, lambda tmp: torch.save(tensors, tmp))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    p = check_suffix(path, weights_only=False)
    atomic_write(p, lambda tmp: torch.save({CHECKPOINT_KEY: 1, **payload}, tmp))


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a .pt (``weights_only=True``: no code runs) or .safetensors file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {str(p)!r}")
    if p.name.endswith(".safetensors"):
        from safetensors.torch import load_file as st_load

        return st_load(str(p))
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError for pickled objects
        if "weights_only" in str(err) or "Unpickl" in type(err).__name__:
            raise ValueError(
                f"{str(p)!r} holds pickled Python objects, and loading it could run code, so epochwise refuses. "
                "Load it yourself only if you trust it, then save plain tensors with model.save_weights()."
            ) from err
        raise


def module_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The module's state_dict inside a weights file or a full checkpoint."""
    if CHECKPOINT_KEY in payload:
        return payload["module"]
    return payload


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state_dict, listing every missing, unexpected and mis-shaped key in one error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs module {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes))
        raise ValueError(f"{source} does not match the module: " + "; ".join(parts))
    from .. import distributed

    distributed.load_module_state(module, state)  # under FSDP each rank keeps its shard
