"""What training records about itself: probe sentences and the flow of the gradient.

Probes. A probe is a (source, reference) pair watched while the model learns it. At step 0
(before any update), at every metrics line and at the last step, each probe gives one line
of metrics.jsonl:

    {"step": N, "probe": SOURCE, "reference": REFERENCE,
     "tokens": [{"token": PIECE, "prob": P}, …],    teacher-forced p of each reference piece, </s> last
     "cross_entropy": X,                             mean −ln p over those pieces, in nats
     "translation": TEXT}                            greedy decoding of SOURCE

The numbers are those `tt score` and `tt translate` give for the weights of that step (the
same functions: `force_decode`, `greedy_decode`, float32, no dropout). Probing draws no
random numbers and changes no weight, so a run with probes trains exactly as one without.

Gradient flow. On a metrics line, `grad_norm` holds the L2 norm of the gradient of each part
of the model (before clipping: what backpropagation delivered) and `update_ratio` the size
of the update the optimizer then applied, relative to the weights: ‖Δw‖ / ‖w‖ per part.
A tied embedding matrix is one tensor with one gradient (the sum of what reaches it as the
input embedding and as the output layer): it is counted in both "embeddings" and "output".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tt.data.corpus import CorpusSpec, check_spec, read_pairs
from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.data.tokenizer import Tokenizer
from tt.model.decode import greedy_decode
from tt.model.forced import force_decode
from tt.model.transformer import Transformer

# The demo's probe: the sentence every tt user first watches the model learn.
DEMO_PROBE = ("你好世界!", "Hello World!")


@dataclass(frozen=True)
class Probe:
    source: str
    reference: str


def parse_probe(text: str, where: str) -> Probe:
    """"SOURCE<TAB>REFERENCE" → Probe; `where` names the option or file:line for the error."""
    parts = text.split("\t")
    if len(parts) != 2 or not normalize(parts[0]) or not normalize(parts[1]):
        raise UserError(f"{where}: a probe is SOURCE<TAB>REFERENCE, both non-empty (got {text[:60]!r})")
    return Probe(parts[0], parts[1])


def gather_probes(texts: list[str] | None, file: str | None) -> list[Probe]:
    """--probe "SRC<TAB>REF" (each), then the pairs of --probe-file (read as a corpus is: TSV or JSONL)."""
    probes = [parse_probe(text, "--probe") for text in texts or []]
    if file:
        spec = CorpusSpec(path=str(file))
        check_spec(spec)
        for pair in read_pairs(spec):
            if not normalize(pair.src) or not normalize(pair.tgt):
                raise UserError(f"{pair.where}: a probe needs a source and a reference")
            probes.append(Probe(pair.src, pair.tgt))
    return probes


def recorded_probes(value, where: str) -> list[Probe]:
    """The probes config.json recorded ([[source, reference], …]), for --resume."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(text, str) for text in item) for item in value
    ):
        raise UserError(f"{where}: probes must be a list of [source, reference] pairs")
    return [Probe(source, reference) for source, reference in value]


class ProbeSet:
    """Probes encoded once, as `tt score` encodes a pair; `record` gives their metrics lines."""

    def __init__(self, probes: list[Probe], tokenizer: Tokenizer, max_positions: int):
        self.probes = probes
        self.tokenizer = tokenizer
        self.src_ids = [tokenizer.encode_src(normalize(p.source)) for p in probes]
        self.tgt_ids = [tokenizer.encode_tgt(normalize(p.reference)) for p in probes]
        for probe, src, tgt in zip(probes, self.src_ids, self.tgt_ids):
            if max(len(src), len(tgt)) > max_positions:
                raise UserError(f"--probe {probe.source!r}: longer than the model's {max_positions} positions")
        self.last_step: int | None = None  # the step last recorded

    def __bool__(self) -> bool:
        return bool(self.probes)

    @torch.no_grad()
    def record(self, model: Transformer, step: int) -> list[dict]:
        was_training = model.training
        try:
            forced = force_decode(model, self.src_ids, self.tgt_ids)
            greedy = greedy_decode(model, self.src_ids)
        finally:
            model.train(was_training)
        self.last_step = step
        piece = self.tokenizer.tgt_piece
        return [
            {
                "step": step,
                "probe": probe.source,
                "reference": probe.reference,
                "tokens": [{"token": piece(t), "prob": math.exp(lp)} for t, lp in zip(result.tokens, result.token_log_probs)],
                "cross_entropy": result.cross_entropy,
                "translation": self.tokenizer.decode_tgt(hypothesis.tokens),
            }
            for probe, result, hypothesis in zip(self.probes, forced, greedy)
        ]


def model_parts(model: Transformer) -> dict[str, list[torch.nn.Parameter]]:
    """Part name → its parameters: embeddings, encoder.0 …, decoder.0 …, output.

    A stack's closing LayerNorm (pre-LN) belongs to its last layer's part, since it acts on
    that layer's output; the final norm before the projection belongs to the output layer.
    """
    n = len(model.encoder)
    parts: dict[str, list[torch.nn.Parameter]] = {"embeddings": []}
    for name, param in model.named_parameters(remove_duplicate=False):
        head = name.split(".")[0]
        if head in ("src_embed", "tgt_embed"):
            part = "embeddings"
        elif head in ("encoder", "decoder"):
            part = ".".join(name.split(".")[:2])
        elif head == "encoder_norm":
            part = f"encoder.{n - 1}"
        else:  # final_norm, project
            part = "output"
        group = parts.setdefault(part, [])
        if not any(param is p for p in group):
            group.append(param)
    return parts


def _norm(tensors: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.float().pow(2).sum()) for t in tensors))


class GradientFlow:
    """One update, measured: the gradient reaching each part, and the update it received.

        flow.before_update()   after backward, before clipping
        optimizer.step()
        flow.after_update()
        flow.metrics()              {"grad_norm": {…}, "update_ratio": {…}}
    """

    def __init__(self, model: Transformer):
        self.parts = model_parts(model)
        self.grad_norm: dict[str, float] = {}
        self.update_ratio: dict[str, float] = {}
        self.before: dict[str, list[torch.Tensor]] = {}

    def before_update(self) -> None:
        for name, params in self.parts.items():
            self.grad_norm[name] = _norm([p.grad for p in params if p.grad is not None])
            self.before[name] = [p.detach().clone() for p in params]

    def after_update(self) -> None:
        for name, params in self.parts.items():
            change = _norm([p.detach() - old for p, old in zip(params, self.before[name])])
            self.update_ratio[name] = change / max(_norm(self.before[name]), 1e-12)
        self.before = {}

    def metrics(self) -> dict:
        return {"grad_norm": dict(self.grad_norm), "update_ratio": dict(self.update_ratio)} if self.grad_norm else {}
