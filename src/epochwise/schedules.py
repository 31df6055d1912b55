"""Learning-rate schedules by Keras name (the machinery lives in epochwise.optim)."""

from .optim.schedules import (
    Constant,
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseSqrtDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
    StepDecay,
    deserialize,
    serialize,
)

__all__ = ['LearningRateSchedule', 'ExponentialDecay', 'PiecewiseConstantDecay', 'PolynomialDecay', 'InverseTimeDecay', 'CosineDecay', 'CosineDecayRestarts', 'StepDecay', 'InverseSqrtDecay', 'Constant', 'serialize', 'deserialize']
