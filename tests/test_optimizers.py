"""Optimizers: Keras names and defaults on torch.optim, learning-rate access (RL6, LS3), state, clipping."""

import io
import math

import numpy as np
import pytest
import torch

from epochwise import optimizers
from epochwise.optim.optimizers import SGD, Adam, Optimizer
from epochwise.optim.schedules import ExponentialDecay

# name -> (torch class, torch hyper-parameters the Keras defaults must map to)
DEFAULTS = {
    "adam": (
        torch.optim.Adam,
        {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7, "amsgrad": False, "weight_decay": 0},
    ),
    "adamw": (torch.optim.AdamW, {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.004}),
    "sgd": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0}),
    "rmsprop": (
        torch.optim.RMSprop,
        {"lr": 0.001, "alpha": 0.9, "momentum": 0.0, "eps": 1e-7, "centered": False},
    ),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.001, "initial_accumulator_value": 0.1, "eps": 1e-7}),
    "adadelta": (torch.optim.Adadelta, {"lr": 0.001, "rho": 0.95, "eps": 1e-7}),
    "adamax": (torch.optim.Adamax, {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7}),
    "nadam": (torch.optim.NAdam, {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7, "momentum_decay": 1.0}),
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_names_resolve_to_torch_class_with_keras_defaults(name):
    torch_class, expected = DEFAULTS[name]
    opt = optimizers.get(name.upper() if name == "sgd" else name)  # names are case-insensitive
    assert not opt.built
    opt.build(torch.nn.Linear(3, 2).parameters())
    assert type(opt.torch_optimizer) is torch_class
    group = opt.torch_optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == pytest.approx(value), key


# --- Keras 3's update rules (keras/src/optimizers/*.py update_step), written out in numpy ----------------
def _keras_run(kind, hp, p, grads):
    lr, wd = hp.get("learning_rate", 0.001), hp.get("weight_decay")
    s = {k: np.zeros_like(p) for k in ("m", "v", "a", "vhat", "mom", "adv")}
    s["acc"] = np.full_like(p, hp.get("initial_accumulator_value", 0.1))
    u_prod = 1.0
    for t0, g in enumerate(grads):
        t = t0 + 1
        if wd:
            p = p - p * wd * lr  # decoupled weight decay, before the update
        b1, b2, eps = hp.get("beta_1", 0.9), hp.get("beta_2", 0.999), hp.get("epsilon", 1e-7)
        if kind in ("adam", "adamw"):
            s["m"] += (g - s["m"]) * (1 - b1)
            s["v"] += (g * g - s["v"]) * (1 - b2)
            v = s["v"]
            if hp.get("amsgrad"):
                s["vhat"] = np.maximum(s["vhat"], v)
                v = s["vhat"]
            p = p - s["m"] * (lr * math.sqrt(1 - b2**t) / (1 - b1**t)) / (np.sqrt(v) + eps)
        elif kind == "sgd":
            mu = hp.get("momentum", 0.0)
            if mu == 0:
                p = p - lr * g
            else:
                s["mom"] = mu * s["mom"] - lr * g
                p = p + (mu * s["mom"] - lr * g if hp.get("nesterov") else s["mom"])
        elif kind == "rmsprop":
            rho, mu = hp.get("rho", 0.9), hp.get("momentum", 0.0)
            s["v"] = rho * s["v"] + (1 - rho) * g * g
            if hp.get("centered"):
                s["a"] = rho * s["a"] + (1 - rho) * g
                inc = lr * g / np.sqrt(s["v"] - s["a"] ** 2 + eps)
            else:
                inc = lr * g / np.sqrt(s["v"] + eps)
            if mu > 0:
                s["mom"] = mu * s["mom"] + inc
                inc = s["mom"]
            p = p - inc
        elif kind == "adagrad":
            s["acc"] += g * g
            p = p - lr * g / np.sqrt(s["acc"] + eps)
        elif kind == "adadelta":
            rho = hp.get("rho", 0.95)
            s["v"] = rho * s["v"] + (1 - rho) * g * g
            delta = -np.sqrt(s["adv"] + eps) * g / np.sqrt(s["v"] + eps)
            s["adv"] = rho * s["adv"] + (1 - rho) * delta**2
            p = p + lr * delta
        elif kind == "adamax":
            s["m"] += (g - s["m"]) * (1 - b1)
            s["v"] = np.maximum(b2 * s["v"], np.abs(g))
            p = p - lr * s["m"] / ((1 - b1**t) * (s["v"] + eps))
        elif kind == "nadam":
            u_t, u_t1 = b1 * (1 - 0.5 * 0.96**t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
            u_prod *= u_t
            s["m"] += (g - s["m"]) * (1 - b1)
            s["v"] += (g * g - s["v"]) * (1 - b2)
            m_hat = u_t1 * s["m"] / (1 - u_prod * u_t1) + (1 - u_t) * g / (1 - u_prod)
            p = p - m_hat * lr / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
    return p


KERAS_CASES = [
    ("adam", {"learning_rate": 0.1}),
    ("adam", {"learning_rate": 0.1, "beta_1": 0.8, "beta_2": 0.99, "amsgrad": True}),
    ("adam", {"learning_rate": 0.1, "weight_decay": 0.3}),
    ("adamw", {"learning_rate": 0.1, "weight_decay": 0.3}),
    ("sgd", {"learning_rate": 0.1}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.2}),
    ("rmsprop", {"learning_rate": 0.05, "rho": 0.8}),
    ("rmsprop", {"learning_rate": 0.05, "momentum": 0.5, "centered": True}),
    ("adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5}),
    ("adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6}),
    ("adamax", {"learning_rate": 0.1, "beta_2": 0.9}),
    ("nadam", {"learning_rate": 0.1}),
]


@pytest.mark.parametrize("kind,hp", KERAS_CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(KERAS_CASES)])
def test_updates_match_keras_formulas(kind, hp):
    # Where torch and Keras put epsilon differently ("Differences from Keras"), a tiny epsilon takes that
    # out, so this checks the algorithm and the mapping of every hyper-parameter.
    if kind != "sgd":
        hp = {"epsilon": 1e-12, **hp}
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) for _ in range(6)]
    param = torch.nn.Parameter(torch.tensor(p0))
    opt = optimizers.get(kind).__class__(**hp)
    opt.build([param])
    for g in grads:
        param.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(
        param.detach().numpy(), _keras_run(kind, hp, p0, grads), rtol=1e-7, atol=1e-8
    )  # torch keeps step scalars in float32


def test_torch_optimizer_instance_is_wrapped():
    net = torch.nn.Linear(2, 1)
    torch_opt = torch.optim.SGD(net.parameters(), lr=0.3)
    opt = optimizers.get(torch_opt)
    assert opt.built and opt.torch_optimizer is torch_opt and opt.schedule is None
    assert opt.learning_rate == pytest.approx(0.3)
    opt.learning_rate = 0.05
    assert torch_opt.param_groups[0]["lr"] == 0.05
    assert optimizers.get(opt) is opt  # an epochwise optimizer passes through


def test_wrapped_torch_optimizer_gets_keras_clipping_and_base_class_cannot_build():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = Optimizer.wrap(torch.optim.SGD([p], lr=1.0), clipvalue=0.5)
    p.grad = torch.tensor([10.0, -0.2])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([-0.5, 0.2]))
    assert opt.iterations == 1
    with pytest.raises(TypeError, match="base class"):
        Optimizer().build([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(TypeError, match="torch.optim.Optimizer instance"):
        Optimizer.wrap("sgd")


def test_learning_rate_get_and_set():  # RL and LS write the rate this way
    opt = Adam(learning_rate=0.01)
    assert opt.learning_rate == 0.01
    opt.learning_rate = 0.02  # before build: kept for build
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    opt.build([{"params": net[0].parameters()}, {"params": net[1].parameters()}])
    assert [g["lr"] for g in opt.torch_optimizer.param_groups] == [0.02, 0.02]
    opt.learning_rate = np.float32(0.5)  # LS3 allows NumPy floats
    assert [g["lr"] for g in opt.torch_optimizer.param_groups] == [0.5, 0.5]
    assert type(opt.learning_rate) is float and opt.learning_rate == 0.5
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0


def test_setting_learning_rate_under_a_schedule_raises_type_error():  # RL6, LS3
    opt = SGD(learning_rate=ExponentialDecay(0.1, 10, 0.5))
    opt.build([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(TypeError, match="driven by a schedule; pass a float learning_rate"):
        opt.learning_rate = 0.01
    assert opt.learning_rate == pytest.approx(0.1)


def _train(opt, net, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 3, generator=gen)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize(
    "make",
    [lambda: Adam(learning_rate=ExponentialDecay(0.05, 2, 0.5)), lambda: optimizers.RMSprop(momentum=0.5)],
)
def test_state_dict_round_trip_continues_identically(make):  # SC0: iterations are restored with the state
    torch.manual_seed(0)
    net_a = torch.nn.Linear(3, 2)
    opt_a = make()
    opt_a.build(net_a.parameters())
    _train(opt_a, net_a, 3, seed=1)

    buffer = io.BytesIO()
    torch.save({"module": net_a.state_dict(), "optimizer": opt_a.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    net_b = torch.nn.Linear(3, 2)
    net_b.load_state_dict(saved["module"])
    opt_b = make()
    opt_b.load_state_dict(saved["optimizer"])  # before build: applied by build
    opt_b.build(net_b.parameters())
    assert opt_b.iterations == opt_a.iterations == 3
    assert opt_b.learning_rate == opt_a.learning_rate

    _train(opt_a, net_a, 3, seed=2)
    _train(opt_b, net_b, 3, seed=2)
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _clipped_step(**clip):
    """SGD with lr=1 on a gradient far beyond every clip: returns the per-parameter updates."""
    big = torch.nn.Parameter(torch.zeros(3))
    small = torch.nn.Parameter(torch.zeros(2))
    opt = SGD(learning_rate=1.0, **clip)
    opt.build([big, small])
    big.grad = torch.tensor([300.0, -400.0, 0.1])
    small.grad = torch.tensor([0.3, -0.4])  # norm 0.5
    opt.step()
    return -big.detach(), -small.detach()


def test_clipvalue_clips_each_element():
    big, small = _clipped_step(clipvalue=0.35)
    torch.testing.assert_close(big, torch.tensor([0.35, -0.35, 0.1]))
    torch.testing.assert_close(small, torch.tensor([0.3, -0.35]))


def test_global_clipnorm_bounds_the_total_update():
    big, small = _clipped_step(global_clipnorm=1.0)
    total = torch.cat([big, small]).norm()
    assert total <= 1.0 + 1e-6 and total == pytest.approx(1.0, rel=1e-5)
    # one common scale: directions are kept
    scale = 1.0 / math.sqrt(300.0**2 + 400.0**2 + 0.1**2 + 0.5**2)
    torch.testing.assert_close(small, torch.tensor([0.3, -0.4]) * scale, rtol=1e-4, atol=0)


def test_clipnorm_clips_each_parameter_separately():
    big, small = _clipped_step(clipnorm=1.0)
    assert big.norm() == pytest.approx(1.0, rel=1e-6)  # g * c / max(|g|, c)
    torch.testing.assert_close(big, torch.tensor([300.0, -400.0, 0.1]) / math.hypot(300.0, 400.0, 0.1))
    torch.testing.assert_close(small, torch.tensor([0.3, -0.4]))  # already within the norm: untouched


def test_weight_decay_is_decoupled_as_in_keras():
    for opt in (
        SGD(learning_rate=0.1, weight_decay=0.5),
        optimizers.AdamW(learning_rate=0.1, weight_decay=0.5),
    ):
        p = torch.nn.Parameter(torch.full((2,), 2.0, dtype=torch.float64))
        opt.build([p])
        for _ in range(3):
            p.grad = torch.zeros_like(p)  # no gradient step: only p -= lr * wd * p remains
            opt.step()
        torch.testing.assert_close(p.detach(), torch.full((2,), 2.0 * (1 - 0.05) ** 3, dtype=torch.float64))


def test_get_config_round_trip_with_schedule():
    opt = Adam(learning_rate=ExponentialDecay(0.1, 10, 0.5), beta_1=0.8, global_clipnorm=2.0)
    config = opt.get_config()
    assert config["learning_rate"] == {"class_name": "ExponentialDecay", "config": opt.schedule.get_config()}
    assert (config["beta_1"], config["epsilon"], config["global_clipnorm"]) == (0.8, 1e-7, 2.0)
    again = Adam.from_config(config)
    assert again.get_config() == config and again.schedule(10) == pytest.approx(0.05)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="'adamw'"):
        optimizers.get("adamww")
    with pytest.raises(ValueError, match="Known names"):
        optimizers.get("lbfgs")


def test_class_instead_of_instance_says_how_to_fix():
    with pytest.raises(TypeError, match=r"torch.optim.Adam\(model.module.parameters\(\)"):
        optimizers.get(torch.optim.Adam)
    with pytest.raises(TypeError, match=r"pass SGD\(\)"):
        optimizers.get(SGD)
    with pytest.raises(TypeError, match="optimizer must be a name"):
        optimizers.get(0.01)


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: SGD(clipnorm=1.0, clipvalue=0.5), ValueError, "at most one of"),
        (lambda: Adam(clipnorm=1.0, global_clipnorm=1.0), ValueError, "at most one of"),
        (lambda: SGD(clipvalue=-1.0), ValueError, "clipvalue"),
        (lambda: SGD(learning_rate=0), ValueError, "learning_rate"),
        (lambda: SGD(learning_rate="fast"), ValueError, "learning_rate"),
        (lambda: SGD(learning_rate=lambda: 0.1), ValueError, "must take the step"),
        (lambda: Adam(lr=0.1), TypeError, "Keras's: learning_rate"),
        (lambda: Adam(beta1=0.5), TypeError, "beta_1"),
        (lambda: Adam(beta_1=1.0), ValueError, "beta_1"),
        (lambda: SGD(momentum=1.5), ValueError, "momentum"),
        (lambda: optimizers.AdamW(weight_decay=None), ValueError, "weight_decay"),
    ],
)
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_use_before_build_and_rebuild_elsewhere():
    opt = Adam()
    with pytest.raises(RuntimeError, match="build"):
        opt.step()
    params = list(torch.nn.Linear(2, 2).parameters())
    opt.build(params)
    opt.build(params)  # the same parameters again: nothing happens
    with pytest.raises(RuntimeError, match="already built"):
        opt.build(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="no parameters"):
        SGD().build([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("clip", [{}, {"clipnorm": 1.0}, {"clipvalue": 0.5}, {"global_clipnorm": 1.0}])
def test_step_does_not_synchronise_the_gpu(clip):
    net = torch.nn.Linear(64, 64).cuda()
    opt = Adam(learning_rate=ExponentialDecay(1e-3, 10, 0.5), weight_decay=0.01, **clip)
    opt.build(net.parameters())
    net(torch.randn(8, 64, device="cuda")).sum().backward()
    opt.step()  # first step creates state
    net(torch.randn(8, 64, device="cuda")).sum().backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
        opt.zero_grad()
    finally:
        torch.cuda.set_sync_debug_mode("default")
