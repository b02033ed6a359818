"""`tt translate --step`: decode by hand. At each step the person picks one of the top-k tokens.

Enter takes the most probable one (what greedy would do); a number picks another. The
choices leave out what greedy never picks (<pad>, the start token: `never_chosen`). At the
end the chosen translation's log-probability is shown beside greedy's, so one sees what a
different choice cost (or gained) under the model.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from rich.console import Console
from rich.table import Table

from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.model.decode import DecodeConfig, encode_sources, greedy_decode, max_output_length, never_chosen
from tt.model.device import model_device
from tt.model.translator import Translator


@torch.no_grad()
def step_through(translator: Translator, text: str, k: int, ask: Callable[[str], str], console: Console) -> tuple[str, float, float]:
    """Returns (translation, its log-probability, greedy's log-probability)."""
    model, tokenizer = translator.model, translator.tokenizer
    src_ids = tokenizer.encode_src(normalize(text))
    positions = model.config.max_positions
    if len(src_ids) > positions:  # the encoder has no positions beyond: cut, keeping the </s>
        console.print(f"[yellow]warning:[/] {len(src_ids):,} source pieces, cut to the model's {positions:,}")
        src_ids = tokenizer.fit_source(src_ids, positions)
    banned = never_chosen(model)
    k = min(k, model.config.tgt_vocab_size - len(banned))
    cache = encode_sources(model, [src_ids])
    limit = max_output_length(len(src_ids), DecodeConfig(), model)
    chosen: list[int] = []
    total = 0.0
    token = model.config.start_id
    while len(chosen) < limit and token != model.config.eos_id:
        log_probs = model.log_probs(model.decode_step(torch.tensor([[token]], device=model_device(model)), cache)[0, -1])
        _, ids = log_probs.index_fill(0, banned, float("-inf")).topk(k)  # the candidates greedy chooses among
        values = log_probs[ids]
        table = Table(title=f"step {len(chosen) + 1}: {tokenizer.decode_tgt(chosen)!r} …", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("token")
        table.add_column("p", justify="right")
        for rank, (value, token_id) in enumerate(zip(values, ids), start=1):
            table.add_row(str(rank), tokenizer.tgt_piece(int(token_id)), f"{math.exp(float(value)):.4f}")
        console.print(table)
        pick = _pick(ask, k, console)
        token = int(ids[pick])
        chosen.append(token)
        total += float(values[pick])
    greedy = greedy_decode(model, [src_ids])[0].log_prob
    return tokenizer.decode_tgt(chosen), total, greedy


def _pick(ask: Callable[[str], str], k: int, console: Console) -> int:
    """The index of the chosen candidate: Enter (or the input's end) is the first; anything
    but a number from 1 to k is asked again."""
    while True:
        answer = ask(f"pick 1–{k} (Enter = 1): ").strip()
        if not answer:
            return 0
        if answer.isdigit() and 1 <= int(answer) <= k:
            return int(answer) - 1
        console.print(f"[yellow]{answer!r} is not one of 1–{k}[/]")


def run_step(folder, texts, k: int, console: Console, device: str = "cpu") -> None:
    """Each argument (or one prompted sentence) decoded by hand; the result goes to stdout."""
    translator = Translator(folder, device)

    def ask(prompt: str) -> str:  # the prompt goes to stderr: stdout holds only translations
        console.print(prompt, end="")
        try:
            return input()
        except EOFError:
            return ""

    sentences = list(texts or []) or [ask("sentence: ")]
    if not any(text.strip() for text in sentences):
        raise UserError("--step: no sentence to decode")
    for text in sentences:
        translation, chosen, greedy = step_through(translator, text, k, ask, console)
        print(translation)
        console.print(f"log p = {chosen:.3f} for this translation; greedy's is {greedy:.3f} ({chosen - greedy:+.3f})")
