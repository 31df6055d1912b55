"""torchrun: process groups, sharded data, DDP and FSDP."""

from .core import barrier, is_distributed, is_main_process, rank, setup, world_size

__all__ = ['is_distributed', 'rank', 'world_size', 'is_main_process', 'setup', 'barrier']
