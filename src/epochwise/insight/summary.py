"""``model.summary()``: Keras's table of layers, output shapes and parameter counts, for any module.

Also the inputs' description that summary and ``model.export`` share: the per-sample shapes and dtypes
of the inputs fit / evaluate / predict last saw (:func:`record_inputs`), or the ones given as
``input_shape=`` / ``input_signature=`` / ``example=`` (:func:`example_batch`).
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..data.arrays import ArrayBatches
from ..data.sources import SourceBatches
from ..data.structures import is_array_leaf, to_tensor
from ..engine.step import call_module

__all__ = ["summary", "record_inputs", "record_batch", "example_batch", "input_text", "resized", "inference_pass", "nested_map", "nested_leaves",
           "shape_text", "readable_size", "count_weights"]


# --- the inputs' description ------------------------------------------------------------------
@dataclass(frozen=True)
class InputLeaf:
    """One input tensor: one sample's shape (no batch dimension) and its dtype."""

    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class Dims:
    """One tensor's shape in a structure of outputs (a leaf, unlike a tuple); None: the batch dimension."""

    dims: tuple[int | None, ...]


def nested_map(fn: Callable[[Any], Any], obj: Any) -> Any:
    """``fn`` on every leaf of tuples / lists / dicts; namedtuples become plain tuples, mappings dicts."""
    if isinstance(obj, dict):
        return {k: nested_map(fn, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nested_map(fn, v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(nested_map(fn, v) for v in obj)
    return fn(obj)


def nested_leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [leaf for v in obj.values() for leaf in nested_leaves(v)]
    if isinstance(obj, (list, tuple)):
        return [leaf for v in obj for leaf in nested_leaves(v)]
    return [obj]


def _spec_of(x: Any) -> Any:
    """A batch's inputs -> their description (tensors of one dimension or more become InputLeaf)."""
    return nested_map(lambda t: InputLeaf(tuple(t.shape[1:]), t.dtype) if isinstance(t, torch.Tensor) and t.ndim else t, x)


def record_inputs(model: Any, batches: Any, call: str) -> None:
    """Remember the inputs' per-sample shapes and dtypes for summary and export, at no cost per batch.

    Arrays are described at once; a DataLoader or iterable when its first batch comes (chained to the
    first-batch inspection the source already runs once)."""
    source = getattr(batches, "batches", batches)
    if isinstance(source, ArrayBatches):
        record_batch(model, source.data.x, call)
    elif isinstance(source, SourceBatches):
        inspect = source.inspect

        def remember(x: Any, y: Any, sw: Any) -> None:
            record_batch(model, x, call)
            if inspect is not None:
                inspect(x, y, sw)

        source.inspect = remember


def record_batch(model: Any, x: Any, call: str) -> None:
    """Remember the per-sample shapes and dtypes of inputs ``x`` (arrays, or one batch given directly to
    train_on_batch, test_on_batch or predict_on_batch)."""
    model._input_spec = (_spec_of(x), call)


_SHAPE_HELP = ("one sample's shape without the batch dimension, e.g. (28, 28); a list of shapes for a module "
               "that takes several inputs, a dict for keyword inputs")


def _parse_shapes(shapes: Any, argument: str) -> Any:
    """``(28, 28)`` / ``[(4,), (2,)]`` / ``{"x": (4,)}`` -> the inputs' description (float32)."""

    def leaf(shape: Any) -> InputLeaf:
        dims = tuple(shape)
        if not all(isinstance(d, Integral) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise ValueError(f"{argument}={shapes!r}: {dims!r} is not a shape of sizes (ints >= 0); give "
                             f"{_SHAPE_HELP}. For a size that varies (None in Keras), give any valid size")
        return InputLeaf(tuple(int(d) for d in dims), torch.get_default_dtype())

    def is_shape(obj: Any) -> bool:
        return isinstance(obj, (tuple, list, torch.Size)) and not any(isinstance(d, (tuple, list, dict)) for d in obj)

    if is_shape(shapes):
        return leaf(shapes)
    if isinstance(shapes, dict) and shapes and all(isinstance(k, str) and is_shape(v) for k, v in shapes.items()):
        return {k: leaf(v) for k, v in shapes.items()}
    if isinstance(shapes, (tuple, list)) and shapes and all(is_shape(v) for v in shapes):
        return tuple(leaf(v) for v in shapes)
    raise ValueError(f"{argument}={shapes!r} is not a shape; give {_SHAPE_HELP}")


def _zeros(spec: Any, batch: int, device: torch.device) -> Any:
    return nested_map(lambda s: torch.zeros((batch, *s.shape), dtype=s.dtype, device=device)
                if isinstance(s, InputLeaf) else s, spec)


def _as_batch(example: Any, device: torch.device) -> Any:
    def leaf(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor) or (is_array_leaf(obj) and not isinstance(obj, (int, float, bool))):
            t = to_tensor(obj, "example")
            return t.to(device)
        return obj

    batch = nested_map(leaf, example)
    if not any(isinstance(t, torch.Tensor) for t in nested_leaves(batch)):
        raise ValueError(f"example={type(example).__name__} holds no array; pass a batch of inputs as the module "
                         "takes them (an array, or a tuple / list / dict of arrays)")
    return batch


@dataclass
class Example:
    """A batch of inputs for a trace, and the words for where it came from."""

    batch: Any
    size: int  # the batch size (the first dimension of its tensors)
    origin: str  # "input_shape=(28, 28)", "example=", "the last fit"
    synthetic: bool  # zeros made from shapes, so any batch size can be made


def example_batch(model: Any, shapes: Any, example: Any, *, shapes_name: str, batch: int = 2) -> Example | None:
    """The batch to trace with: ``example``, else zeros of ``shapes``, else zeros of the shapes fit /
    evaluate / predict last saw; None when there is none of these."""
    if shapes is not None and example is not None:
        raise ValueError(f"pass {shapes_name}= or example=, not both")
    if example is not None:
        x = _as_batch(example, model.device)
        sizes = {int(t.shape[0]) for t in nested_leaves(x) if isinstance(t, torch.Tensor) and t.ndim}
        if len(sizes) != 1:
            raise ValueError(f"example: every input needs the same first (batch) dimension, got sizes {sorted(sizes)}")
        return Example(x, sizes.pop(), "example=", False)
    if shapes is not None:
        spec, origin = _parse_shapes(shapes, shapes_name), f"{shapes_name}={shapes!r}"
    elif getattr(model, "_input_spec", None) is not None:
        spec, call = model._input_spec
        origin = f"the last {call}"
    else:
        return None
    return Example(_zeros(spec, batch, model.device), batch, origin, True)


def input_text(example: Example) -> str:
    """The inputs' shapes as Keras writes them, the batch dimension as None: ``(None, 28, 28)``."""
    shapes = nested_map(lambda t: Dims((None, *t.shape[1:])) if isinstance(t, torch.Tensor) and t.ndim else t,
                        example.batch)
    return shape_text(shapes)


def resized(example: Example, size: int, device: torch.device) -> Any:
    """The example at another batch size: new zeros, a slice, or (from one sample) the sample repeated."""
    def leaf(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or not t.ndim:
            return t
        if size <= t.shape[0]:
            return t[:size]
        return t.repeat_interleave(-(-size // t.shape[0]), dim=0)[:size]

    if example.synthetic:
        return _zeros(_spec_of(example.batch), size, device)
    return nested_map(leaf, example.batch)


# --- counting -----------------------------------------------------------------------------------
def count_weights(module: nn.Module) -> dict[str, tuple[int, int]]:
    """``{"trainable" | "non_trainable": (count, bytes)}`` over distinct tensors (tied weights once).

    Non-trainable: parameters with ``requires_grad=False`` and the floating-point buffers the state_dict
    saves (BatchNorm's running mean and variance, as Keras counts its moving statistics); integer
    buffers (``num_batches_tracked``) and non-persistent ones are not weights."""
    totals = {"trainable": [0, 0], "non_trainable": [0, 0]}
    for t, trainable in _weights(module, _persistent(module)):
        slot = totals["trainable" if trainable else "non_trainable"]
        slot[0] += t.numel()
        slot[1] += t.numel() * t.element_size()
    return {k: (v[0], v[1]) for k, v in totals.items()}


def _persistent(module: nn.Module) -> set[int]:
    return {id(t) for t in module.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)}


def _weights(module: nn.Module, persistent: set[int]) -> Iterator[tuple[torch.Tensor, bool]]:
    seen: set[int] = set()
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p, p.requires_grad
    for b in module.buffers():
        if id(b) not in seen and id(b) in persistent and b.is_floating_point():
            seen.add(id(b))
            yield b, False


def readable_size(n_bytes: float) -> str:
    """Keras's size text: ``"1.21 MB"`` (powers of 1024, two decimals)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes / 1024 < 1:
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.2f} PB"


def _tied(module: nn.Module) -> tuple[int, list[list[str]]]:
    """The parameters reachable under several names: their count (once each) and the names of each."""
    names: dict[int, list[str]] = defaultdict(list)
    tensors: dict[int, torch.Tensor] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        names[id(p)].append(name)
        tensors[id(p)] = p
    groups = {k: v for k, v in names.items() if len(v) > 1}
    return sum(tensors[k].numel() for k in groups), list(groups.values())


def _optimizer_state(model: Any) -> tuple[int, int]:
    opt = getattr(model.optimizer, "torch_optimizer", None) if model.optimizer is not None else None
    count = size = 0
    for state in getattr(opt, "state", {}).values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                count, size = count + v.numel(), size + v.numel() * v.element_size()
    return count, size


# --- output shapes ------------------------------------------------------------------------------
@dataclass
class Row:
    depth: int
    name: str
    module: nn.Module
    own: bool = False  # the root's own parameters and buffers, not those of its children


def _rows(module: nn.Module, expand_nested: bool) -> list[Row]:
    def walk(parent: nn.Module, depth: int) -> list[Row]:
        out = []
        for name, child in parent.named_children():
            out.append(Row(depth, name, child))
            if expand_nested:
                out += walk(child, depth + 1)
        return out

    rows = walk(module, 0)
    if not rows:
        return [Row(0, "module", module)]
    if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
        rows.append(Row(0, "self", module, own=True))
    return rows


@contextlib.contextmanager
def inference_pass(module: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode and no_grad for a pass that changes nothing: each submodule's own mode and the random
    number generators (CPU and the module's device) are put back afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            module.eval()
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def _trace(module: nn.Module, rows: list[Row], x: Any) -> list[list[Any]]:
    """The output of every call of each row's module (its shapes only, no tensor is kept)."""
    seen: list[list[Any]] = [[] for _ in rows]
    index: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        index[id(row.module)].append(i)

    def hook(m: nn.Module, _args: Any, output: Any) -> None:
        shapes = nested_map(lambda t: Dims(tuple(t.shape)) if isinstance(t, torch.Tensor) else t, output)
        for i in index[id(m)]:
            seen[i].append(shapes)

    handles = [m.register_forward_hook(hook) for m in {id(r.module): r.module for r in rows}.values()]
    try:
        call_module(module, x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _batch_free(a: Any, b: Any, size: int) -> Any:
    """Shapes of one call at two batch sizes -> the dims that changed become None. Without a second
    run (``b`` None), a leading dim equal to the batch size does."""
    if b is None:
        return nested_map(lambda s: Dims((None, *s.dims[1:])) if isinstance(s, Dims) and s.dims and s.dims[0] == size
                          else s, a)
    if isinstance(a, Dims) and isinstance(b, Dims) and len(a.dims) == len(b.dims):
        return Dims(tuple(d if d == e else None for d, e in zip(a.dims, b.dims)))
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {k: _batch_free(a[k], b[k], size) for k in a}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [_batch_free(u, v, size) for u, v in zip(a, b)]
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return tuple(_batch_free(u, v, size) for u, v in zip(a, b))
    return _batch_free(a, None, size)


def shape_text(shapes: Any) -> str:
    """Keras's shape text: ``(None, 300)``; several outputs ``((None, 4), (None, 2))``, ``{a: (None, 4)}``."""
    def text(s: Any) -> Any:
        if isinstance(s, Dims):
            return f"({', '.join(str(d) for d in s.dims)})"
        if isinstance(s, dict):
            return {k: text(v) for k, v in s.items()}
        if isinstance(s, (list, tuple)):
            return type(s)(text(v) for v in s)
        return s if s is None else type(s).__name__

    formatted = text(shapes)
    flat = [t for t in nested_leaves(formatted) if isinstance(t, str)]
    if len(flat) == 1 and len(nested_leaves(formatted)) == 1:
        return flat[0]
    return str(formatted).replace("'", "")


def _output_shapes(model: Any, rows: list[Row], example: Example) -> list[str]:
    module, device = model.module, model.device
    with inference_pass(module, device):
        try:
            first = _trace(module, rows, example.batch)
        except Exception as err:
            raise ValueError(
                f"summary(): the module's forward failed on inputs {input_text(example)} (from {example.origin}): "
                f"{type(err).__name__}: {err}. Check the shape: {_SHAPE_HELP}; or pass example=a batch of inputs"
            ) from err
        other_size = example.size + 1 if example.synthetic or example.size == 1 else example.size - 1
        try:
            second: list[list[Any]] | None = _trace(module, rows, resized(example, other_size, device))
        except Exception:  # a module that takes one batch size only: fall back on the first dimension
            second = None
    texts = []
    for i, (row, calls) in enumerate(zip(rows, first)):
        if not calls:
            plain_container = isinstance(row.module, (nn.ModuleList, nn.ModuleDict, nn.ParameterList,
                                                      nn.ParameterDict))
            texts.append("-" if plain_container else "not called")
            continue
        paired = second[i][0] if second is not None and second[i] else None
        text = shape_text(_batch_free(calls[0], paired, example.size))
        texts.append(text if len(calls) == 1 else f"{text} ×{len(calls)}")
    return texts


# --- the table ----------------------------------------------------------------------------------
def _column_widths(line_length: int, positions: list[float], n: int) -> list[int]:
    if len(positions) != n or any(not isinstance(p, (int, float)) or p <= 0 for p in positions) or any(
            b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(f"positions={positions!r}: give {n} increasing column ends, as fractions of the line "
                         f"(e.g. [0.45, 0.8, 1.0]) or in characters")
    if positions[-1] > 1:
        positions = [p / positions[-1] for p in positions]
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        if width < 4:
            raise ValueError(f"line_length={line_length} is too short for the summary's columns; give a larger one")
        widths.append(width)
        current += width
    return widths


def _table(rows: list[list[str]], header: list[str], widths: list[int], line_length: int) -> list[str]:
    import rich.console
    import rich.table
    import rich.text

    justify = {"Param #": "right", "Trainable": "center"}
    columns = [rich.table.Column(h, justify=justify.get(h, "left"), width=w) for h, w in zip(header, widths)]
    table = rich.table.Table(*columns, width=line_length, show_lines=True)
    for row in rows:
        table.add_row(*(rich.text.Text(cell) for cell in row))
    out = io.StringIO()
    console = rich.console.Console(file=out, width=line_length, highlight=False, force_terminal=False,
                                   color_system=None, legacy_windows=False)
    console.print(table)
    return out.getvalue().rstrip("\n").split("\n")


def _trainable_mark(params: Iterator[nn.Parameter]) -> str:
    flags = {p.requires_grad for p in params}
    return "-" if not flags else ("Y" if flags == {True} else "N" if flags == {False} else "partly")


def summary(model: Any, input_shape: Any = None, *, example: Any = None, line_length: int | None = None,
            positions: list[float] | None = None, print_fn: Callable[[str], Any] | None = None,
            expand_nested: bool = False, show_trainable: bool = False) -> str:
    """The text of ``model.summary()``, printed (or given to ``print_fn`` line by line) on the main process."""
    if print_fn is not None and not callable(print_fn):
        raise ValueError(f"print_fn must be a function that takes one line of text (e.g. print), got {print_fn!r}")
    if line_length is not None and (isinstance(line_length, bool) or not isinstance(line_length, int)):
        raise ValueError(f"line_length must be a number of characters, e.g. 100, got {line_length!r}")
    module = model.module
    rows = _rows(module, expand_nested)
    chosen = example_batch(model, input_shape, example, shapes_name="input_shape", batch=2)
    shapes = _output_shapes(model, rows, chosen) if chosen is not None else ["?"] * len(rows)

    header = ["Layer (type)", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    default_length = 88 + (12 if show_trainable else 0)
    line_length = line_length or min(default_length, shutil.get_terminal_size().columns - 4)
    positions = list(positions) if positions is not None else [0.45, 0.80, 1.0]
    if show_trainable and len(positions) == 3:
        positions = [p * 0.90 for p in positions] + [1.0]
    widths = _column_widths(line_length, positions, len(header))
    if show_trainable and widths[-1] < 13 and widths[0] > 20:  # room for the header "Trainable", uncut
        widths[0], widths[-1] = widths[0] - (13 - widths[-1]), 13

    persistent = _persistent(module)
    cells = []
    for row, shape in zip(rows, shapes):
        if row.own:
            own = {id(t): t for t in [*row.module.parameters(recurse=False), *row.module.buffers(recurse=False)]}
            count = sum(t.numel() for t in own.values()
                        if isinstance(t, nn.Parameter) or (id(t) in persistent and t.is_floating_point()))
        else:
            count = sum(t.numel() for t, _ in _weights(row.module, persistent))
        prefix = "   " * row.depth + "└ " if row.depth else ""
        cell = [f"{prefix}{row.name} ({type(row.module).__name__})", shape, f"{count:,}"]
        if show_trainable:
            cell.append(_trainable_mark(row.module.parameters(recurse=not row.own)))
        cells.append(cell)

    counts = count_weights(module)
    (n_train, b_train), (n_frozen, b_frozen) = counts["trainable"], counts["non_trainable"]
    lines = [f'Model: "{type(module).__name__}"', *_table(cells, header, widths, line_length),
             f" Total params: {n_train + n_frozen:,} ({readable_size(b_train + b_frozen)})",
             f" Trainable params: {n_train:,} ({readable_size(b_train)})",
             f" Non-trainable params: {n_frozen:,} ({readable_size(b_frozen)})"]
    n_opt, b_opt = _optimizer_state(model)
    if n_opt:
        lines.append(f" Optimizer params: {n_opt:,} ({readable_size(b_opt)}), not in the total")
    n_tied, groups = _tied(module)
    if groups:
        names = "; ".join(" = ".join(g) for g in groups)
        lines.append(f" Shared params: {n_tied:,} ({names}), counted once in the total")
    if chosen is None:
        lines.append(" Output shapes unknown (?): pass input_shape=(one sample's shape, without the batch "
                     "dimension) or example=a batch of inputs, or call fit / evaluate / predict first")
    else:
        lines.append(f" Output shapes for inputs {input_text(chosen)} (from {chosen.origin}); None is the batch "
                     "dimension")
    text = "\n".join(lines)
    if distributed.is_main_process():
        for line in lines:
            (print_fn or print)(line)
    return text
