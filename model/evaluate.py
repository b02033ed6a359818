"""Scores of translations against references (BLEU and chrF, by sacrebleu), and the dev
set numbers training watches: dev loss and greedy dev BLEU.

sacrebleu is the field's reference implementation: its settings make our numbers
comparable with published ones, and its signature records exactly how they were computed.
References are used exactly as given. BLEU counts words, and sacrebleu's default
tokenization (13a) finds words at spaces and punctuation: a Chinese or Japanese sentence,
written without spaces, would be one "word" and score next to nothing. So the tokenization
follows the references' script (`bleu_tokenization`), as sacrebleu's own advice for these
languages is: 13a, zh for Chinese, char for Japanese and Korean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from sacrebleu.metrics import BLEU, CHRF

from tt.data.batches import make_batch, plan_batches
from tt.data.tokenizer import PAD_ID, Tokenizer
from tt.model.decode import greedy_decode
from tt.model.device import model_device
from tt.model.loss import TeacherForcedLoss
from tt.model.transformer import Transformer


@dataclass
class Scores:
    bleu: float
    chrf: float
    sentences: int
    bleu_signature: str
    chrf_signature: str


def score_corpus(hypotheses: list[str], references: list[str]) -> Scores:
    assert len(hypotheses) == len(references), "one hypothesis per reference"
    # force: a model's output may well end in " ." (a corpus tokenized so); sacrebleu's warning
    # about undetokenized text would otherwise land in the middle of training's output.
    bleu, chrf = BLEU(tokenize=bleu_tokenization(references), force=True), CHRF()
    return Scores(
        bleu=bleu.corpus_score(hypotheses, [references]).score,
        chrf=chrf.corpus_score(hypotheses, [references]).score,
        sentences=len(references),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )


def bleu_tokenization(references: list[str]) -> str:
    """sacrebleu's tokenization for these references: "zh" where most letters are Chinese
    characters, "char" where Japanese kana or Korean hangul are common, else "13a"."""
    letters = cjk = kana_hangul = 0
    for text in references:
        for character in text:
            if character.isalpha():
                letters += 1
                code = ord(character)
                if 0x3040 <= code <= 0x30FF or 0x1100 <= code <= 0x11FF or 0xAC00 <= code <= 0xD7AF:
                    kana_hangul += 1
                    cjk += 1
                elif 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3FFFF:
                    cjk += 1
    if not letters or cjk < letters / 2:
        return "13a"
    return "char" if kana_hangul > cjk / 10 else "zh"


def bleu_signature(tokenize: str = "13a") -> str:
    """sacrebleu's signature of the BLEU that `score_corpus` and dev BLEU compute with this
    tokenization (one reference, sacrebleu's other defaults). sacrebleu knows it only after
    scoring, so score one sentence against itself."""
    bleu = BLEU(tokenize=tokenize, force=True)
    bleu.corpus_score(["signature"], [["signature"]])
    return str(bleu.get_signature())


@dataclass
class DevSet:
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    references: list[str] = field(default_factory=list)  # target text, for BLEU


def dev_bleu(model: Transformer, tokenizer: Tokenizer, dev: DevSet, sentences: int) -> float:
    """Greedy BLEU on the first `sentences` dev pairs: the number best-checkpoint selection uses."""
    was_training = model.training
    hyps = greedy_decode(model, dev.src_ids[:sentences])
    model.train(was_training)
    translations = [tokenizer.decode_tgt(h.tokens) for h in hyps]
    return score_corpus(translations, dev.references[:sentences]).bleu


@torch.no_grad()
def evaluate_loss(model: Transformer, dev: DevSet, batch_tokens: int, smoothing: float) -> dict:
    """Mean per-token loss on the dev set, float32 and no dropout: comparable across runs."""
    was_training = model.training
    model.eval()
    nll = kl = 0.0
    tokens = 0
    lengths = [(len(s), len(t)) for s, t in zip(dev.src_ids, dev.tgt_ids)]
    loss = TeacherForcedLoss(model, smoothing, PAD_ID)  # the training step's forward and loss
    # The same token-budget batching as training; the order of batches does not change a sum.
    for rows in plan_batches(lengths, batch_tokens, seed=0):
        batch = make_batch([dev.src_ids[i] for i in rows], [dev.tgt_ids[i] for i in rows]).to(model_device(model))
        parts = loss(batch.src, batch.src_pad_mask, batch.tgt_in, batch.tgt_out)
        nll, kl, tokens = nll + float(parts.nll), kl + float(parts.kl), tokens + parts.n_tokens
    model.train(was_training)
    mean_nll = nll / max(tokens, 1)
    return {"dev_loss": mean_nll, "dev_kl": kl / max(tokens, 1), "dev_ppl": math.exp(min(mean_nll, 50))}


def average_weights(config, snapshots: list[dict[str, torch.Tensor]]) -> Transformer:
    """A model whose every weight is the mean of that weight over the snapshots."""
    with torch.random.fork_rng(devices=[]):  # its random initialization must not move training's RNG
        averaged = Transformer(config)
    averaged.load_state_dict({k: torch.stack([s[k].float() for s in snapshots]).mean(0) for k in snapshots[0]})
    return averaged
