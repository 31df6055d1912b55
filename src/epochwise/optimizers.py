"""Optimizers by Keras name (the machinery lives in epochwise.optim)."""

from .optim.optimizers import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Nadam, Optimizer, RMSprop, get

__all__ = ['Optimizer', 'Adam', 'AdamW', 'SGD', 'RMSprop', 'Adagrad', 'Adadelta', 'Adamax', 'Nadam', 'get']
