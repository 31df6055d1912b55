"""Dropout and BatchNorm: why evaluation needs ``model.eval()`` as well as ``torch.no_grad()``, in numbers.

``torch.no_grad()`` only stops autograd from recording the graph (less memory, less time). It does
not change what the layers compute: in training mode Dropout still zeroes half the activations at
random, and BatchNorm still normalises with the statistics of the batch at hand *and updates its
running statistics* with the validation data. ``model.eval()`` switches both layers to their
inference behaviour. epochwise's ``evaluate`` and ``predict`` do both, and put the module back in the
mode it was in afterwards.

    python examples/dropout_batchnorm_eval.py [--quick] [--output DIR]
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

import epochwise as ew
import epochwise.datasets as ds


def score(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None
) -> tuple[float, float]:
    """(loss, accuracy) of ``net`` on (x, y) in whatever mode ``net`` is in, batch by batch."""
    batch_size = batch_size or len(x)
    logits = torch.cat([net(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def show(label: str, loss: float, accuracy: float) -> None:
    print(f"{label:<40} loss {loss:.4f}  accuracy {accuracy:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs: runs in seconds")
    parser.add_argument(
        "--output",
        default="example-output/dropout_batchnorm_eval",
        help="accepted like the other examples; this one writes no files",
    )
    args = parser.parse_args()

    x, y = ds.load_digits(flatten=True)
    x_train, x_val, y_train, y_val = ds.train_test_split(x / 16.0, y, test_size=0.25, seed=0, stratify=y)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10)
    )  # fmt: skip
    model = ew.Model(net, device="cpu", seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=5 if args.quick else 30, verbose=0)
    print(f"after fit the module is in {'training' if net.training else 'eval'} mode (as it was before fit)")

    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
    trained = copy.deepcopy(net.state_dict())
    reference = model.evaluate(x_val, y_val, batch_size=len(x_val), return_dict=True, verbose=0)
    print()
    show("model.evaluate:", reference["loss"], reference["accuracy"])

    net.eval()
    with torch.no_grad():
        runs = [score(net, xv, yv) for _ in range(2)]
        small_batches = score(net, xv, yv, batch_size=16)
    for i, (loss, acc) in enumerate(runs, 1):
        show(f"eval() + no_grad(), call {i}:", loss, acc)
    show("eval() + no_grad(), batches of 16:", *small_batches)

    net.train()  # what a hand-written validation loop gets when it forgets model.eval()
    running_mean = net[1].running_mean.clone()
    with torch.no_grad():
        runs = [score(net, xv, yv) for _ in range(2)]
        small_batches = score(net, xv, yv, batch_size=16)
    for i, (loss, acc) in enumerate(runs, 1):
        show(f"no_grad() only (train mode), call {i}:", loss, acc)
    show("no_grad() only, batches of 16:", *small_batches)
    drift = (net[1].running_mean - running_mean).abs().max().item()
    print(
        f"...and BatchNorm's running mean moved by up to {drift:.4f}: validating in train mode changed the model"
    )
    net.eval()
    with torch.no_grad():
        changed = score(net, xv, yv)
    show("eval() + no_grad() after that:", *changed)
    print("(the model is no longer the trained one: BatchNorm has absorbed the validation data's statistics)")

    net.load_state_dict(trained)
    net.eval()
    with torch.enable_grad():
        out = net(xv)
    with torch.no_grad():
        out_no_grad = net(xv)
    same = torch.equal(out.detach(), out_no_grad)
    print(f"\neval() without no_grad(): same outputs: {same}; but it records a graph: "
          f"requires_grad={out.requires_grad}, grad_fn={type(out.grad_fn).__name__} (memory held until freed)")  # fmt: skip
    print(
        f"eval() with no_grad():    requires_grad={out_no_grad.requires_grad}, grad_fn={out_no_grad.grad_fn}"
    )
    try:
        net.train()
        net(xv[:1])
    except ValueError as err:
        print(f"\ntrain-mode BatchNorm cannot even score a single sample: ValueError: {err}")
    net.eval()
    print(f"in eval mode it can: prediction for the first validation image {net(xv[:1]).argmax().item()}, "
          f"label {y_val[0]}")  # fmt: skip


if __name__ == "__main__":
    main()
