"""Everything a run's future depends on, as one payload that ``torch.load(weights_only=True)`` reads.

A payload is taken at a batch boundary: the module and optimizer state (with the schedule's step),
the grad scaler, gradients of an unfinished accumulation group, the position (epoch and the number of
batches of it already done), every RNG as it was when the epoch began (so the same data order is drawn
again) and as it is now (dropout), the running loss and metric state of the epoch, the state of every
callback (History included) and the last epoch's logs. Resuming restores all of it, so a run that was
killed and resumed ends with the same bits as one that never stopped (on CPU).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import distributed
from ..callbacks.history import History
from .files import CHECKPOINT_KEY, cpu_state, load_file, load_into
from .model_file import compile_config

FORMAT = 2  # 2: callback states by state_key (1: a list by class name and position)


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    version, state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "python": [version, list(state), gauss],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": generator.get_state() if generator is not None else None,
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state["data"] is not None:
        generator.set_state(state["data"])


@dataclass
class ResumePoint:
    """Where the loop picks up: ``epoch``, after ``batch`` of its batches."""

    epoch: int
    batch: int
    epoch_rng: dict | None
    rng: dict
    tracker: dict | None
    epoch_logs: dict
    stop_training: bool
    epoch_begin_lrs: list[float] | None = None


class _Named:
    def __init__(self, key: str) -> None:
        self.state_key = key


def callback_keys(callbacks: list) -> list[str]:
    """Each callback's ``state_key``; a key that repeats gets ``#2``, ``#3``... in list order."""
    seen: dict[str, int] = {}
    keys = []
    for cb in callbacks:
        key = cb.state_key
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


def capture(model: Any, st: Any) -> dict[str, Any]:
    """The payload for the loop's current position ``st`` (see the module docstring)."""
    runner, module = st.runner, model.module
    callbacks = {}
    for key, cb in zip(callback_keys(st.callbacks.callbacks), st.callbacks.callbacks):
        state = cb.state_dict()
        if isinstance(cb, History) and st.epoch_end_logs is not None and (
            not state["epoch"] or state["epoch"][-1] != st.epoch - 1
        ):  # taken inside on_epoch_end, before History (which comes last) recorded this epoch
            state = {"history": {k: list(v) for k, v in state["history"].items()}, "epoch": list(state["epoch"])}
            state["epoch"].append(st.epoch - 1)
            for name, value in st.epoch_end_logs.items():
                state["history"].setdefault(name, []).append(value)
        callbacks[key] = state
    module_state = cpu_state(distributed.module_state(module))
    callbacks = _mark_module_copies(callbacks, module_state)
    grads = None
    if runner.pending:
        if runner.fsdp is not None:  # this rank's shard of the group's gradients so far
            distributed.reduce_held_gradients(runner.fsdp)
        grads = [None if p.grad is None else distributed.local_part(p.grad).detach().to("cpu").clone()
                 for p in module.parameters()]
    per_rank = {"rng": rng_state(st.generator), "epoch_rng": st.epoch_rng,
                "tracker": st.tracker.state_dict() if st.next_batch else None, "grads": grads}
    ranks = distributed.gather_objects(per_rank) if distributed.is_distributed() else None
    return {
        "epochwise_training_state": FORMAT,
        "ranks": ranks,
        "module": module_state,
        "optimizer": model.optimizer.state_dict(),
        "compile": compile_config(model),  # so ew.load_model rebuilds the model from a checkpoint
        "scaler": runner.scaler.state_dict() if runner.scaler is not None else None,
        "pending": runner.pending,
        "grads": grads,
        "epoch": st.epoch,
        "batch": st.next_batch,
        "epoch_rng": st.epoch_rng,
        "rng": rng_state(st.generator),
        "tracker": st.tracker.state_dict() if st.next_batch else None,
        "callbacks": callbacks,
        "epoch_logs": dict(st.epoch_logs),
        "epoch_begin_lrs": list(st.epoch_begin_lrs) if st.next_batch and st.epoch_begin_lrs else None,
        "stop_training": bool(model.stop_training and st.epoch_end_logs is not None),
    }


_SAME_AS_MODULE = {"epochwise_same_as": "module"}


def _mark_module_copies(state: Any, module_state: dict) -> Any:
    """Callback state that equals the module's weights (EarlyStopping's best weights at the best epoch) is
    stored as a marker: a checkpoint holds the weights once."""
    if isinstance(state, dict):
        if state.keys() == module_state.keys() and all(
            isinstance(v, torch.Tensor) and v.shape == module_state[k].shape
            and torch.equal(v.detach().cpu(), module_state[k]) for k, v in state.items()
        ):
            return dict(_SAME_AS_MODULE)
        return {k: _mark_module_copies(v, module_state) for k, v in state.items()}
    if isinstance(state, list):
        return [_mark_module_copies(v, module_state) for v in state]
    return state


def _unmark_module_copies(state: Any, module_state: dict) -> Any:
    if isinstance(state, dict):
        if state == _SAME_AS_MODULE:
            return {k: v.clone() for k, v in module_state.items()}
        return {k: _unmark_module_copies(v, module_state) for k, v in state.items()}
    if isinstance(state, list):
        return [_unmark_module_copies(v, module_state) for v in state]
    return state


def is_training_state(payload: Any) -> bool:
    return isinstance(payload, dict) and "epochwise_training_state" in payload


def apply(model: Any, payload: dict[str, Any], callbacks: Any, runner: Any, source: str) -> ResumePoint:
    """Restore weights, optimizer, scaler, gradients and callback states; return where to continue."""
    ranks = payload.get("ranks")
    if ranks and len(ranks) == distributed.world_size():  # this rank's own RNGs, running state, gradients
        payload = {**payload, **ranks[distributed.rank()]}
    load_into(model.module, payload["module"], source)
    model.optimizer.load_state_dict(payload["optimizer"])
    if payload.get("scaler") is not None and runner.scaler is not None:
        runner.scaler.load_state_dict(payload["scaler"])
    if payload.get("grads") is not None:
        for p, g in zip(model.module.parameters(), payload["grads"]):
            p.grad = None if g is None else distributed.like_param(g.to(p.device), p)
        runner.pending = int(payload["pending"])
    saved = _unmark_module_copies(payload["callbacks"], payload["module"])  # by state_key, not position
    if isinstance(saved, list):  # format 1
        saved = dict(zip(callback_keys([_Named(e["class"]) for e in saved]), (e["state"] for e in saved)))
    missing = []
    for key, cb in zip(callback_keys(callbacks.callbacks), callbacks.callbacks):
        if key in saved:
            cb.load_state_dict(saved[key])
        elif cb.state_dict():
            missing.append(key)
    if missing:
        warnings.warn(f"resuming from {source}: no saved state for {missing} (saved: {sorted(saved)}); "
                      "they start fresh", UserWarning, stacklevel=3)
    return ResumePoint(epoch=int(payload["epoch"]), batch=int(payload["batch"]), epoch_rng=payload["epoch_rng"],
                       rng=payload["rng"], tracker=payload.get("tracker"), epoch_logs=dict(payload["epoch_logs"]),
                       stop_training=bool(payload.get("stop_training", False)),
                       epoch_begin_lrs=payload.get("epoch_begin_lrs"))


def set_lrs(optimizer: Any, lrs: list[float] | None) -> None:
    """Put back the LRs an epoch began with, so on_epoch_begin (LR callbacks) computes the same values again."""
    if lrs:
        for group, lr in zip(optimizer.torch_optimizer.param_groups, lrs):
            group["lr"] = lr


def start(model: Any, st: Any, found: tuple[dict, str] | None, resume_from: Any) -> ResumePoint | None:
    """Load what a run resumes from: ``found`` (a callback's training state and its source, e.g.
    BackupAndRestore's backup), else the file ``resume_from``; None to start afresh."""
    if found is None and resume_from is not None:
        source = repr(str(resume_from))
        payload = load_file(resume_from)
        if not is_training_state(payload):
            if CHECKPOINT_KEY not in payload:
                raise ValueError(
                    f"resume_from={source} holds weights only; resuming needs a full checkpoint "
                    "(ModelCheckpoint(..., save_weights_only=False) writing a .pt file) or use model.load_weights()")
            load_into(model.module, payload["module"], source)
            if payload.get("optimizer") is not None:
                model.optimizer.load_state_dict(payload["optimizer"])
            epoch = int(payload.get("extra", {}).get("epoch", st.epoch))
            return ResumePoint(epoch, 0, None, rng_state(None), None, {}, False)
        found = payload, source
    if found is None:
        return None
    point = apply(model, found[0], st.callbacks, st.runner, found[1])
    if point.batch == 0:  # an epoch boundary: the RNGs continue from here
        set_rng_state(point.rng, st.generator)
    st.epoch_logs = point.epoch_logs
    return point
