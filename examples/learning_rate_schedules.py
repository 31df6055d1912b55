"""LearningRateScheduler with the tutorial's ``scheduler(epoch, lr)``, then the decay schedules side by side.

Part 1 is Keras's own LearningRateScheduler example: keep the rate for 10 epochs, then multiply it
by ``exp(-0.1)`` every epoch; a one-layer model (``Dense(10)``) with SGD and mse, 15 epochs, and the
rate goes from 0.01 to 0.00607.

Part 2 trains the same small network under each kind of decay the tutorial names (step, cosine,
linear, inverse square root, constant) plus exponential decay, warmup and the tutorial's scheduler,
each as a per-epoch ``LearningRateScheduler``, and draws the rates and the training losses in one
figure (``schedules.png`` in ``--output``; needs matplotlib, ``pip install 'epochwise[plot]'``).

    python examples/learning_rate_schedules.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import epochwise as ew
import epochwise.datasets as ds
from epochwise import schedules


def scheduler(epoch, lr):
    if epoch < 10:
        return lr
    return lr * math.exp(-0.1)


def part_one() -> None:
    print("== Part 1: the tutorial's scheduler(epoch, lr)")
    model = ew.Model(nn.Linear(20, 10))  # keras.Sequential([keras.layers.Dense(10)])
    model.compile(ew.optimizers.SGD(), loss="mse")
    print("learning rate before fit:", round(model.optimizer.learning_rate, 5))
    callback = ew.callbacks.LearningRateScheduler(scheduler)
    # Keras's example feeds np.arange(100).reshape(5, 20) unscaled and its loss overflows; scaled, it trains
    x = np.arange(100).reshape(5, 20).astype("float32") / 100
    history = model.fit(x, np.zeros((5, 10)), epochs=15, callbacks=[callback], verbose=0)
    print("learning rate after 15 epochs:", round(model.optimizer.learning_rate, 5))
    print("rate used in each epoch:", " ".join(f"{lr:.5f}" for lr in history.history["learning_rate"]))


def part_two(epochs: int, out: Path) -> None:
    print(f"\n== Part 2: decay schedules over {epochs} epochs (evaluated at step = epoch)")
    lr0 = 0.1
    candidates = {
        "constant": schedules.Constant(lr0),
        "step (x0.5 every quarter)": schedules.StepDecay(lr0, step_size=max(epochs // 4, 1), gamma=0.5),
        "exponential": schedules.ExponentialDecay(lr0, decay_steps=epochs, decay_rate=0.05),
        "linear (polynomial, power 1)": schedules.PolynomialDecay(
            lr0, decay_steps=epochs, end_learning_rate=0.001
        ),
        "cosine": schedules.CosineDecay(lr0, decay_steps=epochs),
        "cosine with warmup": schedules.CosineDecay(
            0.0,
            decay_steps=epochs - max(epochs // 10, 1),
            warmup_target=lr0,
            warmup_steps=max(epochs // 10, 1),
        ),
        "inverse square root": schedules.InverseSqrtDecay(lr0, warmup_steps=max(epochs // 10, 1)),
        "tutorial's scheduler": scheduler,
    }
    x, y = ds.load_digits(flatten=True)
    x = x / 16.0
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    initial = copy.deepcopy(net.state_dict())
    results = {}
    for name, schedule in candidates.items():
        net.load_state_dict(initial)
        model = ew.Model(net, seed=0)
        model.compile(optimizer=ew.optimizers.SGD(learning_rate=lr0), loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=128, epochs=epochs, verbose=0,
                            callbacks=[ew.callbacks.LearningRateScheduler(schedule)])  # fmt: skip
        results[name] = history.history

    marks = sorted({0, epochs // 4, epochs // 2, 3 * epochs // 4, epochs - 1})
    print(f"{'schedule':<30}" + "".join(f"{'lr@' + str(m + 1):>9}" for m in marks) + f"{'final loss':>12}")
    for name, h in results.items():
        print(
            f"{name:<30}"
            + "".join(f"{h['learning_rate'][m]:>9.4f}" for m in marks)
            + f"{h['loss'][-1]:>12.4f}"
        )
    plot(results, out / "schedules.png")


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'epochwise[plot]'): no figure drawn")
        return
    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, h in results.items():
        epochs = range(1, len(h["loss"]) + 1)
        ax_lr.plot(epochs, h["learning_rate"], label=name)
        ax_loss.plot(epochs, h["loss"], label=name)
    ax_lr.set(title="learning rate in each epoch", xlabel="epoch", ylabel="learning rate")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss", yscale="log")
    ax_lr.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs: runs in seconds")
    parser.add_argument(
        "--output", default="example-output/learning_rate_schedules", help="folder for schedules.png"
    )
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    part_one()
    part_two(10 if args.quick else 60, out)


if __name__ == "__main__":
    main()
