"""The floor (a careful hand-written loop), the same loop over a DataLoader, epochwise, and the
in-process runner that alternates epochwise and the floor.

The floor is what a careful PyTorch user writes for in-memory data: the data set lives on the
device as two tensors, each epoch draws one permutation (``data_order``: the one epochwise draws from
the same seed) and a batch is ``index_select`` of a slice of it; ``zero_grad(set_to_none=True)``;
loss and accuracy are summed on the device and read once per epoch (one host sync); validation runs
under ``inference_mode``. Every runner prints one line per epoch, so all of them pay for some
progress output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import (
    EPSILON,
    LEARNING_RATE,
    EpochClock,
    Pair,
    Result,
    Spec,
    data_order,
    epoch_orders,
    median_throughput,
    peak_rss_mib,
    rss_mib,
)

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def _adam(module: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=LEARNING_RATE, eps=EPSILON)


def _train_epoch(module: torch.nn.Module, opt: torch.optim.Optimizer, batches: Iterable, device: Any) -> tuple:
    module.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for xb, yb in batches:
        out = module(xb)
        loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n = yb.shape[0]
        loss_sum += loss.detach() * n
        correct += (out.argmax(1) == yb).sum()
        seen += n
    return loss_sum.item() / seen, correct.item() / seen  # the epoch's only host sync


@torch.inference_mode()
def _evaluate(module: torch.nn.Module, batches: Iterable, device: Any) -> tuple[float, float]:
    was_training = module.training
    module.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for xb, yb in batches:
        out = module(xb)
        loss_sum += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
        seen += yb.shape[0]
    module.train(was_training)
    return loss_sum.item() / seen, correct.item() / seen


@torch.inference_mode()
def _predict(module: torch.nn.Module, batches: Iterable) -> np.ndarray:
    was_training = module.training
    module.eval()
    outputs = [module(xb) for xb, _ in batches]
    module.train(was_training)
    return torch.cat(outputs).cpu().numpy()


def _fit(
    spec: Spec, module: torch.nn.Module, train: Batches, val: Batches, device: Any, name: str
) -> tuple[list[float], float]:
    """The epochs of a hand-written loop; returns (epoch seconds, last validation accuracy)."""
    opt = _adam(module)
    clock = EpochClock(spec.device)
    clock.start()
    val_acc = float("nan")
    for epoch in range(spec.epochs):
        loss, acc = _train_epoch(module, opt, train(), device)
        val_loss, val_acc = _evaluate(module, val(), device)
        clock.tick()
        print(
            f"{name} epoch {epoch + 1}/{spec.epochs} - {clock.epoch_seconds()[-1]:.2f}s - loss: {loss:.4f}"
            f" - accuracy: {acc:.4f} - val_loss: {val_loss:.4f} - val_accuracy: {val_acc:.4f}",
            flush=True,
        )
    return clock.epoch_seconds(), val_acc


# --- the floor: index slicing on the device ----------------------------------------------------
def sliced(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None) -> Iterable:
    """Batches of a random permutation (or in order without a generator), gathered on the device."""
    n = x.shape[0]
    if generator is None:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    perm = data_order(n, generator).to(x.device)
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        yield x.index_select(0, idx), y.index_select(0, idx)


def run_floor(spec: Spec, data: tuple[np.ndarray, ...]) -> Result:
    from _common import make_module

    device = torch.device(spec.device)
    x, y, xv, yv = (torch.from_numpy(a).to(device) for a in data)  # no copy on the CPU
    module = make_module(spec.seed).to(device)
    gen = torch.Generator().manual_seed(spec.seed)
    before = rss_mib()
    bs = spec.batch_size
    seconds, val_acc = _fit(
        spec, module, lambda: sliced(x, y, bs, gen), lambda: sliced(xv, yv, bs, None), device, "floor"
    )
    result = Result("floor", bs, seconds, spec.warmup, val_acc, before, peak_rss_mib())
    if spec.eval_repeats:
        n = x.shape[0]
        result.evaluate_sps = median_throughput(
            lambda: _evaluate(module, sliced(x, y, bs, None), device), n, spec.eval_repeats, spec.device
        )
        result.predict_sps = median_throughput(
            lambda: _predict(module, sliced(x, y, bs, None)), n, spec.eval_repeats, spec.device
        )
    return result


# --- (b) the same loop over DataLoader(TensorDataset) ------------------------------------------
def run_dataloader(spec: Spec, data: tuple[np.ndarray, ...]) -> Result:
    from _common import make_module
    from torch.utils.data import DataLoader, TensorDataset

    device = torch.device(spec.device)
    cuda = device.type == "cuda"
    x, y, xv, yv = (torch.from_numpy(a) for a in data)
    module = make_module(spec.seed).to(device)
    bs = spec.batch_size
    order = epoch_orders(x.shape[0], spec.seed)  # the floor's (and epochwise's) order, epoch by epoch
    train_loader = DataLoader(TensorDataset(x, y), batch_size=bs, sampler=order, pin_memory=cuda)
    val_loader = DataLoader(TensorDataset(xv, yv), batch_size=bs, shuffle=False, pin_memory=cuda)

    def moved(loader: DataLoader) -> Iterable:
        for xb, yb in loader:
            yield xb.to(device, non_blocking=cuda), yb.to(device, non_blocking=cuda)

    before = rss_mib()
    seconds, val_acc = _fit(
        spec, module, lambda: moved(train_loader), lambda: moved(val_loader), device, "dataloader"
    )
    return Result("dataloader", bs, seconds, spec.warmup, val_acc, before, peak_rss_mib())


# --- epochwise ----------------------------------------------------------------------------------
def run_epochwise(spec: Spec, data: tuple[np.ndarray, ...]) -> Result:
    """``fit(x, y, validation_data=...)`` with the default progress output (verbose=1, to the log file)."""
    from _common import make_module

    import epochwise as ew

    clock = EpochClock(spec.device)

    class Clock(ew.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            clock.start()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            clock.tick()

    x, y, xv, yv = data  # NumPy arrays, as a Keras user passes them; epochwise shares their memory
    model = ew.Model(make_module(spec.seed), device=spec.device, seed=spec.seed)
    model.compile(
        optimizer=ew.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=EPSILON),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    before = rss_mib()
    bs = spec.batch_size
    history = model.fit(
        x, y, batch_size=bs, epochs=spec.epochs, validation_data=(xv, yv), verbose=1, callbacks=[Clock()]
    )
    val_acc = float(history.history["val_accuracy"][-1])
    result = Result("epochwise", bs, clock.epoch_seconds(), spec.warmup, val_acc, before, peak_rss_mib())
    if spec.eval_repeats:
        n = x.shape[0]
        result.evaluate_sps = median_throughput(
            lambda: model.evaluate(x, y, batch_size=bs), n, spec.eval_repeats, spec.device
        )
        result.predict_sps = median_throughput(
            lambda: model.predict(x, batch_size=bs), n, spec.eval_repeats, spec.device
        )
    return result


# --- epochwise and the floor in one process, alternating -------------------------------------------
def _compiled_model(spec: Spec) -> Any:
    from _common import make_module

    import epochwise as ew

    model = ew.Model(make_module(spec.seed), device=spec.device, seed=spec.seed)
    model.compile(
        optimizer=ew.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=EPSILON),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run_pair(spec: Spec, data: tuple[np.ndarray, ...]) -> Pair:
    """epochwise's ``fit`` with the floor's epoch run inside its ``on_epoch_end`` (each on its own copy of
    the same initial model, the same batches), then ``evaluate`` and ``predict`` calls alternating with the
    floor's. Both sides of a pair run seconds apart on the same warm process: the machine's drift and
    load hit both alike, and the ratio of a pair measures the loop."""
    from _common import make_module

    import epochwise as ew

    device = torch.device(spec.device)
    x_np, y_np, xv_np, yv_np = data
    x, y, xv, yv = (torch.from_numpy(a).to(device) for a in data)
    bs = spec.batch_size
    floor_module = make_module(spec.seed).to(device)
    floor_opt = _adam(floor_module)
    gen = torch.Generator().manual_seed(spec.seed)  # fit(seed=spec.seed) draws its orders the same way
    floor_secs: list[float] = []
    floor_acc: list[float] = []
    ew_secs: list[float] = []
    ew_clock = EpochClock(spec.device)  # marks[-1]: when epochwise's current epoch began

    def floor_epoch() -> None:
        clock = EpochClock(spec.device)
        clock.start()
        loss, acc = _train_epoch(floor_module, floor_opt, sliced(x, y, bs, gen), device)
        _, val_acc = _evaluate(floor_module, sliced(xv, yv, bs, None), device)
        clock.tick()
        floor_secs.append(clock.epoch_seconds()[-1])
        floor_acc.append(val_acc)
        print(f"floor epoch {len(floor_secs)} - {floor_secs[-1]:.2f}s - val_accuracy: {val_acc:.4f}", flush=True)

    class Alternate(ew.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            ew_clock.start()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            ew_clock.tick()  # epochwise's epoch ends here; the floor's runs now, off epochwise's clock
            ew_secs.append(ew_clock.epoch_seconds()[-1])
            floor_epoch()
            ew_clock.start()  # what follows this hook (History, the progress line) counts in the next epoch

    model = _compiled_model(spec)
    history = model.fit(x_np, y_np, batch_size=bs, epochs=spec.epochs, validation_data=(xv_np, yv_np), verbose=1,
                        callbacks=[Alternate()], seed=spec.seed)
    diff = max(float((a - b).abs().max()) for a, b in zip(model.module.parameters(), floor_module.parameters()))
    pair = Pair(bs, spec.warmup, ew_secs, floor_secs, list(history.history["val_accuracy"]),
                floor_acc, diff, n_train=int(x.shape[0]))
    ew_loss = model.evaluate(x_np, y_np, batch_size=bs, verbose=0)[0]
    pair.evaluate_loss_diff = abs(ew_loss - _evaluate(floor_module, sliced(x, y, bs, None), device)[0])

    def timed(fn: Callable[[], Any]) -> float:
        clock = EpochClock(spec.device)
        clock.start()
        fn()
        clock.tick()
        return clock.epoch_seconds()[0]

    calls = {
        "evaluate": (lambda: model.evaluate(x_np, y_np, batch_size=bs),
                     lambda: _evaluate(floor_module, sliced(x, y, bs, None), device)),
        "predict": (lambda: model.predict(x_np, batch_size=bs), lambda: _predict(floor_module, sliced(x, y, bs, None))),
    }
    for name, (ours, floor) in calls.items():
        ours(), floor()  # warm-up, not counted
        floor_times = [timed(floor)]
        for _ in range(spec.pairs):  # floor, ours, floor, ours, ..., floor: each call of ours between two floors
            getattr(pair, f"{name}_seconds").append(timed(ours))
            floor_times.append(timed(floor))
        setattr(pair, f"floor_{name}_seconds", floor_times)
    return pair


RUNNERS = {"floor": run_floor, "dataloader": run_dataloader, "epochwise": run_epochwise, "pair": run_pair}
