"""Losses by Keras name, as classes and as functions."""

from .classes import (
    AutoCrossentropy,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    CosineSimilarity,
    Hinge,
    Huber,
    KLDivergence,
    LogCosh,
    Loss,
    LossFunctionWrapper,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    SparseCategoricalCrossentropy,
    SquaredHinge,
    TorchLoss,
    get,
    infer_from_logits,
    looks_like_probabilities,
)

__all__ = ['Loss', 'BinaryCrossentropy', 'CategoricalCrossentropy', 'SparseCategoricalCrossentropy', 'AutoCrossentropy', 'MeanSquaredError', 'MeanAbsoluteError', 'MeanAbsolutePercentageError', 'MeanSquaredLogarithmicError', 'Huber', 'LogCosh', 'KLDivergence', 'Poisson', 'CosineSimilarity', 'Hinge', 'SquaredHinge', 'CategoricalHinge', 'TorchLoss', 'LossFunctionWrapper', 'get', 'infer_from_logits', 'looks_like_probabilities']
