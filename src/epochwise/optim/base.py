"""The Optimizer base class: a Keras-named wrapper over a torch.optim optimizer (see optimizers.py)."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .. import distributed
from ..text import close_matches, is_int
from .ema import EMA_ARGS, check_ema, ema_note, full_tensor, like_param, update_average
from .schedules import LearningRateSchedule, _check_number, deserialize, serialize

LearningRate = float | LearningRateSchedule | Callable[[int], float]

_SCHEDULE_SET_ERROR = (
    "this optimizer's learning rate is driven by a schedule; pass a float learning_rate to use "
    "LearningRateScheduler/ReduceLROnPlateau (or assign a new schedule to optimizer.learning_rate)"
)  # RL6, LS3
_TORCH_NAMES = {"lr": "learning_rate", "betas": "beta_1 and beta_2", "eps": "epsilon", "alpha": "rho"}


def _check_learning_rate(owner: str, value: Any) -> tuple[float | None, Callable[[int], float] | None]:
    """(float, None) for a number, (None, schedule) for a schedule or a callable of the step."""
    if isinstance(value, LearningRateSchedule):
        return None, value
    if callable(value):
        try:
            inspect.signature(value).bind(0)
        except TypeError:
            raise ValueError(
                f"{owner}: a callable `learning_rate` must take the step (updates applied so far), "
                f"e.g. lambda step: 0.1 * 0.9 ** step; {value!r} cannot be called with one argument"
            ) from None
        except ValueError:  # no signature available (some builtins): trust it
            pass
        return None, value
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(
            f"{owner}: `learning_rate` must be a number > 0, an epochwise.schedules schedule or a "
            f"callable of the step, got {value!r}"
        )
    return float(value), None


def _set_group_lr(group: dict[str, Any], lr: float) -> None:
    if isinstance(group["lr"], torch.Tensor):  # a tensor lr (capturable/fused torch) stays a tensor
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


# Keras hyper-parameters and their ranges: (minimum, maximum, maximum included)
_HYPER_RANGES = {
    "beta_1": (0, 1, False),
    "beta_2": (0, 1, False),
    "rho": (0, 1, False),
    "momentum": (0, 1, True),
    "epsilon": (0, None, True),
    "initial_accumulator_value": (0, None, True),
}
_FLAGS = ("amsgrad", "nesterov", "centered")
def _check_hyper(owner: type, hyper: dict[str, Any]) -> dict[str, Any]:
    """Validate the Keras hyper-parameters; unknown names get a TypeError with torch-name hints and close matches."""
    allowed = [
        p for p in inspect.signature(owner.__init__).parameters if p not in ("self", "kwargs", "hyper")
    ]
    allowed += [p for p in ("clipnorm", "clipvalue", "global_clipnorm", *EMA_ARGS, "name") if p not in allowed]
    unknown = [k for k in hyper if k not in allowed or (k not in _HYPER_RANGES and k not in _FLAGS)]
    if unknown:
        hints = []
        for key in unknown:
            close = close_matches(key, allowed)
            hint = (
                f"torch's name; epochwise uses Keras's: {_TORCH_NAMES[key]}"
                if key in _TORCH_NAMES
                else (f"did you mean {', '.join(close)}?" if close else "")
            )
            hints.append(f"{key!r}" + (f" ({hint})" if hint else ""))
        raise TypeError(
            f"{owner.__name__}() got unexpected argument(s) {'; '.join(hints)}. "
            f"Its arguments are: {', '.join(allowed)}"
        )
    checked = {}
    for key, value in hyper.items():
        if key in _FLAGS:
            checked[key] = bool(value)
            continue
        low, high, high_ok = _HYPER_RANGES[key]
        checked[key] = _check_number(owner.__name__, key, value, minimum=low, maximum=high)
        if checked[key] == high and not high_ok:
            raise ValueError(f"{owner.__name__}: `{key}` must be in [{low}, {high}), got {value!r}")
    return checked


class Optimizer:
    """Keras-named wrapper over a ``torch.optim`` optimizer, built lazily when the Model knows its parameters.

    Subclasses (:class:`Adam`, :class:`SGD`, ...) give the Keras names and defaults; :meth:`wrap`
    adopts a torch optimizer you built yourself. ``iterations`` counts applied updates (SC0), and
    ``learning_rate`` can be read and set like Keras's (setting is refused when a schedule drives it).
    Every optimizer also takes the keyword arguments ``clipnorm`` (per-parameter norm), ``clipvalue``
    (per element), ``global_clipnorm`` (norm over all gradients) -- at most one -- and ``name``.

    Weight averaging, as Keras: with ``use_ema=True`` every applied update is followed by
    ``average = ema_momentum * average + (1 - ema_momentum) * weights`` (the first update sets the
    average to the weights); every ``ema_overwrite_frequency`` updates (if given) the weights are
    overwritten by the average, and at the end of ``fit`` :meth:`finalize_variable_values` puts the
    averages into the module, so evaluate, predict and save use them. The average is part of
    :meth:`state_dict`, so a resumed run continues it exactly.

    Example::

        opt = ew.optimizers.Adam(learning_rate=ew.schedules.ExponentialDecay(1e-3, 1000, 0.5))
        opt.build(module.parameters())
        loss.backward(); opt.step(); opt.zero_grad()
    """

    _torch_class: type[torch.optim.Optimizer] | None = None
    _keras_name: str | None = None  # the default `name`, where Keras's is not the lower-cased class name
    _decays_in_torch = False  # True where the torch class applies Keras-style decoupled weight decay itself

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        *,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        name: str | None = None,
        **hyper: Any,
    ) -> None:
        who = type(self).__name__
        self.name = name or self._keras_name or who.lower()
        self._lr, self._schedule = _check_learning_rate(who, learning_rate)
        self.weight_decay = (
            None if weight_decay is None else _check_number(who, "weight_decay", weight_decay, minimum=0)
        )
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        given = [k for k, v in clips.items() if v is not None]
        if len(given) > 1:
            raise ValueError(
                f"{who}: pass at most one of clipnorm, clipvalue and global_clipnorm, got {given}"
            )
        for key in given:
            clips[key] = _check_number(who, key, clips[key], minimum=0, strict=True)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clips.values()
        self.use_ema, self.ema_momentum, self.ema_overwrite_frequency = check_ema(
            who, use_ema, ema_momentum, ema_overwrite_frequency
        )
        self._average: list[torch.Tensor] | None = None  # the EMA of the parameters, from the first update
        hyper = _check_hyper(type(self), hyper)
        self._hyper = list(hyper)
        for key, value in hyper.items():
            setattr(self, key, value)
        self.iterations = 0
        self.built = False
        self.torch_optimizer: torch.optim.Optimizer = None  # type: ignore[assignment]  # set by build()
        self._pending_state: dict[str, Any] | None = None

    # --- building -----------------------------------------------------------------------------
    def _torch_kwargs(self) -> dict[str, Any]:
        """The torch constructor's keyword arguments, from the Keras-named attributes."""
        return {}

    def build(self, params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]) -> None:
        """Create ``self.torch_optimizer`` over ``params`` (parameters or torch param-group dicts).

        Building again with the same parameters does nothing; a state loaded before the build is applied now.
        """
        params = list(params)
        if self.built:
            current = [id(p) for g in self.torch_optimizer.param_groups for p in g["params"]]
            new = [id(p) for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
            if new == current:
                return
            raise RuntimeError(
                f"{self.name} is already built for other parameters; create a new optimizer "
                "for this module (one optimizer instance serves one model)"
            )
        if self._torch_class is None:
            raise TypeError(
                "Optimizer is the base class; use a subclass such as ew.optimizers.Adam(), "
                "or Optimizer.wrap(torch_optimizer) for a torch optimizer you built"
            )
        if not params:
            raise ValueError(
                f"{self.name}: there are no parameters to optimize; check that the module has "
                "parameters and that they were created before compile()"
            )
        self.torch_optimizer = self._torch_class(params, lr=self._current_lr(), **self._torch_kwargs())
        self.built = True
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    @classmethod
    def wrap(
        cls,
        torch_optimizer: torch.optim.Optimizer,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
    ) -> Optimizer:
        """Adopt a torch optimizer you built (already holding its parameters); optional Keras-style clipping
        and weight averaging.

        Example: ``Optimizer.wrap(torch.optim.AdamW(net.parameters(), lr=3e-4), global_clipnorm=1.0)``.
        """
        if not isinstance(torch_optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"Optimizer.wrap() takes a torch.optim.Optimizer instance, got {type(torch_optimizer)}"
            )
        opt = Optimizer(
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            name=type(torch_optimizer).__name__,
        )
        opt._lr = None  # the torch optimizer's param groups hold the rate
        opt.torch_optimizer = torch_optimizer
        opt.built = True
        return opt

    # --- learning rate ------------------------------------------------------------------------
    @property
    def schedule(self) -> Callable[[int], float] | None:
        """The schedule (or callable of the step) that drives the learning rate, else None."""
        return self._schedule

    def _schedule_value(self, step: int) -> float:
        value = float(self._schedule(step))  # type: ignore[misc]
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"{self.name}: the learning-rate schedule {self._schedule!r} returned {value} at "
                f"step {step}; it must return a finite number >= 0"
            )
        return value

    def _current_lr(self) -> float:
        return self._schedule_value(self.iterations) if self._schedule is not None else self._lr  # type: ignore[return-value]

    @property
    def learning_rate(self) -> float:
        """The rate the next update uses (for a schedule: its value at ``iterations``), as a Python float."""
        if self._schedule is not None:
            return self._schedule_value(self.iterations)
        if self.built:
            return float(self.torch_optimizer.param_groups[0]["lr"])
        return self._lr  # type: ignore[return-value]

    @learning_rate.setter
    def learning_rate(self, value: LearningRate) -> None:
        if isinstance(value, LearningRateSchedule) or callable(value):
            self._lr, self._schedule = _check_learning_rate(self.name, value)
            value = self._current_lr()
        elif self._schedule is not None:
            raise TypeError(_SCHEDULE_SET_ERROR)
        else:
            value = self._lr = _check_number(self.name, "learning_rate", value, minimum=0)
        if self.built:
            for group in self.torch_optimizer.param_groups:
                _set_group_lr(group, value)

    # --- the update ---------------------------------------------------------------------------
    def _require_built(self, what: str) -> torch.optim.Optimizer:
        if not self.built:
            raise RuntimeError(
                f"{self.name}.{what}() needs a built optimizer: call build(module.parameters()) "
                "first (Model.compile does this)"
            )
        return self.torch_optimizer

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none=True``)."""
        self._require_built("zero_grad").zero_grad(set_to_none=True)

    @torch.no_grad()
    def _clip(self, params: list[torch.Tensor]) -> None:
        if self.clipvalue is not None:
            torch.nn.utils.clip_grad_value_(params, self.clipvalue, foreach=None)
        elif self.global_clipnorm is not None:
            torch.nn.utils.clip_grad_norm_(
                params, self.global_clipnorm, foreach=None, error_if_nonfinite=False
            )
        elif self.clipnorm is not None:  # per parameter, Keras's clip_by_norm: g * c / max(|g|, c)
            grads = [p.grad for p in params]
            # out of place: under FSDP each norm is a partial (per-shard) value until it is reduced
            scales = torch._foreach_clamp_min(torch._foreach_norm(grads), self.clipnorm)
            torch._foreach_reciprocal_(scales)
            torch._foreach_mul_(scales, self.clipnorm)
            torch._foreach_mul_(grads, scales)

    @torch.no_grad()
    def _decay_weights(self) -> None:
        for group in self.torch_optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                torch._foreach_mul_(params, 1.0 - float(group["lr"]) * self.weight_decay)

    def step(self, scaler: Any = None) -> bool:
        """One update: schedule -> clipping -> decoupled weight decay -> torch step; ``iterations += 1``.

        Nothing here waits for the GPU: the schedule is Python math and clipping stays on the device.
        With a ``torch.amp.GradScaler`` (fp16 mixed precision) the gradients are unscaled before
        clipping and the scaler takes the step, skipping it when a gradient is inf or NaN: a skipped
        step changes no weight (no weight decay either) and is not counted, so ``iterations`` and the
        schedule stay where they were (SC0). Returns whether the update was applied.
        """
        opt = self._require_built("step")
        if self._schedule is not None:
            lr = self._schedule_value(self.iterations)  # SC0: t = updates already applied
            for group in opt.param_groups:
                _set_group_lr(group, lr)
        if scaler is not None:
            scaler.unscale_(opt)
        if self.clipnorm is not None or self.clipvalue is not None or self.global_clipnorm is not None:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if params:
                self._clip(params)
        decay = bool(self.weight_decay) and not self._decays_in_torch
        if scaler is not None:
            applied = self._scaled_step(opt, scaler, decay)
        else:
            if decay:
                self._decay_weights()
            opt.step()
            applied = True
        if applied:
            self.iterations += 1
            if self.use_ema:
                self._update_average()
        return applied

    # --- weight averaging (EMA) -----------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.torch_optimizer.param_groups for p in g["params"]]

    @torch.no_grad()
    def _update_average(self) -> None:
        """Keras's ``average = m * average + (1 - m) * w`` after an applied update (the first sets ``w``);
        every ``ema_overwrite_frequency`` updates the weights become the average."""
        params = self._params()
        if self._average is None or len(self._average) != len(params):
            self._average = [p.detach().clone() for p in params]
        else:
            update_average(self._average, params, self.ema_momentum)
        if self.ema_overwrite_frequency and self.iterations % self.ema_overwrite_frequency == 0:
            self.finalize_variable_values()

    @property
    def average(self) -> list[torch.Tensor] | None:
        """The moving average of each parameter (in param-group order), or None before the first update."""
        return self._average

    def ema_note(self) -> str:
        """The run plan's sentence on weight averaging."""
        return ema_note(self.ema_momentum, self.ema_overwrite_frequency)

    @torch.no_grad()
    def finalize_variable_values(self) -> None:
        """With ``use_ema``: copy the moving averages into the parameters (fit does this at its end)."""
        if self.use_ema and self._average is not None:
            torch._foreach_copy_([distributed.local_part(p.detach()) for p in self._params()],
                                 [distributed.local_part(a) for a in self._average])

    def _scaled_step(self, opt: torch.optim.Optimizer, scaler: Any, decay: bool) -> bool:
        """``scaler.step`` and ``update``; True when the torch step ran (the scaler returns None either way).

        A pre-hook on the torch optimizer sees the step run, and applies the weight decay only then. A
        fused optimizer skips inside its own kernel (its step always runs): there a lowered scale tells.
        """
        if getattr(opt, "_step_supports_amp_scaling", False):
            if decay:
                self._decay_weights()
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            return scaler.get_scale() >= scale  # a skipped step backs the scale off
        ran: list[bool] = []

        def before_step(*_: Any) -> None:
            ran.append(True)
            if decay:
                self._decay_weights()

        handle = opt.register_step_pre_hook(before_step)
        try:
            scaler.step(opt)
        finally:
            handle.remove()
        scaler.update()
        return bool(ran)

    # --- state --------------------------------------------------------------------------------
    def _sharded(self) -> bool:
        """Whether the parameters are FSDP shards (DTensors), so the torch state is sharded too."""
        opt = self.torch_optimizer
        if opt is None or not distributed.is_distributed():
            return False
        from torch.distributed.tensor import DTensor

        return any(isinstance(p, DTensor) for g in opt.param_groups for p in g["params"])

    def state_dict(self) -> dict[str, Any]:
        """``{"torch": torch_optimizer.state_dict(), "iterations": int}``, plus ``"ema"`` (the weight averages)
        with ``use_ema``; ``torch.load(weights_only=True)`` reads it.

        Under FSDP every rank must call it: the sharded state is gathered to the full one (on rank 0).
        """
        opt = self._require_built("state_dict")
        torch_state = distributed.optimizer_state(opt) if self._sharded() else opt.state_dict()
        state: dict[str, Any] = {"torch": torch_state, "iterations": self.iterations}
        if self._average is not None:  # as full tensors (under FSDP gathered, like the torch state)
            state["ema"] = [full_tensor(a) for a in self._average]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (before :meth:`build` it is kept and applied at build)."""
        if not isinstance(state, dict) or "torch" not in state or "iterations" not in state:
            raise ValueError(
                f"{self.name}.load_state_dict() expects the dict written by Optimizer.state_dict() "
                f"(keys 'torch' and 'iterations'), got {type(state).__name__}"
                + (f" with keys {sorted(state)}" if isinstance(state, dict) else "")
            )
        iterations = state["iterations"]
        if not is_int(iterations, 0):
            raise ValueError(
                f"{self.name}.load_state_dict(): 'iterations' must be an int >= 0, got {iterations!r}"
            )
        if not self.built:
            self._pending_state = state
            self.iterations = int(iterations)
            return
        average = None
        if state.get("ema") is not None:  # checked before anything is loaded
            params = self._params()
            if len(state["ema"]) != len(params):
                raise ValueError(
                    f"{self.name}.load_state_dict(): the saved weight average covers {len(state['ema'])} "
                    f"parameters, this optimizer {len(params)}"
                )
            average = [like_param(a, p) for a, p in zip(state["ema"], params)]
        if self._sharded():  # a full state (as saved): each rank keeps its shard
            distributed.load_optimizer_state(self.torch_optimizer, state["torch"])
        else:
            self.torch_optimizer.load_state_dict(state["torch"])
        self.iterations = int(iterations)
        self._average = average

    # --- config -------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Keras-named settings; a built-in schedule appears as ``{"class_name", "config"}``."""
        if isinstance(self._schedule, LearningRateSchedule):
            lr: Any = serialize(self._schedule)
        else:
            lr = self._schedule if self._schedule is not None else self.learning_rate
        return {
            "name": self.name,
            "learning_rate": lr,
            **{k: getattr(self, k) for k in self._hyper},
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        """Rebuild an (unbuilt) optimizer from :meth:`get_config`. Example: ``Adam.from_config(opt.get_config())``."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self) -> str:
        config = self.get_config()
        if not self.use_ema:
            config = {k: v for k, v in config.items() if k not in EMA_ARGS}
        args = ", ".join(f"{k}={v!r}" for k, v in config.items() if k != "name" and v is not None)
        return f"{type(self).__name__}({args})"

