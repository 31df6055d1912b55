"""The compile settings inside a ``model.save`` checkpoint, so ``ew.load_model`` needs only the module.

``compile`` records what it received (``model._compile_config``); :func:`compile_config` turns it into
plain data that ``torch.load(weights_only=True)`` reads: names, numbers, lists, dicts and tensors.
Built-in objects are stored by class name and config (optimizers, schedules, losses, metrics, torch
losses and optimizers); a user's function or class is stored by name only, and :func:`compile_args`
asks for it back through ``custom_objects`` (Keras's word), saying which ones are needed.

Example::

    model.save("m.pt")
    model = ew.load_model("m.pt", module=Net(), custom_objects={"my_loss": my_loss})
"""

from __future__ import annotations

import inspect
import numbers
import os
from typing import Any

import torch

from ..losses import classes as losses_mod
from ..metrics import classes as metrics_mod
from ..optim import optimizers as optimizers_mod
from ..optim import schedules as schedules_mod

MARK = "epochwise_object"  # the key of a dict that describes an object, not a dict the user gave
_TORCH_LOSS_SKIP = ("size_average", "reduce")  # torch's deprecated loss arguments


# --- saving ----------------------------------------------------------------------------------------
def compile_config(model: Any) -> dict[str, Any] | None:
    """What ``model.compile`` received, as plain data (None when the model was never compiled)."""
    recorded = getattr(model, "_compile_config", None)
    if recorded is None or not model.compiled:
        return None
    config = {}
    for key, value in recorded.items():
        if key == "optimizer":
            config[key] = _optimizer(model.optimizer)
        elif key == "loss":
            config[key] = _describe(value, "loss", decided_logits=model._decided_logits and value is model._loss)
        else:
            config[key] = _describe(value, key)
    return config


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _python(value: Any) -> Any:
    """NumPy numbers as Python numbers (a pickled NumPy scalar is refused by the safe loader)."""
    if isinstance(value, (bool, torch.Tensor)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_python(v) for v in value)
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    return value


def _custom(value: Any, role: str, config: Any = None) -> dict[str, Any]:
    name = getattr(value, "__name__", None) or type(value).__name__
    if name == "<lambda>":
        name = role
    described: dict[str, Any] = {MARK: "custom", "name": name, "role": role}
    if config is not None and _plain(_python(config)):
        described["config"] = _python(config)
    return described


def _builtin(value: Any, module: Any) -> bool:
    """An instance of one of ``module``'s public classes (not a user's subclass)."""
    cls = type(value)
    return cls.__name__ in getattr(module, "__all__", ()) and getattr(module, cls.__name__) is cls


def _init_config(obj: Any) -> dict[str, Any] | None:
    """The constructor arguments of ``obj`` read back from its attributes, or None if any is missing."""
    config = {}
    extra = getattr(obj, "fn_kwargs", {}) or {}
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in _TORCH_LOSS_SKIP:
            continue
        if hasattr(obj, name):
            config[name] = getattr(obj, name)
        elif name in extra:
            config[name] = extra[name]
        else:
            return None
    config = _python(config)
    return config if _plain(config) else None


def _torch_loss(value: torch.nn.Module) -> dict[str, Any] | None:
    """A torch.nn loss by class name and the arguments that rebuild it exactly, else None."""
    cls = type(value)
    if getattr(torch.nn, cls.__name__, None) is not cls:
        return None
    config = _init_config(value)
    if config is None:
        return None
    try:
        again = cls(**config)
    except Exception:  # arguments read back that the constructor does not take as they are
        return None
    def settings(m: torch.nn.Module) -> dict[str, Any]:
        return {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"}

    same_state = all(torch.equal(a, b) for a, b in zip(value.state_dict().values(), again.state_dict().values()))
    if settings(again) != settings(value) or not same_state or value.state_dict().keys() != again.state_dict().keys():
        return None
    return {MARK: "torch_loss", "class_name": cls.__name__, "config": config}


def _describe(value: Any, role: str, decided_logits: bool = False) -> Any:
    """``value`` as plain data: names and numbers as they are, objects as ``{MARK: kind, ...}``."""
    value = _python(value)
    if isinstance(value, dict):
        return {k: _describe(v, f"{role}[{k!r}]") for k, v in value.items()} if all(
            isinstance(k, str) for k in value) else _custom(value, role)
    if isinstance(value, (list, tuple)):
        return type(value)(_describe(v, f"{role}[{i}]") for i, v in enumerate(value))
    if _plain(value):
        return value
    if isinstance(value, type):  # a class passed as such (metrics=[ew.metrics.AUC])
        if value.__name__ in metrics_mod.__all__ and getattr(metrics_mod, value.__name__) is value:
            return {MARK: "metric_class", "class_name": value.__name__}
        return _custom(value, role)
    if isinstance(value, losses_mod.Loss):
        config = value.get_config()
        if decided_logits and "from_logits" in config:
            config["from_logits"] = None  # decided by compile from the module: decided again on load
        if _builtin(value, losses_mod) and not isinstance(value, (losses_mod.TorchLoss, losses_mod.LossFunctionWrapper)):
            return {MARK: "loss", "class_name": type(value).__name__, "config": _python(config)}
        if isinstance(value, losses_mod.TorchLoss):
            return _describe(value.loss, role)
        if isinstance(value, losses_mod.LossFunctionWrapper):
            return _custom(value.fn, role)
        return _custom(value, role, config)
    if isinstance(value, metrics_mod.Metric):
        config = _init_config(value) if _builtin(value, metrics_mod) else None
        if config is not None:
            return {MARK: "metric", "class_name": type(value).__name__, "config": config}
        return _custom(value, role, _user_config(value))
    if isinstance(value, torch.nn.modules.loss._Loss):
        return _torch_loss(value) or _custom(value, role)
    if callable(value) and getattr(value, "__module__", None) == "torch.nn.functional":
        return {MARK: "torch_function", "name": value.__name__}
    return _custom(value, role, _user_config(value))


def _user_config(value: Any) -> Any:
    get_config = getattr(value, "get_config", None)
    if not callable(get_config) or isinstance(value, type):
        return None
    try:
        return get_config()
    except Exception:  # a user's get_config that fails: stored by name only
        return None


def _optimizer(opt: Any) -> dict[str, Any]:
    own = {k: getattr(opt, k) for k in ("clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
                                        "ema_overwrite_frequency")}
    cls = type(opt)
    if cls is optimizers_mod.Optimizer:  # Optimizer.wrap(torch optimizer)
        torch_opt = opt.torch_optimizer
        tcls = type(torch_opt)
        accepted = inspect.signature(tcls).parameters
        defaults = _python({k: v for k, v in torch_opt.defaults.items() if k in accepted})
        if getattr(torch.optim, tcls.__name__, None) is not tcls or len(torch_opt.param_groups) != 1 or not _plain(
                defaults):
            return _custom(torch_opt, "optimizer")
        return {MARK: "torch_optimizer", "class_name": tcls.__name__, "config": defaults, "wrap": own}
    config = opt.get_config()
    schedule = opt.schedule
    if schedule is not None and not isinstance(config["learning_rate"], dict):  # a callable of the step
        config["learning_rate"] = _custom(schedule, "learning_rate")
    elif isinstance(schedule, schedules_mod.LearningRateSchedule) and not _builtin(schedule, schedules_mod):
        config["learning_rate"] = _custom(schedule, "learning_rate", schedule.get_config())
    if not _builtin(opt, optimizers_mod):
        return _custom(opt, "optimizer", config)
    return {MARK: "optimizer", "class_name": cls.__name__, "config": _python(config)}


# --- loading ---------------------------------------------------------------------------------------
def compile_args(config: dict[str, Any], module: torch.nn.Module, custom_objects: dict[str, Any] | None,
                 source: str) -> dict[str, Any]:
    """The keyword arguments for ``model.compile`` from :func:`compile_config`'s output.

    Raises ValueError listing every object the file names but cannot hold, unless ``custom_objects``
    (name -> function, class or instance) gives it.
    """
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"custom_objects must be a dict {{name: function or class}}, got {type(custom_objects).__name__}")
    missing: list[tuple[str, str]] = []
    args = {k: _resolve(v, custom_objects or {}, missing) for k, v in config.items()}
    if missing:
        names = ", ".join(f"{role} (a lambda)" if name == role else f"{role} {name!r}" for role, name in missing)
        example = ", ".join(f"{name!r}: ..." for _, name in missing)
        raise ValueError(
            f"{source} was compiled with objects a file cannot hold: {names}. Pass them again: "
            f"ew.load_model(path, module=..., custom_objects={{{example}}}), or call "
            "model.compile(...) yourself before model.load(path)"
        )
    opt = args.get("optimizer")
    if isinstance(opt, tuple):  # a torch optimizer: built over this module's parameters
        cls, kwargs, wrap = opt
        args["optimizer"] = optimizers_mod.Optimizer.wrap(cls(module.parameters(), **kwargs), **wrap)
    return args


def _resolve(value: Any, custom: dict[str, Any], missing: list[tuple[str, str]]) -> Any:
    if isinstance(value, list):
        return [_resolve(v, custom, missing) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, custom, missing) for v in value)
    if not isinstance(value, dict):
        return value
    kind = value.get(MARK)
    if kind is None:
        return {k: _resolve(v, custom, missing) for k, v in value.items()}
    if kind == "custom":
        name = value["name"]
        if name not in custom:
            missing.append((value["role"], name))
            return None
        found = custom[name]
        if isinstance(found, type) and "config" in value:
            config = _resolve(value["config"], custom, missing)
            return found.from_config(config) if hasattr(found, "from_config") else found(**config)
        return found
    if kind == "optimizer":
        config = _resolve(value["config"], custom, missing)
        return None if missing else getattr(optimizers_mod, value["class_name"]).from_config(config)
    if kind == "torch_optimizer":
        return getattr(torch.optim, value["class_name"]), dict(value["config"]), dict(value["wrap"])
    if kind == "loss":
        return getattr(losses_mod, value["class_name"]).from_config(dict(value["config"]))
    if kind == "metric":
        return getattr(metrics_mod, value["class_name"])(**value["config"])
    if kind == "metric_class":
        return getattr(metrics_mod, value["class_name"])
    if kind == "torch_loss":
        return getattr(torch.nn, value["class_name"])(**value["config"])
    if kind == "torch_function":
        return getattr(torch.nn.functional, value["name"])
    raise ValueError(f"unknown entry {value!r} in the compile settings of a checkpoint")


def load_model(path: str | os.PathLike, module: torch.nn.Module | None = None, *,
               custom_objects: dict[str, Any] | None = None, compile: bool = True,
               device: str | torch.device = "auto", seed: int | None = None) -> Any:
    """A Model around ``module`` with the weights, compile settings and optimizer state of ``model.save``'s file.

    Example: ``model = ew.load_model("m.pt", module=Net())``, then ``model.evaluate(x, y)`` or ``model.fit(...)``
    to continue. ``custom_objects``: ``{name: function or class}`` for the losses and metrics that were your
    own functions; ``compile=False`` loads the weights alone.
    """
    from ..model import Model

    if not isinstance(module, torch.nn.Module):
        got = "nothing" if module is None else type(module).__name__
        raise TypeError(
            f"load_model needs the module to load into (a file holds weights, not code): "
            f"ew.load_model(path, module=Net()), got {got}"
        )
    model = Model(module, device=device, seed=seed)
    model.load(path, custom_objects=custom_objects, compile=compile)
    return model
