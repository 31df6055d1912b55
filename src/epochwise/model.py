"""Model: Keras's compile / fit / evaluate / predict around any ``torch.nn.Module``."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import torch

from . import data as _data
from . import distributed
from .callbacks.callback_list import CallbackList
from .callbacks.history import History
from .callbacks.progbar_logger import ProgbarLogger
from .engine import loop as _loop
from .engine import plan as _fit_args
from .engine import report as _report
from .engine import signals as _signals
from .engine import step as _step
from .engine.logs import Tracker as _Tracker
from .insight import summary as _summary
from .io import export as _export
from .io import files as _io
from .io import model_file as _model_file
from .io import training_state as _resume
from .losses import classes as losses_mod
from .losses import outputs as outputs_mod
from .metrics import classes as metrics_mod
from .metrics import outputs as metric_outputs
from .optim import optimizers as optimizers_mod

__all__ = ["Model"]



def resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from err


class Model:
    """Wraps a ``torch.nn.Module`` with the Keras training API.

    Example::

        model = ew.Model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=32, epochs=10, validation_split=0.2)

    ``model.module`` is always the module you passed in (never a wrapper), so its ``state_dict`` keys
    never change. ``device="auto"`` picks cuda, then mps, then cpu; ``seed`` makes the data order and
    dropout reproducible.
    """

    def __init__(
        self, module: torch.nn.Module, *, device: str | torch.device = "auto", seed: int | None = None
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"Model needs a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        # under torchrun: the process group is initialised and each process takes its local GPU
        self.device = distributed.setup(resolve_device(device), device_was_auto=device == "auto")
        self.module.to(self.device)
        self.strategy = "ddp"
        self.seed = seed
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.loss: Any = None
        self._loss: Any = None
        self._metrics: list[Any] = []
        self._weighted_metrics: list[Any] = []
        self._loss_note = ""
        self._decided_logits = False
        self.history: History | None = None
        self.stop_training = False
        self.expected_log_keys: list[str] | None = None
        self._loss_reason = ""
        self._settings = _step.StepSettings()

    # --- compile ------------------------------------------------------------------------------
    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        metrics: Any = None,
        weighted_metrics: Any = None,
        *,
        loss_weights: Any = None,
        precision: str = "32",
        compile: bool | dict = False,
        accumulate_steps: int = 1,
        strategy: str = "ddp",
    ) -> None:
        """Choose the optimizer, the loss and the metrics, by Keras name or as objects.

        Example: ``model.compile(optimizer=ew.optimizers.Adam(learning_rate=0.005),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"])``

        ``precision``: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast; fp16 adds a grad scaler).
        ``compile``: ``True`` (or a dict of ``torch.compile`` keyword arguments) compiles the module's
        forward for fit, evaluate and predict; ``model.module`` stays your module. ``accumulate_steps``:
        apply the mean gradient of that many batches per optimizer step. Gradient clipping is an
        optimizer argument, as in Keras: ``ew.optimizers.Adam(global_clipnorm=1.0)``.
        ``strategy``: under torchrun, ``"ddp"`` (DistributedDataParallel) or ``"fsdp"`` (FSDP2: parameters,
        gradients and optimizer state sharded over the processes; see ``docs/distributed.md``). In one
        process both train the plain module.

        Several outputs (a module returning a tuple, list or dict): ``loss=[...]`` / ``loss={name: ...}``,
        ``loss_weights`` (a list or dict, 1.0 each by default) and ``metrics=[[...], [...]]`` /
        ``{name: [...]}``; see ``docs/multi-output.md``.
        """
        self._compile_config = {k: v for k, v in locals().items() if k != "self"}  # what model.save stores
        strategy = self._check_strategy(strategy, precision)
        self._settings = _step.StepSettings.from_compile(precision, compile, accumulate_steps)
        if loss is None:
            raise ValueError(
                "compile() needs a loss, e.g. loss='sparse_categorical_crossentropy' or loss=torch.nn.MSELoss()"
            )
        self.optimizer = self._build_optimizer(optimizer, strategy)
        self.strategy = strategy
        self._compile_outputs = (loss, loss_weights, metrics, weighted_metrics)
        declared = outputs_mod.declared_outputs(loss, loss_weights, metrics, weighted_metrics)
        from_logits = self._set_loss(loss, loss_weights, declared)
        self._set_metrics(metrics, weighted_metrics, from_logits)

    @property
    def precision(self) -> str:
        return self._settings.precision

    def _check_strategy(self, strategy: Any, precision: Any) -> str:
        strategy = distributed.check_strategy(strategy)
        if strategy == "fsdp" and precision == "16-mixed":
            raise ValueError("precision='16-mixed' is not supported with strategy='fsdp' (its grad scaler "
                             "would skip steps rank by rank); use precision='bf16-mixed'")
        if strategy == "ddp" and distributed.is_sharded(self.module):
            raise ValueError("this module was sharded by an earlier compile(strategy='fsdp') and cannot go back "
                             "to DDP; compile with strategy='fsdp' or build a new module")
        return strategy

    def _build_optimizer(self, optimizer: Any, strategy: str) -> optimizers_mod.Optimizer:
        """The optimizer by name or object, built over this module's parameters (its shards under FSDP)."""
        opt = optimizers_mod.get(optimizer)
        foreign = ValueError(
            "the torch optimizer passed to compile() updates none of this module's parameters; "
            "create it with model.module.parameters(), or pass a name such as optimizer='adam'"
        )
        sharding = strategy == "fsdp" and distributed.is_distributed() and not distributed.is_sharded(self.module)
        if sharding:  # the optimizer is built (again) over the shards, with fresh state
            new_params = distributed.shard_module(self.module, self.device)
            if opt.built:
                opt.torch_optimizer = distributed.rebuild_optimizer(opt.torch_optimizer, new_params)
                if opt.torch_optimizer is None:
                    raise foreign
        if not opt.built:
            opt.build(self.module.parameters())
        else:
            own = {id(p) for p in self.module.parameters()}
            used = [p for g in opt.torch_optimizer.param_groups for p in g["params"]]
            if used and not any(id(p) in own for p in used):
                raise foreign
        return opt

    def _set_loss(self, loss: Any, loss_weights: Any = None, outputs: tuple | None = None) -> bool:
        """The loss by name or object; ``from_logits=None`` is decided from the module's last layer. Several
        outputs (a list / dict of losses, or ``outputs`` = (positional, names)): ``losses.outputs``."""
        self._output_logits: dict[str, bool] = {}
        if outputs is not None or outputs_mod.is_structure(loss):
            positional, names = outputs if outputs is not None else (None, None)
            self._loss = self.loss = outputs_mod.OutputLosses(loss, loss_weights, names, positional)
            self._output_logits = self._loss.decide_logits(*losses_mod.infer_from_logits(self.module))
            self._decided_logits, self._loss_reason, self._loss_note = bool(self._loss.decided), self._loss.reason, ""
            return any(self._output_logits.values())
        self._loss = self.loss = losses_mod.get(loss)
        from_logits, reason = losses_mod.infer_from_logits(self.module)
        self._decided_logits = getattr(self._loss, "from_logits", "absent") is None
        if self._decided_logits:
            self._loss.from_logits = from_logits
            self._loss_reason = reason
        elif hasattr(self._loss, "from_logits"):
            from_logits = bool(self._loss.from_logits)
        self._loss_note = ("from logits" if from_logits else "probabilities") if hasattr(self._loss, "from_logits") else ""
        return from_logits

    def _set_metrics(self, metrics: Any, weighted_metrics: Any, from_logits: bool) -> None:
        self._metric_outputs: list[str | None] = []  # for several outputs: the output each metric reads
        if isinstance(self._loss, outputs_mod.OutputLosses):
            plain, weighted_pairs = metric_outputs.per_output_metrics(
                metrics, weighted_metrics, self._loss.names, self._output_logits, metrics_mod.get_list)
            self._metrics = [*self._loss.trackers.values(), *(m for _, m in plain)]
            self._weighted_metrics = [m for _, m in weighted_pairs]
            self._metric_outputs = [None] * len(self._loss.trackers) + [n for n, _ in plain + weighted_pairs]
            return
        self._metrics = metrics_mod.get_list(metrics, from_logits=from_logits)
        weighted = [copy.deepcopy(m) for m in metrics_mod.get_list(weighted_metrics, from_logits=from_logits)]
        plain_names = {m.name for m in self._metrics}
        for m in weighted:  # G5: a name in both lists becomes weighted_<name>
            if m.name in plain_names:
                m.name = f"weighted_{m.name}"
        self._weighted_metrics = weighted

    @property
    def compiled(self) -> bool:
        return self._loss is not None

    @property
    def compiled_metrics(self) -> list[Any]:
        return self._metrics + self._weighted_metrics

    @property
    def metrics_names(self) -> list[str]:
        if isinstance(self._loss, outputs_mod.OutputLosses):  # E4 as Keras: loss, each output's loss, the rest sorted
            own = [m.name for m in self._loss.trackers.values()]
            return ["loss", *own, *sorted(m.name for m in self.compiled_metrics if m.name not in own)]
        return ["loss"] + [m.name for m in self.compiled_metrics]

    def _bind_targets(self, y: Any) -> None:
        """One loss for a module with several outputs, and y with one target per output (a list, tuple or
        dict of arrays): the loss applies to every output (Keras); the metrics are read per output. A callable
        loss (a function or torch loss) given once takes the whole structures instead, as it always has."""
        if (not self.compiled or isinstance(self._loss, (outputs_mod.OutputLosses, losses_mod.LossFunctionWrapper,
                                                         losses_mod.TorchLoss))
                or not outputs_mod.is_structure(y) or not _data.is_array_input(y)):
            return
        if self._decided_logits:  # the single-output decision is taken again per output
            self._loss.from_logits = None
        loss, loss_weights, metrics, weighted_metrics = self._compile_outputs
        self._set_metrics(metrics, weighted_metrics, self._set_loss(loss, loss_weights, outputs_mod.output_names(y)))

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise ValueError(f"call model.compile(optimizer=..., loss=...) before model.{what}()")  # F17

    # --- fit ----------------------------------------------------------------------------------
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: Any = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool | str = _fit_args.SHUFFLE_DEFAULT,
        class_weight: dict | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int | list[int] = 1,
        *,
        seed: int | None = None,
        check_finite: bool = True,
        resume_from: str | os.PathLike | None = None,
    ) -> History:
        """Train for ``epochs`` (an end index: epochs ``initial_epoch .. epochs-1`` run, F4).

        Every argument is checked before the first training step; see ``docs/keras-compatibility.md``
        for where epochwise differs from Keras on purpose.
        """
        self._require_compiled("fit")
        level = _report.verbosity(verbose)
        data = _fit_args.prepare_fit(
            self, x=x, y=y, batch_size=batch_size, epochs=epochs, validation_split=validation_split,
            validation_data=validation_data, shuffle=shuffle, class_weight=class_weight, sample_weight=sample_weight,
            initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq, seed=seed,
            check_finite=check_finite)
        _summary.record_inputs(self, data.train, "fit")  # for summary() and export()
        steps = data.train.num_steps()
        params = {"verbose": verbose, "epochs": data.epochs, "steps": steps}
        cbs = CallbackList(callbacks, model=self, params=params, add_history=True,
                           progbar=ProgbarLogger() if level else None)
        self.expected_log_keys = self._expected_keys(data.val is not None)
        plan = _loop.FitPlan(train=data.train, epochs=data.epochs, initial_epoch=data.initial_epoch, val=data.val,
                             validation_freq=data.validation_freq, check_first=data.check_first,
                             batch_size=data.batch_size, resume_from=resume_from)
        if level and distributed.is_main_process():
            print(_report.run_plan(n_train=data.n_train, n_val=data.n_val, batch_size=data.batch_size, steps=steps,
                                   epochs=data.epochs, initial_epoch=data.initial_epoch, device=self._device_text(),
                                   loss=self._loss_text(), steps_given=steps_per_epoch is not None,
                                   inputs=data.storage), flush=True)
            if self.optimizer.use_ema:
                print(f"  {self.optimizer.ema_note()}", flush=True)
        if seed is not None or self.seed is not None:
            torch.manual_seed(seed if seed is not None else self.seed)  # dropout and other module randomness
        with distributed.quiet_unless_main():
            state = _loop.fit_loop(self, plan, cbs)
        self.history = history = cbs.history
        if level and distributed.is_main_process():
            planned = steps * max(data.epochs - data.initial_epoch, 0) if steps is not None else None
            lines = cbs.summaries() + _report.run_notes(state, history, planned=planned, stopped=self.stop_training)
            if lines:
                print("; ".join(lines), flush=True)
        if state.interrupted:
            _signals.reraise(state.interrupted)  # after History and the callbacks' on_train_end
        return history

    # --- evaluate / predict ----------------------------------------------------------------------
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Any = None,
        return_dict: bool = False,
        *,
        check_finite: bool = True,
        **kwargs: Any,
    ) -> float | list[float] | dict[str, float]:
        """Loss and metrics over the data, in eval mode under inference_mode (E1-E4)."""
        if kwargs:
            hint = " (class_weight applies to training only)" if "class_weight" in kwargs else ""
            raise ValueError(f"evaluate() got unexpected argument(s) {sorted(kwargs)}{hint}")
        self._require_compiled("evaluate")
        level = _report.verbosity(verbose)
        data = _fit_args.prepare_evaluate(self, x=x, y=y, batch_size=batch_size, sample_weight=sample_weight,
                                          steps=steps, check_finite=check_finite)
        _summary.record_inputs(self, data.batches, "evaluate")
        params = {"verbose": verbose, "epochs": 1, "steps": data.batches.num_steps()}
        cbs = CallbackList(callbacks, model=self, params=params, progbar=ProgbarLogger() if level else None)
        with distributed.quiet_unless_main():
            logs = _loop.evaluate_loop(self, data.batches, cbs, data.check_first)
        if return_dict:
            return logs
        order = [n for n in self.metrics_names if n in logs] + sorted(
            k for k in logs if k not in self.metrics_names
        )
        values = [logs[k] for k in order]
        return values[0] if len(values) == 1 else values  # E4

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        steps: int | None = None,
        callbacks: Any = None,
        *,
        check_finite: bool = True,
    ) -> Any:
        """The module's outputs as NumPy arrays, in sample order (P1-P4)."""
        level = _report.verbosity(verbose)
        data = _fit_args.prepare_predict(self, x=x, batch_size=batch_size, steps=steps, check_finite=check_finite)
        _summary.record_inputs(self, data.batches, "predict")
        params = {"verbose": verbose, "epochs": 1, "steps": data.batches.num_steps()}
        cbs = CallbackList(callbacks, model=self, params=params, progbar=ProgbarLogger() if level else None)
        with distributed.quiet_unless_main():
            return _loop.predict_loop(self, data.batches, cbs, data.check_first)

    # --- single batches (P5) -----------------------------------------------------------------------
    def train_on_batch(
        self, x: Any, y: Any = None, sample_weight: Any = None, class_weight: dict | None = None,
        return_dict: bool = False, *, check_finite: bool = True,
    ) -> float | list[float] | dict[str, float]:
        """fit's training step on one batch, in train mode; returns that batch's loss and metrics (P5, E4).

        The same step as fit: precision, clipping, the schedule and ``iterations`` advance per applied
        update. With ``accumulate_steps=k`` the optimizer steps on every k-th call (the loss of each call is
        divided by k, as in fit); a group still open when ``fit`` starts is dropped. With ``use_ema`` the
        averages are updated, and ``model.optimizer.finalize_variable_values()`` puts them in the module.
        """
        self._require_compiled("train_on_batch")
        x, y, sw, check = self._one_batch("train_on_batch", x, y, sample_weight, class_weight, check_finite)
        runner = getattr(self, "_batch_runner", None)
        if runner is None or runner.settings is not self._settings:
            runner = self._batch_runner = _step.StepRunner(self, training=True)
        elif runner.pending and all(p.grad is None for p in self.module.parameters()):
            runner.pending = 0  # fit (or the user) cleared the gradients of the open group
        return self._run_batch(runner, x, y, sw, check, return_dict, training=True)

    def test_on_batch(
        self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False, *,
        check_finite: bool = True,
    ) -> float | list[float] | dict[str, float]:
        """The loss and metrics of one batch, in eval mode under inference_mode (P5, E4)."""
        self._require_compiled("test_on_batch")
        x, y, sw, check = self._one_batch("test_on_batch", x, y, sample_weight, None, check_finite)
        return self._run_batch(_step.StepRunner(self), x, y, sw, check, return_dict, training=False)

    def predict_on_batch(self, x: Any, *, check_finite: bool = True) -> Any:
        """The module's outputs for one batch as NumPy arrays, in eval mode under inference_mode (P5)."""
        x = self._one_batch("predict_on_batch", x, None, None, None, check_finite, targets=False)[0]
        runner, was_training = _step.StepRunner(self), self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                return _data.concat_outputs([runner.predict_step(x)])
        finally:
            self.module.train(was_training)

    def _one_batch(self, call: str, x: Any, y: Any, sample_weight: Any, class_weight: Any, check_finite: bool,
                   targets: bool = True) -> tuple[Any, Any, Any, Any]:
        """One batch of arrays checked as fit checks its data, on the device; the first-batch check (targets
        against the output, the logits decision) on the first call after compile."""
        if x is None or not _data.is_array_input(x):
            raise ValueError(f"{call}() takes one batch of arrays or tensors as x; for a DataLoader, Dataset or "
                             f"iterable use {'predict' if not targets else 'fit or evaluate'}()")
        if targets and y is None:
            raise ValueError(f"{call}() got no y; pass the batch's targets as y=...")
        if class_weight is not None and (sample_weight is not None or not isinstance(class_weight, dict)):
            raise ValueError("class_weight must be a dict {class index: weight}, and cannot be combined with "
                             f"sample_weight (fold the class weights into sample_weight); got {class_weight!r}")
        arrays = _data.ArrayData(x, y, sample_weight)
        if arrays.n == 0:
            raise ValueError(f"x holds 0 samples; {call}() needs a batch of at least one")
        if check_finite:
            _data.check_finite(arrays.parts(), call)
        if class_weight is not None:
            if isinstance(arrays.y, (tuple, list, dict)):
                raise ValueError("class_weight works with a single target array; use sample_weight for several outputs")
            arrays.sample_weight = _data.class_weights_to_sample_weights(arrays.y, class_weight)
        arrays = arrays.to(self.device)
        _summary.record_batch(self, arrays.x, call)  # for summary() and export(), as fit's inputs
        if targets:
            self._bind_targets(arrays.y)  # one loss, one target per output: the loss applies to each, as in fit
        check = None
        if targets and getattr(self, "_batch_checked", None) is not self._settings:
            self._batch_checked = self._settings
            check = _data.first_batch_check(self, _data.Targets("y", arrays.y, [tuple(t.shape[1:]) for t in
                                                                              _data.leaves(arrays.x)]))
        return arrays.x, arrays.y, arrays.sample_weight, check

    def _run_batch(self, runner: Any, x: Any, y: Any, sw: Any, check: Any, return_dict: bool,
                   training: bool) -> float | list[float] | dict[str, float]:
        tracker = _Tracker(self)
        tracker.reset()  # P5: the values of this batch alone
        was_training = self.module.training
        self.module.train(training)
        try:
            if training:
                loss, y_pred = runner.train_step(x, y, sw, check)
            else:
                with torch.inference_mode():
                    loss, y_pred = runner.test_step(x, y, sw, check)
            tracker.update(loss, y, y_pred, sw, _loop.batch_size_of(x))
            logs = tracker.logs()
        finally:
            self.module.train(was_training)
        if return_dict:
            return logs
        order = [n for n in self.metrics_names if n in logs] + sorted(k for k in logs if k not in self.metrics_names)
        values = [logs[k] for k in order]
        return values[0] if len(values) == 1 else values  # E4, as evaluate

    # --- weights ------------------------------------------------------------------------------
    def get_weights(self) -> dict[str, torch.Tensor]:
        """A detached copy of the module's state_dict (what EarlyStopping snapshots)."""
        return {k: v.detach().clone() for k, v in distributed.module_state(self.module, everywhere=True).items()}

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        _io.load_into(self.module, weights, "the weights given")

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the module's state_dict to ``.pt`` or ``.safetensors``, atomically (under FSDP the full one)."""
        _io.save_state_dict(path, distributed.module_state(self.module))

    def load_weights(self, path: str | os.PathLike) -> None:
        """Read weights from ``.pt``/``.safetensors`` (or a full checkpoint) without unpickling anything."""
        payload = _io.load_file(path)
        _io.load_into(self.module, _io.module_state(payload), repr(str(path)))

    def save(self, path: str | os.PathLike, extra: dict | None = None, *, training_state: bool = False) -> None:
        """A ``.pt`` checkpoint: module weights, compile settings, optimizer state and ``extra`` (e.g. the
        epoch); ``ew.load_model(path, module=Net())`` gives back a model ready to evaluate or train on.

        ``training_state=True`` (during fit only) adds everything ``fit(resume_from=path)`` needs to continue
        the run exactly: position, RNGs, callbacks' states, History. ModelCheckpoint and BackupAndRestore
        ask for it; without it the file is the same wherever it is written.
        """
        if training_state:
            state = _loop.running_state(self)
            if state is None:
                raise ValueError("save(training_state=True) is only possible during fit (from a callback); "
                                 "outside fit call model.save(path)")
            _io.save_checkpoint(path, {**_resume.capture(self, state), "extra": extra or {}})
            return
        _io.save_checkpoint(
            path,
            {
                "module": _io.cpu_state(distributed.module_state(self.module)),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "compile": _model_file.compile_config(self),
                "extra": extra or {},
            },
        )

    def load(self, path: str | os.PathLike | None = None, *, custom_objects: dict[str, Any] | None = None,
             compile: bool = True) -> dict:
        """Restore a checkpoint written by :meth:`save` (weights, optimizer state); returns its ``extra`` dict.

        A model not compiled yet is compiled with the file's settings (``compile=False``: weights only);
        ``custom_objects`` gives back your own losses and metrics by name. ``ew.load_model(path, module=Net())``
        does both steps.
        """
        if not isinstance(self, Model):  # ew.Model.load(path): called on the class
            raise TypeError("Model.load is called on a model; to build one from a file pass the module: "
                            f"ew.load_model({str(self)!r}, module=Net())")
        source = repr(str(path))
        payload = _io.load_file(path)
        if _io.CHECKPOINT_KEY not in payload:
            raise ValueError(f"{source} holds weights only; use model.load_weights() for it")
        settings = payload.get("compile") if compile and not self.compiled else None
        args = _model_file.compile_args(settings, self.module, custom_objects, source) if settings else None
        _io.load_into(self.module, payload["module"], source)
        if args is not None:
            self.compile(**args)
        if payload.get("optimizer") is not None and self.optimizer is not None:
            self.optimizer.load_state_dict(payload["optimizer"])
        return payload.get("extra", {})

    # --- summary / export ---------------------------------------------------------------------------
    def summary(self, input_shape: Any = None, *, example: Any = None, line_length: int | None = None,
                positions: list[float] | None = None, print_fn: Callable[[str], Any] | None = None,
                expand_nested: bool = False, show_trainable: bool = False) -> str:
        """Keras's table of the module's layers (name, type, output shape, parameters) and its totals.

        Example: ``model.summary((28, 28))`` (one sample's shape, without the batch dimension). Output shapes
        come from ``input_shape``, ``example`` (a batch) or the inputs the last fit / evaluate / predict saw,
        from one forward pass that changes nothing; without any, they are ``?``. Printed on the main process
        (``print_fn``: called per line instead); the text is returned. See ``docs/model-tools.md``.
        """
        return _summary.summary(self, input_shape, example=example, line_length=line_length, positions=positions,
                                print_fn=print_fn, expand_nested=expand_nested, show_trainable=show_trainable)

    def export(self, filepath: str | os.PathLike, format: str = "torch", verbose: bool | None = None,
               input_signature: Any = None, *, example: Any = None, opset_version: int | None = None) -> str:
        """The module's forward pass (eval mode, any batch size) as a file for inference; returns the path.

        Example: ``model.export("mlp.pt2")`` (``torch.export.load`` reads it) or ``model.export("mlp.onnx",
        format="onnx")`` (``pip install epochwise[onnx]``). The inputs come from ``input_signature`` (shapes
        without the batch dimension), ``example`` (a batch) or the last fit / evaluate / predict. See
        ``docs/model-tools.md``.
        """
        return _export.export(self, filepath, format, verbose, input_signature, example=example,
                              opset_version=opset_version)

    # --- helpers ------------------------------------------------------------------------------
    def _expected_keys(self, validating: bool) -> list[str]:
        keys = ["loss"] + [m.name for m in self.compiled_metrics]
        if validating:
            keys += [f"val_{k}" for k in keys]
        if self.optimizer is not None and self.optimizer.schedule is not None:
            keys.append("learning_rate")
        return sorted(keys)

    def _device_text(self) -> str:
        return ", ".join([str(self.device), *self._settings.describe(self.module)])

    def _loss_text(self) -> str:
        if isinstance(self._loss, outputs_mod.OutputLosses):
            return self._loss.describe()
        name = getattr(self._loss, "name", type(self._loss).__name__)
        return f"loss {name} ({self._loss_note})" if self._loss_note else f"loss {name}"
