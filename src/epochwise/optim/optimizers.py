"""Optimizers with Keras's names and default hyper-parameters, running ``torch.optim`` underneath.

``compile(optimizer=...)`` takes a Keras name (``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"``,
``"adagrad"``, ``"adadelta"``, ``"adamax"``, ``"nadam"``), an instance such as
``ew.optimizers.Adam(learning_rate=1e-3, global_clipnorm=1.0)``, or a ``torch.optim`` optimizer you
built yourself. The torch optimizer is created lazily by :meth:`Optimizer.build` once the parameters
are known. ``learning_rate`` may be a float, a :mod:`epochwise.schedules` schedule or any callable
of the step; a schedule is evaluated at ``t = iterations`` (updates already applied) before each
update (SC0).

Example::

    import epochwise as ew
    opt = ew.optimizers.SGD(learning_rate=0.1, momentum=0.9, clipnorm=1.0)
    model.compile(optimizer=opt, loss="mse")
    model.optimizer.learning_rate = 0.01        # what ReduceLROnPlateau does

Differences from Keras
----------------------
Keras's hyper-parameter names and defaults are kept and mapped onto torch's (``beta_1, beta_2 ->
betas``, ``epsilon -> eps``, ``rho -> alpha`` for RMSprop). The update rules are torch's; where they
differ from Keras 3's:

- **Adam, AdamW**: Keras adds ``epsilon`` to ``sqrt(v)`` and folds the second-moment bias
  correction into the step size ("epsilon hat"); torch adds it to ``sqrt(v / (1 - beta_2**t))``.
  Keras's effective epsilon is therefore torch's times ``sqrt(1 - beta_2**t)``; the two agree
  unless ``sqrt(v)`` is as small as ``epsilon``.
- **RMSprop**: Keras divides by ``sqrt(v + epsilon)``, torch by ``sqrt(v) + epsilon``. With
  ``momentum``, Keras accumulates steps already scaled by the learning rate, torch scales the
  accumulated value by the current rate: identical for a constant rate, different once it changes.
- **SGD with momentum**: the same as RMSprop's momentum (identical for a constant learning rate).
- **Adagrad**: Keras divides by ``sqrt(acc + epsilon)``, torch by ``sqrt(acc) + epsilon``.
- **Adamax**: Keras divides by ``u + epsilon``, torch by ``max(beta_2 * u, |g| + epsilon)``.
- **Adadelta**: the same algorithm (note Keras's default rate 0.001 against torch's 1.0).
- **Nadam**: the same algorithm. Keras 3's momentum schedule is ``beta_1 * (1 - 0.5 * 0.96**t)``,
  so torch's ``NAdam`` is built with ``momentum_decay=1.0`` (torch's own default, 0.004, follows
  Dozat's paper and warms the momentum up 250 times more slowly).
- **weight_decay** is decoupled, as in Keras for every optimizer: before each update
  ``p -= learning_rate * weight_decay * p`` for every parameter that has a gradient (torch's
  ``AdamW`` does this itself; for the others epochwise does it, and torch's own ``weight_decay``,
  an L2 term added to the gradient, is not used).
- **global_clipnorm** uses ``torch.nn.utils.clip_grad_norm_``, which divides by ``norm + 1e-6``
  where Keras divides by ``norm``. ``clipnorm`` (per parameter, ``g * c / max(|g|, c)``) and
  ``clipvalue`` are exactly Keras's.
- A callable ``learning_rate`` takes the step (Keras's takes no argument). ``loss_scale_factor`` and
  ``gradient_accumulation_steps`` are not offered (``compile(accumulate_steps=...)`` accumulates).
- ``use_ema``, ``ema_momentum``, ``ema_overwrite_frequency``: Keras's weight averaging, the same update
  (the first update sets the average to the weights); see :class:`Optimizer`.
"""
from __future__ import annotations

from typing import Any

import torch

from ..text import did_you_mean
from .base import LearningRate, Optimizer

__all__ = ["Optimizer", "Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "get"]


def _ema(use_ema: bool, ema_momentum: float, ema_overwrite_frequency: int | None) -> dict[str, Any]:
    """Keras's weight-averaging arguments, passed on to :class:`Optimizer` (which checks them)."""
    return {"use_ema": use_ema, "ema_momentum": ema_momentum, "ema_overwrite_frequency": ema_overwrite_frequency}


class Adam(Optimizer):
    """Adam on ``torch.optim.Adam``, with Keras's defaults. Example: ``Adam(learning_rate=3e-4, global_clipnorm=1.0)``."""

    _torch_class = torch.optim.Adam

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        weight_decay: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate,
            weight_decay=weight_decay,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs,
        )

    def _torch_kwargs(self) -> dict[str, Any]:
        return {"betas": (self.beta_1, self.beta_2), "eps": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras default 0.004) on ``torch.optim.AdamW``. Example: ``AdamW(1e-3, 0.01)``."""

    _torch_class = torch.optim.AdamW
    _decays_in_torch = True

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        if weight_decay is None:
            raise ValueError("AdamW: `weight_decay` must be a number >= 0 (use Adam for no weight decay)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs)

    def _torch_kwargs(self) -> dict[str, Any]:
        return {**super()._torch_kwargs(), "weight_decay": self.weight_decay}


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum on ``torch.optim.SGD``. Example: ``SGD(0.1, momentum=0.9)``."""

    _torch_class = torch.optim.SGD
    _keras_name = "SGD"

    def __init__(
        self,
        learning_rate: LearningRate = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
            **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs
        )

    def _torch_kwargs(self) -> dict[str, Any]:
        # torch refuses nesterov without momentum; Keras then simply does plain SGD
        return {"momentum": self.momentum, "nesterov": self.nesterov and self.momentum > 0}


class RMSprop(Optimizer):
    """RMSprop on ``torch.optim.RMSprop`` (``rho`` is torch's ``alpha``). Example: ``RMSprop(1e-3, rho=0.95)``."""

    _torch_class = torch.optim.RMSprop

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        weight_decay: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate,
            weight_decay=weight_decay,
            rho=rho,
            momentum=momentum,
            epsilon=epsilon,
            centered=centered,
            **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs,
        )

    def _torch_kwargs(self) -> dict[str, Any]:
        return {"alpha": self.rho, "eps": self.epsilon, "momentum": self.momentum, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad on ``torch.optim.Adagrad``, with Keras's defaults. Example: ``Adagrad(learning_rate=0.01)``."""

    _torch_class = torch.optim.Adagrad

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate,
            weight_decay=weight_decay,
            epsilon=epsilon,
            initial_accumulator_value=initial_accumulator_value,
            **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs,
        )

    def _torch_kwargs(self) -> dict[str, Any]:
        return {"initial_accumulator_value": self.initial_accumulator_value, "eps": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta on ``torch.optim.Adadelta`` (Keras's rate 0.001; the paper's is 1.0). Example: ``Adadelta(1.0)``."""

    _torch_class = torch.optim.Adadelta

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        rho: float = 0.95,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, weight_decay=weight_decay, rho=rho, epsilon=epsilon,
                         **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs)

    def _torch_kwargs(self) -> dict[str, Any]:
        return {"rho": self.rho, "eps": self.epsilon}


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm) on ``torch.optim.Adamax``. Example: ``Adamax(learning_rate=2e-3)``."""

    _torch_class = torch.optim.Adamax

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs
        )

    def _torch_kwargs(self) -> dict[str, Any]:
        return {"betas": (self.beta_1, self.beta_2), "eps": self.epsilon}


class Nadam(Optimizer):
    """Adam with Nesterov momentum on ``torch.optim.NAdam``, Keras's update. Example: ``Nadam(learning_rate=2e-3)``."""

    _torch_class = torch.optim.NAdam

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            **_ema(use_ema, ema_momentum, ema_overwrite_frequency), **kwargs
        )

    def _torch_kwargs(self) -> dict[str, Any]:
        # Keras 3: mu_t = beta_1 * (1 - 0.5 * 0.96**t), i.e. torch's 0.96**(t * momentum_decay) with momentum_decay=1
        return {"betas": (self.beta_1, self.beta_2), "eps": self.epsilon, "momentum_decay": 1.0}


_BY_NAME: dict[str, type[Optimizer]] = {
    "adam": Adam,
    "adamw": AdamW,
    "sgd": SGD,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "adamax": Adamax,
    "nadam": Nadam,
}


def get(identifier: str | Optimizer | torch.optim.Optimizer) -> Optimizer:
    """Resolve ``compile(optimizer=...)``: a Keras name (case-insensitive), an Optimizer, or a torch optimizer.

    Example: ``get("Adam")`` is ``Adam()``; ``get(torch.optim.SGD(net.parameters(), lr=0.1))`` wraps it.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, torch.optim.Optimizer):
        return Optimizer.wrap(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]()
        hint = did_you_mean(key, list(_BY_NAME), cutoff=0.5, sep=", ")
        raise ValueError(f"unknown optimizer {identifier!r}.{hint} Known names: {', '.join(_BY_NAME)}")
    if isinstance(identifier, type) and issubclass(identifier, torch.optim.Optimizer):
        name = identifier.__name__
        keras_name = name.lower() if name.lower() in _BY_NAME else "adam"
        raise TypeError(
            f"got the class torch.optim.{name}, not an optimizer: create it, e.g. "
            f"optimizer=torch.optim.{name}(model.module.parameters(), lr=1e-3), or pass a name "
            f"such as optimizer='{keras_name}'"
        )
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        name = identifier.__name__
        raise TypeError(f"got the class {name}, not an optimizer: pass {name}() or the name '{name.lower()}'")
    raise TypeError(
        f"optimizer must be a name ({', '.join(_BY_NAME)}), an epochwise.optimizers.Optimizer or a "
        f"torch.optim.Optimizer instance, got {type(identifier).__name__}: {identifier!r}"
    )
