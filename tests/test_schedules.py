"""Learning-rate schedules: rules SC0-SC7 of docs/behaviour.md plus StepDecay, InverseSqrtDecay and Constant."""

import math

import pytest
import torch

from epochwise import optimizers, schedules
from epochwise.optim.schedules import (
    Constant,
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseSqrtDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    StepDecay,
)

# SC7: (schedule, {step: lr}) exactly as rule SC7's table lists them (verified on Keras 3.15.1)
SC7 = [
    (ExponentialDecay(0.1, 10, 0.5), {0: 0.1, 5: 0.070711, 10: 0.05, 20: 0.025}),
    (ExponentialDecay(0.1, 10, 0.5, staircase=True), {9: 0.1, 10: 0.05}),
    (PiecewiseConstantDecay([10, 20], [1, 0.5, 0.1]), {0: 1, 10: 1, 11: 0.5, 20: 0.5, 21: 0.1}),
    (PolynomialDecay(0.1, 10, 0.01), {5: 0.055, 10: 0.01, 20: 0.01}),
    (PolynomialDecay(0.1, 10, 0.01, power=2), {5: 0.0325}),
    (PolynomialDecay(0.1, 10, 0.01, cycle=True), {10: 0.01, 11: 0.0505, 15: 0.0325, 21: 0.037}),
    (InverseTimeDecay(0.1, 10, 0.5), {5: 0.08, 10: 0.066667, 20: 0.05}),
    (InverseTimeDecay(0.1, 10, 0.5, staircase=True), {5: 0.1}),
    (CosineDecay(0.1, 10), {5: 0.05, 10: 0.0, 15: 0.0}),
    (CosineDecay(0.1, 10, alpha=0.1), {5: 0.055, 10: 0.01}),
    (CosineDecay(0, 10, warmup_target=0.1, warmup_steps=5), {1: 0.02, 4: 0.08, 5: 0.1, 10: 0.05, 15: 0.0}),
    (CosineDecayRestarts(0.1, 10), {5: 0.05, 9: 0.002447, 10: 0.1, 20: 0.05, 30: 0.1, 40: 0.085355}),
    (CosineDecayRestarts(0.1, 10, t_mul=1, m_mul=0.5), {10: 0.05, 15: 0.025}),
    (CosineDecayRestarts(0.1, 10, t_mul=1, m_mul=0.5, alpha=0.1), {10: 0.055}),
]


@pytest.mark.parametrize(
    "schedule,expected", SC7, ids=lambda v: repr(v)[:60] if not isinstance(v, dict) else ""
)
def test_sc7_vectors(schedule, expected):  # SC1-SC7
    for step, lr in expected.items():
        got = schedule(step)
        assert type(got) is float
        assert got == pytest.approx(lr, abs=1e-6), (schedule, step)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ExponentialDecay(0.1, 0, 0.5),
        lambda: ExponentialDecay(0.1, -5, 0.5),
        lambda: PolynomialDecay(0.1, 0),
        lambda: InverseTimeDecay(0.1, 0, 0.5),
        lambda: CosineDecay(0.1, 0),
        lambda: CosineDecayRestarts(0.1, 0),
        lambda: StepDecay(0.1, 0),
    ],
)
def test_constructors_reject_nonpositive_decay_steps(build):  # SC0
    with pytest.raises(ValueError, match="steps|step_size"):
        build()


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: PiecewiseConstantDecay([10, 20], [1, 0.5]), "one more entry"),  # SC2
        (lambda: PiecewiseConstantDecay([20, 10], [1, 0.5, 0.1]), "strictly increasing"),
        (lambda: PiecewiseConstantDecay(10, [1, 0.5]), "boundaries"),
        (lambda: ExponentialDecay("0.1", 10, 0.5), "initial_learning_rate"),
        (lambda: ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate"),
        (lambda: CosineDecay(0.1, 10, alpha=1.5), "alpha"),
        (lambda: CosineDecay(0.1, 10, warmup_target=0.1, warmup_steps=-1), "warmup_steps"),
        (lambda: CosineDecayRestarts(0.1, 10, t_mul=0.5), "t_mul"),
        (lambda: StepDecay(0.1, 10, gamma=0), "gamma"),
        (lambda: InverseSqrtDecay(0.1, warmup_steps=-3), "warmup_steps"),
        (lambda: Constant(float("nan")), "learning_rate"),
    ],
)
def test_constructor_errors_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_step_must_be_a_non_negative_number():
    with pytest.raises(ValueError, match="step"):
        Constant(0.1)(-1)
    with pytest.raises(ValueError, match="step"):
        Constant(0.1)("3")


def test_step_decay_formula():
    s = StepDecay(0.1, step_size=3, gamma=0.5)  # lr0 * gamma ** floor(t / step_size)
    assert [s(t) for t in range(7)] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_inverse_sqrt_decay_formula_and_continuity():
    s = InverseSqrtDecay(1e-3, warmup_steps=4)
    assert [s(t) for t in range(4)] == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4])  # lr0 * t / w
    assert s(4) == pytest.approx(1e-3)  # both pieces give lr0 at t = w
    assert s(16) == pytest.approx(1e-3 * math.sqrt(4 / 16))
    assert s(3.999) == pytest.approx(s(4), rel=1e-3)  # continuous at the end of the warmup
    no_warmup = InverseSqrtDecay(0.2)
    assert [no_warmup(t) for t in (0, 1, 4, 100)] == pytest.approx([0.2, 0.2, 0.1, 0.02])


def test_constant():
    assert [Constant(0.01)(t) for t in (0, 7, 10_000)] == [0.01, 0.01, 0.01]


def test_cosine_restarts_period_boundaries_are_exact():  # SC6: period i lasts fds * t_mul**i steps
    for t_mul, fds in [(2.0, 10), (3.0, 7), (1.5, 4)]:
        s = CosineDecayRestarts(1.0, fds, t_mul=t_mul, m_mul=0.5)
        start, i = 0.0, 0
        for _ in range(6):
            assert s(start) == pytest.approx(0.5**i), (t_mul, fds, i)  # each period starts at its peak
            mid = start + fds * t_mul**i / 2
            assert s(mid) == pytest.approx(0.5**i * 0.5), (t_mul, fds, i)  # and is halfway down mid-period
            start += fds * t_mul**i
            i += 1


def test_epoch_use_second_argument_is_ignored():  # LS2: LearningRateScheduler calls schedule(epoch, lr)
    s = ExponentialDecay(0.1, 10, 0.5)
    assert s(10, 123.0) == s(10) == pytest.approx(0.05)
    as_epoch = s.as_epoch_schedule()
    assert as_epoch(20, 0.7) == pytest.approx(0.025)


def test_get_config_and_serialize_round_trip():
    for schedule, expected in SC7:
        rebuilt = schedules.deserialize(schedules.serialize(schedule))
        assert type(rebuilt) is type(schedule)
        assert rebuilt.get_config() == schedule.get_config()
        assert [rebuilt(t) for t in expected] == [schedule(t) for t in expected]
    with pytest.raises(ValueError, match="class_name"):
        schedules.deserialize({"class_name": "NoSuchDecay", "config": {}})


@pytest.mark.parametrize(
    "schedule",
    [ExponentialDecay(0.1, 3, 0.5), PiecewiseConstantDecay([2, 4], [0.3, 0.2, 0.1]), StepDecay(0.2, 2)],
)
def test_optimizer_applies_schedule_at_update_count(schedule):  # SC0: update t uses schedule(t), t from 0
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = optimizers.SGD(learning_rate=schedule)
    opt.build([p])
    for t in range(7):
        assert opt.learning_rate == pytest.approx(schedule(t))  # the rate the next update will use
        before = p.item()
        opt.zero_grad()
        p.sum().backward()  # gradient 1: plain SGD moves the parameter by exactly the rate
        opt.step()
        assert before - p.item() == pytest.approx(schedule(t))
        assert opt.torch_optimizer.param_groups[0]["lr"] == pytest.approx(schedule(t))
        assert opt.iterations == t + 1


def test_plain_callable_of_the_step_drives_the_optimizer():  # SC0 with a user function
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = optimizers.SGD(learning_rate=lambda step: 0.5**step)
    opt.build([p])
    for _ in range(3):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
    assert p.item() == pytest.approx(-(1 + 0.5 + 0.25))
