"""Nested structures of arrays: map, leaves, tensors and devices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

Batch = tuple[Any, Any, Any]  # (x, y, sample_weight); y and sample_weight may be None

# Arrays with one sample-weight array per output travel inside y as {PACKED_TARGETS: y, PACKED_WEIGHTS: sw},
# so that every row operation on y (splits, gathers, devices) applies to them too; batches unpack them.
PACKED_TARGETS, PACKED_WEIGHTS = "__epochwise_targets__", "__epochwise_sample_weights__"


def is_packed(y: Any) -> bool:
    return isinstance(y, dict) and set(y) == {PACKED_TARGETS, PACKED_WEIGHTS}


# --- structures ------------------------------------------------------------------------------
def map_structure(fn: Callable[[Any], Any], obj: Any) -> Any:
    """Apply ``fn`` to every leaf of a tuple / list / dict structure."""
    if isinstance(obj, dict):
        return {k: map_structure(fn, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_structure(fn, v) for v in obj)
    return None if obj is None else fn(obj)


def leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [leaf for v in obj.values() for leaf in leaves(v)]
    if isinstance(obj, (list, tuple)):
        return [leaf for v in obj for leaf in leaves(v)]
    return [] if obj is None else [obj]


def first_leaf(obj: Any) -> Any:
    found = leaves(obj)
    return found[0] if found else None


def is_array_leaf(obj: Any) -> bool:
    return isinstance(obj, (torch.Tensor, np.ndarray)) or (
        hasattr(obj, "__array__") and not isinstance(obj, (str, bytes, Iterator))
    )


def is_array_input(obj: Any) -> bool:
    """True for an array or a tuple / list / dict structure whose leaves are all arrays (F1).

    A list whose items are all tuples or lists is a list of batches, not arrays.
    """
    if isinstance(obj, list) and obj and all(isinstance(v, (tuple, list)) for v in obj):
        return False
    if isinstance(obj, dict):
        return bool(obj) and all(is_array_input(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(is_array_input(v) for v in obj)
    return is_array_leaf(obj) and not isinstance(obj, torch.utils.data.Dataset)


def holds_strings(arr: np.ndarray) -> bool:
    """A str / bytes array, or an object array whose first items are strings (pandas text columns)."""
    if arr.dtype.kind in "US":
        return True
    return arr.dtype == object and any(isinstance(v, (str, bytes)) for v in arr.flat[:100])


def strings_error(name: str, arr: np.ndarray, labels: bool) -> ValueError:
    first = next((v for v in arr.flat if isinstance(v, (str, bytes, np.str_, np.bytes_))), None)
    head = f"{name} holds strings (e.g. {str(first)!r}), but training needs numbers"
    if labels:
        return ValueError(
            f"{head}: encode the labels as integer class indices first, e.g. classes, ids = np.unique(labels, "
            "return_inverse=True) and pass ids, or sklearn.preprocessing.LabelEncoder (fit it once and use the "
            "same encoding for the validation and test labels)"
        )
    return ValueError(f"{head}: encode them first, e.g. with sklearn.preprocessing.OrdinalEncoder or a tokenizer")


def to_tensor(obj: Any, name: str, labels: bool = False) -> torch.Tensor:
    """One array leaf as a tensor; float64 becomes float32 (F18), integers stay integers. Strings are a
    ValueError that says to encode them (``labels``: the targets, encoded as class indices)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
    else:
        if hasattr(obj, "to_numpy"):  # pandas
            obj = obj.to_numpy()
        arr = np.asarray(obj)
        if holds_strings(arr):
            raise strings_error(name, arr, labels)
        if arr.dtype == object:
            raise TypeError(
                f"{name} holds Python objects (dtype=object); convert it to a numeric array first, "
                f"e.g. np.asarray({name}, dtype='float32')"
            )
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr).copy()
        t = torch.from_numpy(arr)
    if t.dtype == torch.float64:
        t = t.float()
    if t.dim() == 0:
        raise ValueError(f"{name} is a scalar; it needs a first (sample) dimension")
    return t


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    def move(t: Any) -> Any:
        if isinstance(t, torch.Tensor):
            if t.dtype == torch.float64:
                t = t.float()
            return t.to(device, non_blocking=non_blocking)
        if isinstance(t, np.ndarray):
            return to_tensor(t, "batch").to(device, non_blocking=non_blocking)
        return t

    return map_structure(move, obj)


def gather(obj: Any, idx: torch.Tensor) -> Any:
    return map_structure(lambda t: t.index_select(0, idx), obj)


def nbytes(obj: Any) -> int:
    return sum(t.element_size() * t.nelement() for t in leaves(obj))


def concat_outputs(outputs: list[Any]) -> Any:
    """Per-batch outputs joined along the sample axis into NumPy arrays, keeping their structure (P2)."""
    head = outputs[0]
    if isinstance(head, dict):
        return {k: concat_outputs([o[k] for o in outputs]) for k in head}
    if isinstance(head, (tuple, list)):
        return type(head)(concat_outputs([o[i] for o in outputs]) for i in range(len(head)))
    if isinstance(head, torch.Tensor):
        return torch.cat([o.float() if o.dtype in (torch.bfloat16, torch.float16) else o for o in outputs]).cpu().numpy()
    return np.concatenate([np.asarray(o) for o in outputs])
