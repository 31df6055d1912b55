"""torchrun: process groups (setup), exact reductions (reduce), DDP (ddp), FSDP2 (fsdp), sharded data (sampler).

``model.fit`` under torchrun needs no change to the script: the process group is set up from torchrun's
environment, the module is trained through DistributedDataParallel (or sharded with
``compile(strategy="fsdp")``), each rank sees its shard of the data, and the logs are exact over all
ranks. Everything is a no-op in a single process.
"""

# Public: __all__. The rest is what the package itself calls as ``distributed.X`` (``from .. import distributed``).
from .ddp import wrap_module  # noqa: F401
from .fsdp import (  # noqa: F401
    gather_for_eval,
    gradient_sync,
    is_sharded,
    like_param,
    load_module_state,
    load_optimizer_state,
    local_part,
    module_state,
    optimizer_state,
    rebuild_optimizer,
    reduce_held_gradients,
    reshard_for_training,
    shard_module,
)
from .reduce import REDUCTIONS, combine, reduce_states, sum_numbers  # noqa: F401
from .sampler import ShardSampler, shard_bounds, train_positions  # noqa: F401
from .setup import (  # noqa: F401
    barrier,
    broadcast_int,
    check_strategy,
    collective_device,
    gather_objects,
    is_distributed,
    is_main_process,
    quiet_unless_main,
    rank,
    setup,
    world_size,
)

__all__ = ["is_distributed", "rank", "world_size", "is_main_process", "setup", "barrier"]
