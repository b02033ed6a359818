"""Dev evaluations during training: dev loss, greedy BLEU, and the checkpoint they choose.

Every `dev_every` steps rank 0 measures the dev loss and (with references) the BLEU of
greedy translations; the best BLEU so far becomes model.safetensors, `--patience` counts
evaluations without a better one, and `--average-last N` keeps the weights of the last N
evaluations to try their mean at the end. A run that finishes its learning rate's
cool-down keeps its last weights instead, unless an earlier evaluation beat them on dev
BLEU and dev loss both (`_keep_landed_weights`).

`DevSelection` is a part of `tt.model.train.Trainer`; it reads the trainer's fields.
"""

from __future__ import annotations

import time

from tt.model.evaluate import average_weights, bleu_tokenization, dev_bleu, evaluate_loss
from tt.model.checkpoint import save_model_folder
from tt.model.metrics import MetricsLog


def earlier_is_better(earlier: dict, last: dict) -> bool:
    """Did an earlier evaluation beat the last one on dev BLEU and on dev loss both?

    (An evaluation recorded before tt kept its dev loss counts as not better on it.)
    """
    return earlier["dev_bleu"] > last["dev_bleu"] and earlier.get("dev_loss", float("inf")) < last["dev_loss"]


class DevSelection:
    @property
    def selects_best(self) -> bool:
        return self.dev is not None and bool(self.dev.references) and self.config.dev_bleu_sentences > 0

    def _bleu_tokenize(self) -> str:
        """How dev BLEU finds words (recorded with the best score, for the model card's signature)."""
        return bleu_tokenization(self.dev.references[: self.config.dev_bleu_sentences])

    def _evaluate(self) -> dict:
        """Dev loss and BLEU, on rank 0 only (the others wait at the step's agreement).

        Returns the metrics line to write ({} on other processes).
        """
        if not self.cluster.is_main:
            return {}
        started = time.monotonic()
        self.last_dev = evaluate_loss(self.model, self.dev, self.config.batch_tokens, self.config.label_smoothing)
        if self.selects_best:
            bleu = dev_bleu(self.model, self.tokenizer, self.dev, self.config.dev_bleu_sentences)
            self.last_dev["dev_bleu"] = bleu
            if not self.best or bleu > self.best["dev_bleu"]:
                self.evaluations_since_best = 0
                self._keep_current_weights()
            else:
                self.evaluations_since_best += 1
            if self.config.average_last > 1:
                weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.snapshots = [*self.snapshots, weights][-self.config.average_last :]
        self.finishing_seconds = time.monotonic() - started
        return {"step": self.step, "elapsed_s": round(self.elapsed(), 2), **self.last_dev}

    def _keep_landed_weights(self, log: MetricsLog) -> None:
        """At the end of a finished cool-down, the last weights become model.safetensors,
        unless an earlier evaluation beat them on dev BLEU and dev loss both.

        The cool-down takes the learning rate to 0 so that the last weights settle at the
        bottom of their valley (`tt.model.train.learning_rate`): they are what the run was
        steering for. Dev BLEU on 500 sentences moves by about a point between nearby
        evaluations by chance alone, so the highest of several late ones is often a lucky
        draw; measured on Tatoeba zh→en (README, "Zen 4: the learning rate held, and the
        landed weights kept"), the last weights scored higher on the whole dev split than the
        best-BLEU ones in all five runs.
        An earlier checkpoint that is better on both counts is a real sign of over-fitting,
        and it stays.
        """
        if not (self.cluster.is_main and self.selects_best and self.best and self.config.cooldown > 0):
            return
        if self.agreed_progress < 1.0 or self.best["step"] == self.step or self.last_dev.get("dev_bleu") is None:
            return  # stopped early (--patience) or the last evaluation is already the kept one
        if earlier_is_better(self.best, self.last_dev):
            return
        passed_over = {"step": self.best["step"], "dev_bleu": self.best["dev_bleu"]}
        self._keep_current_weights(landed=passed_over)
        log.write({"step": self.step, "kept": "landed", "passed_over_step": passed_over["step"], "passed_over_dev_bleu": passed_over["dev_bleu"]})

    def _keep_current_weights(self, **why) -> None:
        """The weights now become model.safetensors, recorded as `best` with the scores of the
        evaluation just made (and `why`, where it was not the best BLEU)."""
        self.best = {
            "step": self.step, "dev_bleu": self.last_dev["dev_bleu"], "dev_loss": self.last_dev["dev_loss"],
            **why, "bleu_tokenize": self._bleu_tokenize(),
        }
        self._checkpoint_written(save_model_folder(self.folder, self.model, self.tokenizer, self.record()))

    def _try_average(self, log: MetricsLog) -> None:
        """Mean of the last snapshots' weights: kept as model.safetensors if its dev BLEU is higher.

        Averaging nearby points of one run smooths out the noise of the last updates; it
        often scores a little higher than any single one of them. Training state keeps the
        latest (unaveraged) weights, so --resume continues the real run.
        """
        if not self.cluster.is_main:
            return
        averaged = average_weights(self.model.config, self.snapshots).to(self.device)
        bleu = dev_bleu(averaged, self.tokenizer, self.dev, self.config.dev_bleu_sentences)
        log.write({"step": self.step, "averaged_last": len(self.snapshots), "dev_bleu_averaged": bleu})
        if bleu > self.best.get("dev_bleu", float("-inf")):
            self.best = {"step": self.step, "dev_bleu": bleu, "averaged_last": len(self.snapshots), "bleu_tokenize": self._bleu_tokenize()}
            self._checkpoint_written(save_model_folder(self.folder, averaged, self.tokenizer, self.record()))
