"""Sampling: the next token drawn at random from the model's distribution, not its argmax.

Used by `tt translate --sample`, through `greedy_decode(..., sampler=Sampler(...))`: the
loop, the cache and the bookkeeping are greedy's; only the choice differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Sampler:
    """Draw the next token at random instead of taking the argmax.

    p is first sharpened or flattened by the temperature, p ∝ exp(ln p / T), then cut to
    the `top_k` most probable tokens and/or the smallest set whose mass reaches `top_p`
    (nucleus sampling), renormalized, and sampled. A seeded generator makes draws repeatable.
    The log-probabilities recorded are the model's own (T = 1, no cut), so a sample's
    score is comparable with greedy's and beam search's.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self):
        self.generator = torch.Generator()
        if self.seed is not None:
            self.generator.manual_seed(self.seed)
        else:  # a new generator starts from one fixed seed: without this, every run drew the same
            self.generator.seed()  # a seed from the operating system's randomness

    def __call__(self, log_probs: torch.Tensor) -> torch.Tensor:
        scores = log_probs.float() / max(self.temperature, 1e-6)
        if self.top_k is not None and self.top_k < scores.shape[-1]:
            kth = scores.topk(self.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            probs = sorted_scores.softmax(-1)
            # keep a token while the mass before it is still short of top_p (the first always stays)
            drop_sorted = probs.cumsum(-1) - probs >= self.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        # Drawn on the CPU with our own generator: the same seed gives the same draws on any device.
        return torch.multinomial(scores.softmax(-1).float().cpu(), 1, generator=self.generator).squeeze(-1).to(scores.device)
