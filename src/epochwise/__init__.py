"""epochwise: Keras-style training (compile / fit / evaluate / predict) for any PyTorch module.

Example::

    import epochwise as ew
    model = ew.Model(net)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=10, validation_split=0.2)
"""

from . import callbacks, datasets, distributed, losses, metrics, optimizers, schedules
from .explore import explore_batch_sizes, find_learning_rate, find_max_batch_size
from .model import Model
from .plotting import plot_history

__version__ = "0.1.0"

__all__ = [
    "Model",
    "callbacks",
    "datasets",
    "distributed",
    "explore_batch_sizes",
    "find_learning_rate",
    "find_max_batch_size",
    "losses",
    "metrics",
    "optimizers",
    "plot_history",
    "schedules",
    "__version__",
]
