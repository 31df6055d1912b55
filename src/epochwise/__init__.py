"""epochwise: Keras-style training (compile / fit / evaluate / predict) for any PyTorch module.

Example::

    import epochwise as ew
    model = ew.Model(net)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=10, validation_split=0.2)
"""

from . import callbacks, datasets, distributed
from .insight.explorer import explore_batch_sizes, find_learning_rate, find_max_batch_size
from .insight.plots import plot_history
from .io.model_file import load_model
from .losses import classes as losses
from .metrics import classes as metrics
from .model import Model
from .optim import optimizers, schedules

__version__ = "0.1.0"

__all__ = [
    "Model",
    "callbacks",
    "datasets",
    "distributed",
    "explore_batch_sizes",
    "find_learning_rate",
    "find_max_batch_size",
    "load_model",
    "losses",
    "metrics",
    "optimizers",
    "plot_history",
    "schedules",
    "wrappers",
    "__version__",
]


def __getattr__(name: str):
    if name == "wrappers":  # imported on first use: it imports scikit-learn
        import importlib

        return importlib.import_module(f"{__name__}.wrappers")
    raise AttributeError(f"module 'epochwise' has no attribute {name!r}")
