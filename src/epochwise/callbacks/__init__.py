"""Callbacks: objects the fit / evaluate / predict loops call at set moments (Keras names)."""

from .backup_and_restore import BackupAndRestore
from .callback import Callback
from .callback_list import CallbackList
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping
from .history import History
from .lambda_callback import LambdaCallback
from .lr_scheduler import LearningRateScheduler
from .model_checkpoint import ModelCheckpoint
from .optuna_pruning import OptunaPruning
from .progbar_logger import ProgbarLogger
from .reduce_lr_on_plateau import ReduceLROnPlateau
from .tensorboard import TensorBoard
from .terminate_on_nan import TerminateOnNaN

__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "CSVLogger",
    "EarlyStopping",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TensorBoard",
    "TerminateOnNaN",
    "BackupAndRestore",
    "ProgbarLogger",
    "OptunaPruning",
]
