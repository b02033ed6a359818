"""A training run assembled: prepared corpus → model → batches, dev set, probes → `Trainer`.

`tt train` (`tt.cli.train_command`) reads the options, takes the folder's lock and prints;
what it runs is here, in the order it happens: the corpus prepared (by process 0 alone
under torchrun, the others then opening the same files), a new model sized to the
tokenizer, and the trainer with its batch stream, dev set and probe sentences.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from tt.data.batches import BatchStream
from tt.data.corpus import CorpusSpec
from tt.data.errors import UserError
from tt.data.prepare import Progress, prepare
from tt.data.prepared_folder import PreparedCorpus, PrepareRequest, open_prepared
from tt.data.subword_sampling import SubwordSampler
from tt.data.tokenizer import Tokenizer
from tt.model.device import resolve_device
from tt.model.distributed import Cluster, broadcast_bytes
from tt.model.evaluate import DevSet
from tt.model.probes import Probe, ProbeSet
from tt.model.train import TrainConfig, Trainer
from tt.model.transformer import ModelConfig, Transformer


def prepare_everywhere(request: PrepareRequest, folder: Path, cluster: Cluster, device: str, progress: Progress) -> PreparedCorpus:
    """Process 0 prepares (or checks and reuses) the corpus; under torchrun the others then open the same files."""
    if cluster.is_main:
        try:
            data = prepare(request, folder, progress)
        except BaseException:
            if cluster.distributed:
                broadcast_bytes({"status": b"failed"}, cluster, resolve_device(device))
            raise
        if cluster.distributed:
            broadcast_bytes({"status": b"ready"}, cluster, resolve_device(device))
        return data
    if broadcast_bytes(None, cluster, resolve_device(device))["status"] != b"ready":
        raise UserError("process 0 could not prepare the corpus")  # it says why
    return open_prepared(folder, request, verify=False)


def new_model(config: ModelConfig, tokenizer: Tokenizer, seed: int) -> Transformer:
    """A freshly initialised model with the tokenizer's vocabulary sizes; the seed decides its weights."""
    torch.manual_seed(seed)
    return Transformer(replace(
        config, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size, tie_embeddings=tokenizer.joint,
        # Separate vocabularies still share one matrix between the target embedding and the output layer.
        tie_output=not tokenizer.joint,
    ))


def check_same_corpus(data: PreparedCorpus, recorded_pairs: int | None, spec: CorpusSpec) -> None:
    """--resume continues on the data the run started with: the same number of usable pairs."""
    if recorded_pairs is not None and recorded_pairs != data.train_pairs:
        raise UserError(
            f"{spec.describe()}: the corpus changed since this run started ({data.train_pairs:,} usable pairs now, "
            f"{recorded_pairs:,} then); --resume needs the same data"
        )


def build_trainer(
    model: Transformer,
    data: PreparedCorpus,
    config: TrainConfig,
    folder: Path,
    save_record: Callable[[], dict],
    command_start: float,
    cluster: Cluster,
    new_run: bool,
    probe_pairs: list[list[str]],
) -> Trainer:
    """The trainer of `model` on `data`: pairs longer than the model's positions are left out."""
    limit = model.config.max_positions - 1
    sampler = SubwordSampler(data.tokenizer, config.subword_alpha, config.seed, limit) if config.subword_alpha else None
    stream = BatchStream(*data.within(limit), config.batch_tokens, config.seed, sampler)
    dev = DevSet(*data.dev_ids(limit)) if data.dev else None
    probes = ProbeSet([Probe(*pair) for pair in probe_pairs], data.tokenizer, model.config.max_positions)
    return Trainer(
        model, data.tokenizer, stream, dev, config, folder, save_record, command_start, cluster, new_run=new_run, probes=probes,
    )
