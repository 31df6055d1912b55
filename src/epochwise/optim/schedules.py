"""Learning-rate schedules with Keras's names, arguments and formulas (rules SC0-SC7 of docs/behaviour.md).

A schedule is a callable of the step that returns a Python float. Pass one as an optimizer's
``learning_rate`` and it is evaluated at ``t = optimizer.iterations``, the number of updates already
applied (SC0), before every update. Pass one to ``LearningRateScheduler`` and it is evaluated at the
0-based epoch index instead: ``schedule(epoch, lr)`` works because ``__call__`` accepts (and ignores)
a second argument, and :meth:`LearningRateSchedule.as_epoch_schedule` says the same thing explicitly.

Example::

    import epochwise as ew

    lr = ew.schedules.CosineDecay(0.0, decay_steps=1000, warmup_target=1e-3, warmup_steps=100)
    model.compile(optimizer=ew.optimizers.Adam(learning_rate=lr), loss="mse")   # per update
    cb = ew.callbacks.LearningRateScheduler(ew.schedules.StepDecay(0.1, step_size=10))  # per epoch

Everything here is plain Python math (no tensors), so evaluating a schedule never synchronises a GPU.
Subclass :class:`LearningRateSchedule` and implement ``_value(step)`` and ``get_config()`` for your own.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "LearningRateSchedule",
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
    "StepDecay",
    "InverseSqrtDecay",
    "Constant",
    "serialize",
    "deserialize",
]


def _check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> float:
    """``value`` as a float, or a ValueError that names ``owner(name=...)`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: `{name}` must be a finite number, got {value!r}")
    low_bad = minimum is not None and (value <= minimum if strict else value < minimum)
    if low_bad or (maximum is not None and value > maximum):
        low = "" if minimum is None else f"{'>' if strict else '>='} {minimum}"
        high = "" if maximum is None else f"<= {maximum}"
        raise ValueError(
            f"{owner}: `{name}` must be {' and '.join(s for s in (low, high) if s)}, got {value!r}"
        )
    return float(value)


class LearningRateSchedule:
    """Base class: a learning rate as a function of the step (a Python float in, a Python float out).

    ``schedule(step)`` gives the rate for update number ``step`` (0-based). ``schedule(epoch, lr)``
    also works and ignores ``lr``, so an instance can be handed straight to ``LearningRateScheduler``.

    Example::

        class Halving(ew.schedules.LearningRateSchedule):
            def __init__(self, lr0): self.lr0 = lr0
            def _value(self, step): return self.lr0 / 2 ** step
            def get_config(self): return {"lr0": self.lr0}
    """

    def __call__(self, step: float, lr: float | None = None) -> float:
        if isinstance(step, bool) or not isinstance(step, numbers.Real) or not step >= 0:
            raise ValueError(
                f"{type(self).__name__}: the step must be a number >= 0 (updates or epochs done so far), got {step!r}"
            )
        return float(self._value(float(step)))

    def _value(self, step: float) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement _value(step) -> float")

    def as_epoch_schedule(self) -> Callable[[int, float], float]:
        """A ``(epoch, lr) -> new_lr`` function for ``LearningRateScheduler``: the rate at ``step=epoch``.

        Example: ``LearningRateScheduler(ExponentialDecay(0.1, 10, 0.5).as_epoch_schedule())``.
        """
        return lambda epoch, lr: self(epoch)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments; ``type(s)(**s.get_config())`` rebuilds the schedule."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_config()")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = "..."
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``lr0 * decay_rate ** (t / decay_steps)``; with ``staircase`` the exponent is ``floor(t / decay_steps)`` (SC1).

    Example: ``ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)(20)`` gives 0.025.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        decay_rate: float,
        staircase: bool = False,
        name: str = "ExponentialDecay",
    ) -> None:
        who = type(self).__name__
        self.initial_learning_rate = _check_number(
            who, "initial_learning_rate", initial_learning_rate, minimum=0
        )
        self.decay_steps = _check_number(who, "decay_steps", decay_steps, minimum=0, strict=True)  # SC0
        self.decay_rate = _check_number(who, "decay_rate", decay_rate, minimum=0, strict=True)
        self.staircase = bool(staircase)
        self.name = name

    def _value(self, step: float) -> float:
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate**p

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[i]`` on the interval ``(boundaries[i-1], boundaries[i]]``; upper bounds are inclusive (SC2).

    Example: ``PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])`` gives 1.0 up to step 10, 0.5 up
    to step 20 and 0.1 after.
    """

    def __init__(
        self, boundaries: Sequence[float], values: Sequence[float], name: str = "PiecewiseConstant"
    ) -> None:
        who = type(self).__name__
        if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
            raise ValueError(f"{who}: `boundaries` must be a list of steps, got {boundaries!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"{who}: `values` must be a list of learning rates, got {values!r}")
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{who}: `values` must have one more entry than `boundaries` (one rate before the first "
                f"boundary and one after each); got {len(boundaries)} boundaries and {len(values)} values"
            )
        self.boundaries = [_check_number(who, "boundaries[]", b) for b in boundaries]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"{who}: `boundaries` must be strictly increasing, got {list(boundaries)!r}")
        self.values = [_check_number(who, "values[]", v, minimum=0) for v in values]
        self.name = name

    def _value(self, step: float) -> float:
        return self.values[bisect.bisect_left(self.boundaries, step)]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """``(lr0 - end) * (1 - t'/D) ** power + end`` (SC3); ``power=1`` is a linear decay.

    Without ``cycle``: ``t' = min(t, decay_steps)`` and ``D = decay_steps``, so the rate ends flat at
    ``end_learning_rate``. With ``cycle``: ``t' = t`` and ``D = decay_steps * ceil(t / decay_steps)``
    (``decay_steps`` at t=0), so the rate jumps back up after each period.

    Example: ``PolynomialDecay(0.1, 10, 0.01)(5)`` gives 0.055.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        end_learning_rate: float = 1e-4,
        power: float = 1.0,
        cycle: bool = False,
        name: str = "PolynomialDecay",
    ) -> None:
        who = type(self).__name__
        self.initial_learning_rate = _check_number(
            who, "initial_learning_rate", initial_learning_rate, minimum=0
        )
        self.decay_steps = _check_number(who, "decay_steps", decay_steps, minimum=0, strict=True)  # SC0
        self.end_learning_rate = _check_number(who, "end_learning_rate", end_learning_rate, minimum=0)
        self.power = _check_number(who, "power", power, minimum=0, strict=True)
        self.cycle = bool(cycle)
        self.name = name

    def _value(self, step: float) -> float:
        if self.cycle:
            period = self.decay_steps * max(math.ceil(step / self.decay_steps), 1)
        else:
            period, step = self.decay_steps, min(step, self.decay_steps)
        span = self.initial_learning_rate - self.end_learning_rate
        return span * (1 - step / period) ** self.power + self.end_learning_rate

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


class InverseTimeDecay(LearningRateSchedule):
    """``lr0 / (1 + decay_rate * t / decay_steps)``; ``staircase`` uses ``floor(t / decay_steps)`` (SC4).

    Example: ``InverseTimeDecay(0.1, 10, 0.5)(20)`` gives 0.05.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        decay_rate: float,
        staircase: bool = False,
        name: str = "InverseTimeDecay",
    ) -> None:
        who = type(self).__name__
        self.initial_learning_rate = _check_number(
            who, "initial_learning_rate", initial_learning_rate, minimum=0
        )
        self.decay_steps = _check_number(who, "decay_steps", decay_steps, minimum=0, strict=True)  # SC0
        self.decay_rate = _check_number(who, "decay_rate", decay_rate, minimum=0)
        self.staircase = bool(staircase)
        self.name = name

    def _value(self, step: float) -> float:
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1 + self.decay_rate * p)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


def _cosine(step: float, decay_steps: float, alpha: float) -> float:
    return (1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` to ``alpha * initial_learning_rate`` over ``decay_steps`` (SC5).

    With ``warmup_target=W`` the rate first moves linearly from ``initial_learning_rate`` to ``W``
    over ``warmup_steps`` steps, then decays from ``W`` to ``alpha * W`` over ``decay_steps`` more
    steps. Without ``warmup_target``, ``warmup_steps`` is ignored (as in Keras). The rate stays flat
    at the end.

    Example (warm up to 1e-3 in 100 steps, then decay over 900)::

        CosineDecay(0.0, decay_steps=900, warmup_target=1e-3, warmup_steps=100)
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        alpha: float = 0.0,
        name: str = "CosineDecay",
        warmup_target: float | None = None,
        warmup_steps: float = 0,
    ) -> None:
        who = type(self).__name__
        self.initial_learning_rate = _check_number(
            who, "initial_learning_rate", initial_learning_rate, minimum=0
        )
        self.decay_steps = _check_number(who, "decay_steps", decay_steps, minimum=0, strict=True)  # SC0
        self.alpha = _check_number(who, "alpha", alpha, minimum=0, maximum=1)
        self.name = name
        self.warmup_target = (
            None if warmup_target is None else _check_number(who, "warmup_target", warmup_target, minimum=0)
        )
        self.warmup_steps = _check_number(who, "warmup_steps", warmup_steps, minimum=0)

    def _value(self, step: float) -> float:
        if self.warmup_target is None:
            return self.initial_learning_rate * _cosine(
                min(step, self.decay_steps), self.decay_steps, self.alpha
            )
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            frac = step / self.warmup_steps
            return self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate) * frac
        return self.warmup_target * _cosine(step - self.warmup_steps, self.decay_steps, self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR) (SC6).

    Period ``i`` (0-based) lasts ``first_decay_steps * t_mul**i`` steps and peaks at
    ``lr0 * m_mul**i``; within a period the rate follows ``lr0 * [(1-alpha) * m_mul**i * 0.5 *
    (1 + cos(pi * fraction)) + alpha]``, so the ``alpha`` floor does not shrink with ``m_mul``.
    ``t_mul`` must be >= 1: with shrinking periods Keras's formula breaks down (NaN) after a finite
    number of steps.

    Example: ``CosineDecayRestarts(0.1, 10)`` restarts at steps 10, 30, 70, ...
    """

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: float,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str = "SGDRDecay",
    ) -> None:
        who = type(self).__name__
        self.initial_learning_rate = _check_number(
            who, "initial_learning_rate", initial_learning_rate, minimum=0
        )
        self.first_decay_steps = _check_number(
            who, "first_decay_steps", first_decay_steps, minimum=0, strict=True
        )  # SC0
        self.t_mul = _check_number(who, "t_mul", t_mul, minimum=1)
        self.m_mul = _check_number(who, "m_mul", m_mul, minimum=0)
        self.alpha = _check_number(who, "alpha", alpha, minimum=0, maximum=1)
        self.name = name

    def _period_start(self, i: int) -> float:
        """Where period ``i`` starts, in units of ``first_decay_steps``."""
        return float(i) if self.t_mul == 1 else (1 - self.t_mul**i) / (1 - self.t_mul)

    def _value(self, step: float) -> float:
        f = step / self.first_decay_steps
        if self.t_mul == 1:
            i = math.floor(f)
        else:
            i = math.floor(math.log(1 - f * (1 - self.t_mul)) / math.log(self.t_mul))
            # the closed form can land one period off at a boundary through rounding; settle it exactly
            while self._period_start(i + 1) <= f:
                i += 1
            while i > 0 and self._period_start(i) > f:
                i -= 1
        fraction = (f - self._period_start(i)) / self.t_mul**i
        cosine = 0.5 * self.m_mul**i * (1 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


class StepDecay(LearningRateSchedule):
    """``lr0 * gamma ** floor(t / step_size)``: multiply by ``gamma`` every ``step_size`` steps.

    The same rule as ``torch.optim.lr_scheduler.StepLR``. Example: ``StepDecay(0.1, step_size=30)``
    gives 0.1 for steps 0-29, 0.01 for 30-59, and so on.
    """

    def __init__(self, initial_learning_rate: float, step_size: float, gamma: float = 0.1) -> None:
        who = type(self).__name__
        self.initial_learning_rate = _check_number(
            who, "initial_learning_rate", initial_learning_rate, minimum=0
        )
        self.step_size = _check_number(who, "step_size", step_size, minimum=0, strict=True)
        self.gamma = _check_number(who, "gamma", gamma, minimum=0, strict=True)

    def _value(self, step: float) -> float:
        return self.initial_learning_rate * self.gamma ** math.floor(step / self.step_size)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "step_size": self.step_size,
            "gamma": self.gamma,
        }


class InverseSqrtDecay(LearningRateSchedule):
    """Linear warmup, then decay as ``1/sqrt(t)`` (the Transformer / fairseq "inverse_sqrt" rule).

    With ``w = warmup_steps``::

        lr(t) = lr0 * t / w                        for t < w    (0 at t=0, rising linearly)
        lr(t) = lr0 * sqrt(max(w, 1) / max(t, 1)) for t >= w   (lr0 at t=w, then 1/sqrt(t))

    The two pieces meet at ``t = w`` (both give ``lr0``). Without warmup (``w=0``) the rate is
    ``lr0`` at steps 0 and 1 and ``lr0 / sqrt(t)`` after.

    Example: ``InverseSqrtDecay(1e-3, warmup_steps=4000)`` gives 1e-3 at step 4000 and 5e-4 at 16000.
    """

    def __init__(self, initial_learning_rate: float, warmup_steps: float = 0) -> None:
        who = type(self).__name__
        self.initial_learning_rate = _check_number(
            who, "initial_learning_rate", initial_learning_rate, minimum=0
        )
        self.warmup_steps = _check_number(who, "warmup_steps", warmup_steps, minimum=0)

    def _value(self, step: float) -> float:
        w = self.warmup_steps
        if step < w:
            return self.initial_learning_rate * step / w
        return self.initial_learning_rate * math.sqrt(max(w, 1.0) / max(step, 1.0))

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "warmup_steps": self.warmup_steps}


class Constant(LearningRateSchedule):
    """The same rate at every step. Example: ``Constant(0.01)(1000)`` gives 0.01."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _check_number(type(self).__name__, "learning_rate", learning_rate, minimum=0)

    def _value(self, step: float) -> float:
        return self.learning_rate

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` for a built-in schedule (the Keras layout)."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict[str, Any]) -> LearningRateSchedule:
    """Rebuild a schedule from :func:`serialize`'s output. Example: ``deserialize(serialize(s))``."""
    builtin = {name: globals()[name] for name in __all__[1:10]}
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in builtin:
        raise ValueError(
            f"cannot rebuild a schedule from {config!r}: expected {{'class_name': one of {sorted(builtin)}, "
            "'config': {...}}; for your own subclass call YourSchedule.from_config(config['config'])"
        )
    return builtin[name].from_config(dict(config.get("config", {})))
