"""Saving and loading: atomic writes, safe reads (no unpickling), clear mismatch errors."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import warnings
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

_FULL_SLACK = 1 << 20  # free bytes below which a failed write is put down to a full disk


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``.

    A failure at any point leaves the previous file untouched and raises an OSError naming ``path``
    (ENOSPC when the disk is full, whatever the writer raised). The file gets the mode the umask gives,
    or keeps the mode of the file it replaces.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot save to {str(target)!r}: it is a directory; give a file name")
    from .. import distributed

    if not distributed.is_main_process():
        return  # under torchrun only rank 0 writes; the others meet it at the next barrier
    tmp, failure = None, None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = _mode_for(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp gives 0600; after the write, so a read-only mode cannot stop it
        if before_replace is not None:
            before_replace(target)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as err:
        failure = _write_failure(err, target) if isinstance(err, Exception) else None
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if failure is None:
            raise
    if failure is not None:
        # raised here, not inside ``except``: chained to the writer's error, its traceback would keep
        # torch's writer (and the deleted partial file, on a full disk) open as long as the error lives
        raise failure


def _umask() -> int:
    try:  # Linux: read it without changing it
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    """The replaced file's permission bits, else what ``open()`` would give a new file."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


_ADVICE = {
    errno.ENOSPC: "free some space on that disk, or save to another disk",
    errno.EDQUOT: "free some space within your quota, or save to another disk",
    errno.EROFS: "save to a folder on a writable disk",
    errno.EACCES: "this user may not write there: save to a folder you can write to, or change its permissions",
    errno.EPERM: "this user may not write there: save to a folder you can write to, or change its permissions",
}


def _write_failure(err: Exception, target: Path) -> OSError | None:
    """The OSError a failed write of ``target`` raises; None for errors that are not about the file."""
    if isinstance(err, OSError) and err.errno is not None:
        code = err.errno
    elif "No space left on device" in str(err) or "os error 28" in str(err):
        code = errno.ENOSPC  # safetensors' message
    elif isinstance(err, RuntimeError):  # torch's writer: "[enforce fail at inline_container.cc] unexpected pos"
        code = errno.EIO
    else:
        return None
    if code == errno.EIO:
        try:  # a short write fills the disk before it fails, and the partial file is still there
            if shutil.disk_usage(target.parent).free < _FULL_SLACK:
                code = errno.ENOSPC
        except OSError:
            pass
    reason = os.strerror(code) if code != errno.EIO else f"the write failed ({err})"
    advice = _ADVICE.get(code, "check the folder and the disk")
    return OSError(code, f"{reason}: could not write {str(target)!r}; {advice}. "
                         "The previous file, if any, is untouched")


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


_WRITTEN_BY = "Pass a file written by model.save_weights(), model.save() or ModelCheckpoint"


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a .pt (``weights_only=True``: no code runs) or .safetensors file into a dict.

    A file that is not one (empty, truncated, text, another format, a bare tensor, pickled Python
    objects) is a ValueError that names the path, says what the file is and what to do.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {str(p)!r}")
    if p.is_dir():
        raise IsADirectoryError(f"{str(p)!r} is a directory; give the path of a .pt or .safetensors file")
    if p.name.endswith(".safetensors"):
        from safetensors.torch import load_file as st_load

        try:
            payload = st_load(str(p))
        except Exception as err:  # SafetensorError, OSError
            raise ValueError(_unreadable(p, _safetensors_problem(p), err)) from err
    else:
        try:
            with warnings.catch_warnings():  # torch's note on pickle protocols: the error below says more
                warnings.simplefilter("ignore", UserWarning)
                payload = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError, KeyError, ...
            raise ValueError(_unreadable(p, _pt_problem(p, err), err)) from err
    if isinstance(payload, torch.Tensor):
        raise ValueError(
            f"{str(p)!r} holds a single tensor of shape {tuple(payload.shape)}, not a state dict (a dict of named "
            "tensors). Save model.state_dict() with torch.save, or use model.save_weights()."
        )
    if not isinstance(payload, dict):
        raise ValueError(f"{str(p)!r} holds a {type(payload).__name__}, not a state dict (a dict of named "
                         f"tensors) or a checkpoint. {_WRITTEN_BY}.")
    return payload


def _unreadable(p: Path, problem: str, err: Exception) -> str:
    name = str(p)
    if problem == "pickle":
        return (f"{name!r} holds pickled Python objects, and loading it could run code, so epochwise refuses. "
                "Load it yourself only if you trust it (torch.load(..., weights_only=False)), then save plain "
                "tensors with model.save_weights().")
    if problem == "empty":
        return (f"{name!r} is empty (0 bytes): no checkpoint was ever written to it completely. Save it again, "
                "or load an earlier copy.")
    if problem == "truncated":
        return (f"{name!r} is truncated ({p.stat().st_size} bytes; its end is missing, as when a copy or "
                "download is cut short). Copy or save it again, or load an earlier checkpoint.")
    if problem == "text":
        start = p.read_bytes()[:40].decode("utf-8", "replace").splitlines()[0]
        return f"{name!r} is a text file (it starts with {start!r}), not a checkpoint. {_WRITTEN_BY}."
    if problem == "zip":
        return (f"{name!r} is a zip archive but not a PyTorch checkpoint (no data.pkl inside; a Keras .keras "
                f"file is such an archive). {_WRITTEN_BY}.")
    if problem == "safetensors":
        return f"{name!r} is not a safetensors file (its header is not one). {_WRITTEN_BY}."
    if problem == "unknown":
        return (f"{name!r} is not a checkpoint: it is neither a PyTorch file (a zip archive or a pickle) nor "
                f"text. {_WRITTEN_BY}.")
    return f"{name!r} could not be read ({type(err).__name__}: {err}). {_WRITTEN_BY}."


def _head(p: Path, n: int = 512) -> bytes:
    with open(p, "rb") as fh:
        return fh.read(n)


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # a multi-byte character cut at the end of the head is fine
        if err.start < len(head) - 3:
            return False
        text = head[: err.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _pt_problem(p: Path, err: Exception) -> str:
    """What a .pt file that ``torch.load`` refused is: judged by its bytes, not by torch's message."""
    import zipfile

    head = _head(p)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip format
        if not zipfile.is_zipfile(p):  # no central directory: the end is missing
            return "truncated"
        try:
            with zipfile.ZipFile(p) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "truncated"
        if not any(n.endswith("data.pkl") for n in names):
            return "zip"
        return "pickle" if "weights_only" in str(err) or "Weights only" in str(err) else "other"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # a pickle
        if isinstance(err, EOFError) or "truncated" in str(err):
            return "truncated"
        return "pickle"
    if _looks_like_text(head):
        return "text"
    return "unknown"


def _safetensors_problem(p: Path) -> str:
    """What a .safetensors file that safetensors refused is: an 8-byte header length, a JSON header, data."""
    import json
    import struct

    size = p.stat().st_size
    if size == 0:
        return "empty"
    head = _head(p, 9)
    if size < 8:
        return "text" if _looks_like_text(head) else "truncated"
    (length,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{":
        return "text" if _looks_like_text(_head(p)) else "safetensors"
    if 8 + length > size:
        return "truncated"
    with open(p, "rb") as fh:
        fh.seek(8)
        raw = fh.read(length)
    try:
        header = json.loads(raw)
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "safetensors"
    return "truncated" if 8 + length + end > size else "other"


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
