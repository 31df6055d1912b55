"""epochwise: Keras-style training (compile / fit / evaluate / predict) for any PyTorch module.

Example::

    import epochwise as ew
    model = ew.Model(net)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=10, validation_split=0.2)
"""

from . import callbacks, distributed, losses, metrics, optimizers, schedules
from .model import Model

__version__ = "0.1.0"

__all__ = ["Model", "callbacks", "distributed", "losses", "metrics", "optimizers", "schedules", "__version__"]
