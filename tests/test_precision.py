"""precision="16-mixed": a step that GradScaler skips (inf gradients) is not counted (SC0).

The overflow is real: float16 autocast on the CPU with ``torch.amp.GradScaler("cpu")``, whose first
scale (2**16) makes the float16 gradient of a large input inf, exactly as on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import epochwise as ew

X = np.array([[1000.0], [1.0]], "float32")  # batch 0 overflows at scale 2**16; batch 1 does not at 2**15
Y = np.array([[0.0], [0.5]], "float32")


def rate(step):  # the schedule: 0.1 for the first applied update, 0.2 for the second, ...
    return 0.1 * (step + 1)


def _net():
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    return net


def reference(weight_decay):
    """The plain torch recipe (autocast, scale, step, update): which steps ran, and the weight after them."""
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=rate(0))
    scaler = torch.amp.GradScaler("cpu")
    applied = 0
    for x, y in zip(torch.from_numpy(X), torch.from_numpy(Y)):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.mse_loss(net(x[None]).float(), y[None])
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        finite = all(torch.isfinite(p.grad).all() for p in net.parameters())
        if finite:  # Keras-style decoupled decay, then the step, at the rate of the updates applied so far
            for group in opt.param_groups:
                group["lr"] = rate(applied)
            with torch.no_grad():
                net.weight.mul_(1 - rate(applied) * weight_decay)
        scale = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        assert (scaler.get_scale() < scale) == (not finite)  # torch's own scaler skipped exactly these
        applied += finite
        opt.zero_grad()
    return applied, float(net.weight.detach())


@pytest.mark.parametrize("weight_decay", [None, 0.5])
def test_a_skipped_fp16_step_moves_neither_iterations_nor_the_schedule(weight_decay):
    applied, weight = reference(weight_decay or 0.0)
    assert applied == 1  # the set-up really overflows once, then steps once
    model = ew.Model(_net(), device="cpu")
    model.compile(optimizer=ew.optimizers.SGD(learning_rate=rate, weight_decay=weight_decay), loss="mse",
                  precision="16-mixed")
    model.fit(X, Y, batch_size=1, epochs=1, shuffle=False, verbose=0)
    assert model.optimizer.iterations == applied
    assert model.optimizer.learning_rate == pytest.approx(rate(applied))  # the next update's rate
    # the one applied update used rate(0), and the skipped step decayed nothing
    assert float(model.get_weights()["weight"][0, 0]) == pytest.approx(weight, abs=1e-6)


def test_the_lr_range_test_records_the_rate_each_applied_update_used():
    """A skipped fp16 step applied no rate: the curve pairs each loss with the rate its update really used
    (read from torch's optimizer when it steps), and the skipped step is said, not plotted."""
    model = ew.Model(_net(), device="cpu")
    model.compile(optimizer="sgd", loss="mse", precision="16-mixed")
    used: list[float] = []
    model.optimizer.torch_optimizer.register_step_post_hook(
        lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    x = np.array([[1000.0]] + [[1.0]] * 15, "float32")  # one batch of 16 whose first update overflows
    y = np.full((16, 1), 0.5, "float32")
    result = ew.find_learning_rate(model, x, y, batch_size=16, start_lr=1e-6, end_lr=1e-4, num_steps=6,
                                   diverge_factor=1e30, verbose=0)
    assert len(used) == len(result.lrs) == 6  # six applied updates, after the skipped one
    assert result.lrs == pytest.approx(used, rel=1e-12)
    assert result.lrs == pytest.approx([1e-6 * 100 ** (i / 5) for i in range(6)])
    assert any("skipped by the fp16 grad scaler" in n for n in result.notes)
