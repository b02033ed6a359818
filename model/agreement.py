"""Under torchrun: after each update, all processes agree on the batch's sums and on what to do next.

Each process has its own clock and receives signals on its own (patience and the time
taken by dev evaluations live on rank 0 alone), so without this they could stop or save
at different steps and wait forever for each other. One all-reduce carries it all; rank
0's clock decides saves. A single process agrees with itself at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tt.model.distributed import Cluster, all_reduce_max, all_reduce_sum
from tt.model.metrics import StepTotals

OTHERS_LIMIT = "stopped with the other processes (a limit)"


@dataclass
class Decision:
    """What the loop does after a step: stop for a limit or a signal, or save; and how far the
    run is (Trainer.progress), which sets the next step's learning rate."""

    limit: str | None
    signal: int | None
    save: bool
    progress: float = 0.0


def agree(cluster: Cluster, device: torch.device, totals: StepTotals, mine: Decision) -> tuple[StepTotals, Decision]:
    """The whole batch's sums (this process has its share's), and one decision for all."""
    if not cluster.distributed:
        return totals, mine
    flags = [float(mine.limit is not None), float(mine.signal or 0), float(mine.save and cluster.is_main), mine.progress]
    summed = all_reduce_sum(totals.values(), device)
    anyone = all_reduce_max(flags, device)
    limit = (mine.limit or OTHERS_LIMIT) if anyone[0] else None
    return StepTotals.from_values(summed), Decision(limit, int(anyone[1]) or None, bool(anyone[2]), anyone[3])


def agree_on_limit(cluster: Cluster, device: torch.device, reason: str | None) -> str | None:
    """A limit reached by any process stops them all (their clocks differ a little)."""
    if not cluster.distributed:
        return reason
    (anyone,) = all_reduce_max([float(reason is not None)], device)
    return reason or (OTHERS_LIMIT if anyone else None)


def agree_on_progress(cluster: Cluster, device: torch.device, progress: float) -> float:
    """The furthest any process thinks the run is: one learning rate for all."""
    if not cluster.distributed:
        return progress
    (furthest,) = all_reduce_max([progress], device)
    return furthest
