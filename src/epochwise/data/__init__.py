"""Inputs to batches: the one preparation fit, validation, evaluate and predict share."""

from .arrays import ArrayBatches, ArrayData
from .epochs import EpochIterator
from .sources import (
    SourceBatches,
    dataset_loader,
    eval_batches,
    reject_for_source,
    source_samples,
    unpack_batch,
)
from .structures import (
    Batch,
    first_leaf,
    gather,
    is_array_input,
    is_array_leaf,
    leaves,
    map_structure,
    nbytes,
    to_device,
    to_tensor,
)
from .weights import class_weights_to_sample_weights

__all__ = ['Batch', 'map_structure', 'leaves', 'first_leaf', 'is_array_leaf', 'is_array_input', 'to_tensor', 'to_device', 'gather', 'nbytes', 'ArrayData', 'ArrayBatches', 'unpack_batch', 'SourceBatches', 'dataset_loader', 'eval_batches', 'reject_for_source', 'source_samples', 'EpochIterator', 'class_weights_to_sample_weights']
