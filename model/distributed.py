"""Data parallelism across processes, on torch.distributed: who this process is, its share.

`torchrun --nproc-per-node N -m tt.cli train …` starts N copies of `tt train`, each with
RANK, WORLD_SIZE and LOCAL_RANK in its environment. Every copy holds the whole model and
reads the same global batch (same corpus, same seed, same plan); each one trains on its
own share of that batch's sentences, and DistributedDataParallel averages the gradients
during backward, so every copy applies the same update. Rank 0 alone writes files and
draws the progress bar.

Gradient accumulation (`--accum A`) cuts a process's share once more and adds up the
gradients before the update. The global batch is cut into WORLD_SIZE × A shares the same
way in every case, so one process with `--accum 2` computes the same update as two
processes without (up to the order of float additions).
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tt.data.errors import UserError


@dataclass
class Cluster:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def join_cluster(device_type: str) -> Cluster:
    """Read torchrun's environment and join the process group (gloo on CPU, nccl on CUDA)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (they are set by torchrun)") from None
    cluster = Cluster(rank, world_size, local_rank)
    if cluster.distributed and not dist.is_initialized():
        if device_type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise UserError(
                    f"process {rank} has LOCAL_RANK {local_rank} but this machine shows {torch.cuda.device_count()} GPUs: "
                    "start at most one process per GPU (torchrun --nproc-per-node)"
                )
            torch.cuda.set_device(local_rank)
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))  # rank 0 may be busy with dev BLEU
    return cluster


def leave_cluster(synchronize: bool = False) -> None:
    """Leave the process group; with `synchronize`, only once every process got here.

    Without the barrier a process that finished first tears down its connections while
    another is still completing the last collective, and gloo may abort the process
    ("terminate called without an active exception"). After an error on one process the
    others are not coming, so then we leave at once (torchrun stops the rest).
    """
    if not dist.is_initialized():
        return
    if synchronize:
        try:
            dist.barrier()
        except RuntimeError:
            pass  # a peer already gone: nothing left to wait for
    dist.destroy_process_group()


def shares(rows: list[int], parts: int) -> list[list[int]]:
    """Cut one global batch (a list of sentence indices) into `parts` interleaved shares.

    The rows come sorted by length within a batch, so interleaving gives every share
    sentences of every length and about the same number of tokens.
    """
    return [rows[i::parts] for i in range(parts)]


def all_reduce_max(values: list[float], device: torch.device) -> list[float]:
    """Element-wise max over all processes: how they agree to stop or to save together."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_bytes(values: dict[str, bytes] | None, cluster: Cluster, device: torch.device) -> dict[str, bytes]:
    """Rank 0's {name: bytes} on every process (the others pass None). `tt train` sends one
    {"status": b"ready"} or b"failed" once process 0 has prepared the corpus."""
    if not cluster.distributed:
        assert values is not None
        return values
    if cluster.is_main:
        assert values is not None
        index = json.dumps({name: len(data) for name, data in values.items()}).encode()
        payload = index + b"".join(values.values())
        header = torch.tensor([len(index), len(payload)], dtype=torch.int64, device=device)
    else:
        header = torch.zeros(2, dtype=torch.int64, device=device)
    dist.broadcast(header, src=0)
    index_length, total = header.tolist()
    buffer = torch.zeros(total, dtype=torch.uint8, device=device)
    if cluster.is_main:
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    data = buffer.cpu().numpy().tobytes()
    lengths = json.loads(data[:index_length])
    out, offset = {}, index_length
    for name, length in lengths.items():
        out[name] = data[offset : offset + length]
        offset += length
    return out


def gather_rng_states(cluster: Cluster, device: torch.device, cuda: bool = False) -> list[torch.Tensor]:
    """Every process's random-number state, CPU or CUDA (dropout draws differ per process)."""
    state = torch.cuda.get_rng_state() if cuda else torch.get_rng_state()
    if not cluster.distributed:
        return [state]
    gathered = [torch.zeros_like(state, device=device) for _ in range(cluster.world_size)]
    dist.all_gather(gathered, state.to(device))
    return [t.cpu() for t in gathered]


def seed_random_numbers(cluster: Cluster, device: torch.device, seed: int, step: int, restored: dict | None) -> None:
    """Dropout's random numbers: from the seed at step 0, else as the checkpoint left them.

    Each process draws its own (rank 0 exactly as a single process would). A process the
    checkpoint has no state for (more processes than before) starts a fresh stream derived
    from the seed, the step and its rank.
    """
    rank = cluster.rank
    cpu_key = "rng.torch" if rank == 0 else f"rng.torch.{rank}"
    if restored is None:
        torch.manual_seed(seed + rank)
    elif cpu_key in restored:
        torch.set_rng_state(restored[cpu_key])
    else:
        torch.manual_seed(hash((seed, step, rank)))
    if device.type == "cuda" and restored is not None:
        if f"rng.cuda.{rank}" in restored:
            torch.cuda.set_rng_state(restored[f"rng.cuda.{rank}"])
        else:
            torch.cuda.manual_seed(hash((seed, step, rank)))


def rng_tensors(cluster: Cluster, device: torch.device) -> dict[str, torch.Tensor]:
    """Every process's generator states, named for the checkpoint (a collective call)."""
    states = gather_rng_states(cluster, device)
    tensors = {("rng.torch" if rank == 0 else f"rng.torch.{rank}"): state for rank, state in enumerate(states)}
    if device.type == "cuda":
        cuda_states = gather_rng_states(cluster, device, cuda=True)
        tensors.update({f"rng.cuda.{rank}": state for rank, state in enumerate(cuda_states)})
    return tensors
