"""The batch-size explorer, the largest-batch search and the learning-rate range test."""

from .insight.explorer import (
    BatchSizeTable,
    LRFinderResult,
    available_ram,
    explore_batch_sizes,
    find_learning_rate,
    find_max_batch_size,
    is_out_of_memory,
)

__all__ = ['BatchSizeTable', 'LRFinderResult', 'available_ram', 'explore_batch_sizes', 'find_learning_rate', 'find_max_batch_size', 'is_out_of_memory']
