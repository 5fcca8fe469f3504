"""Process-group setup: one process, `torchrun`, or the `deepspeed` launcher; gloo on CPU, NCCL on GPUs.

Both launchers export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; the `deepspeed`
launcher also passes `--local_rank`. DeepSpeed (ZeRO-2) is used whenever there is more than one
process, when the `deepspeed` launcher started us, or when `--deepspeed` is given.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

# The launcher variables `setup_distributed` itself set (one process without a launcher), for `cleanup_quietly`.
_environment_set_here: dict[str, str] = {}


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    use_deepspeed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def available_cores() -> int:
    """CPU cores this process may run on."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) or 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def setup_distributed(force_deepspeed: bool = False, launched_by_deepspeed: bool = False) -> DistributedContext:
    """Initialise the process group when needed and say which engine to use."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_deepspeed = world_size > 1 or force_deepspeed or launched_by_deepspeed
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    context = DistributedContext(rank, world_size, local_rank, device, use_deepspeed)
    if device.type == "cpu" and world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Several ranks on one CPU: share the cores instead of each rank spinning a thread per core, which
        # oversubscribes them and makes small ops many times slower.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", world_size)))
        torch.set_num_threads(max(1, available_cores() // max(local_world, 1)))
    if use_deepspeed and not (dist.is_available() and dist.is_initialized()):
        if "MASTER_ADDR" not in os.environ:  # one process without a launcher: a group of one
            group_of_one = dict(
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
            )
            _environment_set_here.update(group_of_one)
            os.environ.update(group_of_one)
        import deepspeed

        deepspeed.init_distributed(dist_backend=context.backend)
    return context


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over ranks (the values themselves when there is one process)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_objects(value) -> list:
    """`value` of every rank, in rank order (rare, small things: examples of bad records)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def release_deepspeed_shared_memory() -> None:
    """Remove this rank's DeepSpeed all-reduce buffer from /dev/shm, once the run is over.

    On the CPU accelerator DeepSpeed gives every rank a 66 MB shared-memory buffer named
    `deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>` and never removes it, so every CPU run
    would leave its buffers in memory until the machine reboots (/dev/shm is RAM): a few hundred runs fill it, and
    later runs are killed for memory. Peers that still map the buffer keep it until they exit. A GPU run has none.
    """
    names = ("MASTER_ADDR", "MASTER_PORT", "RANK")
    if all(name in os.environ for name in names):
        address, port, rank = (os.environ[name] for name in names)
        buffer = Path("/dev/shm") / f"deepspeed_allreduce_buffer_{os.getuid()}_{address}_{port}_{rank}"
        buffer.unlink(missing_ok=True)


def cleanup_quietly() -> None:
    """Tear the process group down (no barrier: after an error on one rank a barrier would hang), remove DeepSpeed's
    shared-memory buffer, and take back the launcher variables `setup_distributed` set for a group of one, so that
    a later run in the same Python process (a notebook, a test) or a command it starts is not taken for a launched
    rank."""
    if is_initialized():
        dist.destroy_process_group()
    release_deepspeed_shared_memory()
    for name, value in _environment_set_here.items():
        if os.environ.get(name) == value:
            del os.environ[name]
    _environment_set_here.clear()
