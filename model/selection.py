"""Dev evaluations during training: dev loss, greedy BLEU, and the checkpoint they choose.

Every `dev_every` steps rank 0 measures the dev loss and (with references) the BLEU of
greedy translations; the best BLEU so far becomes model.safetensors, `--patience` counts
evaluations without a better one, and `--average-last N` keeps the weights of the last N
evaluations to try their mean at the end.

`DevSelection` is a part of `tt.model.train.Trainer`; it reads the trainer's fields.
"""

from __future__ import annotations

import time

from tt.model.evaluate import average_weights, bleu_tokenization, dev_bleu, evaluate_loss
from tt.model.checkpoint import save_model_folder
from tt.model.metrics import MetricsLog


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
                self.best = {"step": self.step, "dev_bleu": bleu, "bleu_tokenize": self._bleu_tokenize()}
                self.evaluations_since_best = 0
                self._checkpoint_written(save_model_folder(self.folder, self.model, self.tokenizer, self.record()))
            else:
                self.evaluations_since_best += 1
            if self.config.average_last > 1:
                weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.snapshots = [*self.snapshots, weights][-self.config.average_last :]
        self.finishing_seconds = time.monotonic() - started
        return {"step": self.step, "elapsed_s": round(self.elapsed(), 2), **self.last_dev}

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
