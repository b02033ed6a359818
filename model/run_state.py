"""What a run keeps across a restart: the training state, written at checkpoints and read on --resume.

A checkpoint is model.safetensors + config.json (the model a user translates with) and
train_state.safetensors (optimizer moments, the step, the data position, the random number
generators), so that `tt train --resume` continues exactly where the run stopped. With dev
BLEU selection, model.safetensors holds the best weights and train_state the latest.

`RunState` is a part of `tt.model.train.Trainer`; it reads the trainer's fields.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from tt.model.checkpoint import (
    CONFIG, STATE_TENSORS, load_training_state, save_model_folder, save_training_state, write_json,
)
from tt.model.run_folder import retire_previous_run
from tt.model.distributed import rng_tensors


class RunState:
    def state(self) -> dict:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed_s": self.elapsed(),
            "epoch": self.stream.epoch,
            "position": self.stream.position,
            "last_dev": self.last_dev,
            "best": self.best,
            "evaluations_since_best": self.evaluations_since_best,
            "batch_tokens": self.config.batch_tokens,  # the plan `position` counts batches of
            "processes": self.cluster.world_size,
        }

    def restore(self) -> list[str]:
        """Load the training state; returns notes on what a changed option did to it."""
        state, self.restored_rng = load_training_state(self.folder, self.model, self.optimizer)
        for group in self.optimizer.param_groups:  # restored with the old run's settings: this run's apply
            group["weight_decay"] = self.config.weight_decay
        self.step, self.tokens = state["step"], state["tokens"]
        self.saved_step = self.step
        self.elapsed_before = state["elapsed_s"]
        self.stream.epoch, self.stream.position = state["epoch"], state["position"]
        self.last_dev = state.get("last_dev", {})
        self.best = state.get("best", {})
        self.evaluations_since_best = state.get("evaluations_since_best", 0)
        notes = []
        recorded_tokens = state.get("batch_tokens", self.config.batch_tokens)
        if recorded_tokens != self.config.batch_tokens:
            share = self.stream.continue_from(recorded_tokens)
            notes.append(f"epoch {self.stream.epoch + 1} goes on from {share:.0%} of its data in batches of the new size")
        processes = state.get("processes", 1)
        if processes != self.cluster.world_size:
            notes.append(f"processes: {processes} before, {self.cluster.world_size} now (the same batches, cut in other shares)")
        return notes

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.command_start)

    def save(self) -> None:
        """The training state always; model.safetensors only while no best checkpoint exists.

        Every process must call this at the same step (the RNG states are gathered); only
        rank 0 writes.
        """
        rng = rng_tensors(self.cluster, self.device)
        if not self.cluster.is_main:
            return
        if not self.selects_best or not self.best:
            written = save_model_folder(self.folder, self.model, self.tokenizer, self.record())
        else:
            write_json(self.folder / CONFIG, self.record())
            written = {CONFIG}
        save_training_state(self.folder, self.model, self.optimizer, self.state(), rng)
        self.saved_step = self.step
        self._checkpoint_written(written | {STATE_TENSORS})

    def _checkpoint_written(self, written: set[str]) -> None:
        if self.replacing:
            retire_previous_run(self.folder, written)
            self.replacing = False

    def record(self) -> dict:
        return {**self.save_record(), "step": self.step, "best": self.best, "model": asdict(self.model.config)}
