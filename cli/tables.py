"""Rich renderings of what the decoder did: one row per step, probabilities and alternatives,
and the logit lens (what each decoder layer would already have said).

Renderers return rich objects; the command (`tt.cli.translate_command`) prints them.
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from tt.cli.consoles import printable
from tt.model.translator import Translation, Translator, entropy, lens_layers, top_k


def confidence_style(prob: float) -> str:
    if prob >= 0.8:
        return "green"
    if prob >= 0.4:
        return "yellow"
    return "red"


def probability_table(result: Translation, translator: Translator, k: int) -> Table:
    # Text, not a str: a bracket in the user's text must not be read as rich markup.
    table = Table(title=Text(printable(f"{result.source} → {result.translation}")), title_justify="left", show_lines=False)
    table.add_column("step", justify="right")
    table.add_column("token")
    table.add_column("p", justify="right")
    table.add_column("−ln p", justify="right")
    table.add_column("entropy", justify="right")
    table.add_column(f"top {k}")
    hyp = result.hypothesis
    if hyp is None:
        return table
    for position, (token, log_p, step) in enumerate(zip(hyp.tokens, hyp.token_log_probs, hyp.steps), start=1):
        prob = math.exp(log_p)
        alternatives = Text()
        for rank, (other, other_p) in enumerate(top_k(step.log_probs, k)):
            if rank:
                alternatives.append("  ")
            alternatives.append(translator.piece(other), style="bold" if other == token else "")
            alternatives.append(f" {other_p:.3f}", style=confidence_style(other_p))
        table.add_row(
            str(position),
            Text(translator.piece(token), style="bold"),
            Text(f"{prob:.4f}", style=confidence_style(prob)),
            f"{-log_p:.3f}",
            f"{entropy(step.log_probs):.3f}",
            alternatives,
        )
    total = hyp.log_prob
    n = max(len(hyp.tokens), 1)
    table.caption = f"log p = {total:.3f}   mean −ln p = {-total / n:.3f}   perplexity = {math.exp(-total / n):.3f}"
    return table


def lens_table(result: Translation, translator: Translator) -> Table:
    """Per step: the chosen token, then per decoder layer its own top token and the chosen token's p."""
    table = Table(title=Text(printable(f"logit lens: {result.source} → {result.translation}")), title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("token")
    hyp = result.hypothesis
    if hyp is None or not hyp.steps or not hyp.steps[0].layer_log_probs:
        return table
    for number in range(1, len(hyp.steps[0].layer_log_probs) + 1):
        table.add_column(f"layer {number}")
    for position, (token, step) in enumerate(zip(hyp.tokens, hyp.steps), start=1):
        chosen = translator.piece(token)
        cells = []
        for layer in lens_layers(step, token, translator):
            cell = Text(layer["token"], style="bold" if layer["token"] == chosen else "")
            cell.append(f" {layer['prob']:.3f}", style=confidence_style(layer["prob"]))
            cells.append(cell)
        table.add_row(str(position), Text(chosen, style="bold"), *cells)
    table.caption = "each layer: its top token, then its probability of the chosen token"
    table.min_width = len(table.caption)  # a caption wider than the table would wrap mid-phrase
    return table
