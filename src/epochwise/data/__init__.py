"""Inputs to batches: the one preparation fit, validation, evaluate and predict share."""

from .arrays import ArrayBatches, ArrayData
from .checks import Targets, all_finite, check_finite, first_batch_check, warn_single_class_tail
from .epochs import EpochIterator
from .inputs import Prepared, eval_input, from_arrays, from_source, is_map_dataset
from .sources import (
    SourceBatches,
    dataset_loader,
    reject_for_source,
    source_samples,
    unpack_batch,
)
from .structures import (
    Batch,
    concat_outputs,
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
from .weights import check_weights, class_weights_to_sample_weights

__all__ = ['Batch', 'concat_outputs', 'map_structure', 'leaves', 'first_leaf', 'is_array_leaf', 'is_array_input', 'to_tensor',
           'to_device', 'gather', 'nbytes', 'ArrayData', 'ArrayBatches', 'unpack_batch', 'SourceBatches',
           'dataset_loader', 'reject_for_source', 'source_samples', 'EpochIterator',
           'class_weights_to_sample_weights', 'Targets', 'all_finite', 'check_finite', 'first_batch_check',
           'Prepared', 'eval_input', 'from_arrays', 'from_source', 'is_map_dataset', 'check_weights',
           'warn_single_class_tail']
