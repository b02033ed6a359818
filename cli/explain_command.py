"""`tt explain`: one sentence pair, one target position, every number of the loss and the residual stream.

    logits z → softmax p = e^z / Σ e^z → one-hot target y → cross-entropy −ln p(y)
    label smoothing ε: q = (1−ε)·onehot(y) + ε/V → H(q, p) = KL(q‖p) + H(q)

The loss numbers come from `tt.model.loss.label_smoothed_loss`, the very function training
calls, and are shown beside the textbook definitions (`dense_loss`) so the reader sees that
they agree. The residual stream is traced through each decoder sub-layer at that position:
the size (L2 norm) of the stream x, of what the sub-layer adds f(x), of their sum, and of the
stream after LayerNorm; and backward (`tt.model.backward`): the gradient of −ln p(target)
reaching each sub-layer's input through the residual path and through f(x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from rich.console import Group
from rich.table import Table
from rich.text import Text

from tt.data.batches import make_batch
from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.data.tokenizer import Tokenizer
from tt.model.attention import padding_allowed
from tt.model.backward import GradientPaths, backward_stream
from tt.model.recording import recording
from tt.model.loss import dense_loss, label_smoothed_loss, smoothed_targets
from tt.model.transformer import Transformer


@dataclass
class Explanation:
    position: int  # 1-based target position
    target_piece: str
    pieces: list[str]  # the whole reference, </s> included
    top: list[tuple[str, float, float]]  # (piece, logit, prob), most probable first
    target_logit: float
    target_prob: float
    target_rank: int
    smoothing: float
    vocab_size: int
    loss: dict[str, float]  # from label_smoothed_loss
    definitions: dict[str, float]  # from dense_loss, the same quantities by definition
    residual: list[tuple[str, float, float, float, float]]  # (sub-layer, |x|, |f(x)|, |x+f(x)|, |out|)
    gradients: list[GradientPaths]  # the backward stream, every sub-layer, input side first


def explain(model: Transformer, tokenizer: Tokenizer, source: str, reference: str, position: int, smoothing: float, top: int = 5) -> Explanation:
    src_ids = tokenizer.encode_src(normalize(source))
    tgt_ids = tokenizer.encode_tgt(normalize(reference))
    limit = model.config.max_positions  # the encoder's and the decoder's positions
    for option, ids in (("--src", src_ids), ("--ref", tgt_ids)):
        if len(ids) > limit:
            raise UserError(f"{option}: {len(ids):,} pieces, more than the model's {limit:,} positions")
    if not 1 <= position <= len(tgt_ids):
        raise UserError(f"--position {position}: the reference has {len(tgt_ids)} positions (</s> included)")
    model.eval()
    batch = make_batch([src_ids], [tgt_ids], start_id=model.config.start_id, pad_id=model.config.pad_id)
    with torch.no_grad(), recording(model, residual=True) as seen:
        memory = model.encode(batch.src, batch.src_pad_mask)
        hidden = model.decode(batch.tgt_in, memory, padding_allowed(batch.src_pad_mask))
        index = position - 1
        logits = model.project(model.final_norm(hidden[0, index])).float()  # (V,): before the softmax
    log_probs = logits.log_softmax(-1)
    target = tgt_ids[index]
    parts = label_smoothed_loss(log_probs[None], torch.tensor([target]), smoothing, model.config.pad_id)
    q = smoothed_targets(torch.tensor(target), log_probs.shape[-1], smoothing)
    cross_entropy, entropy, kl = dense_loss(log_probs, q)
    values, ids = log_probs.topk(top)
    return Explanation(
        position=position,
        target_piece=tokenizer.tgt_piece(target),
        pieces=[tokenizer.tgt_piece(i) for i in tgt_ids],
        top=[(tokenizer.tgt_piece(int(i)), float(logits[i]), math.exp(float(v))) for v, i in zip(values, ids)],
        target_logit=float(logits[target]),
        target_prob=math.exp(float(log_probs[target])),
        target_rank=int((log_probs > log_probs[target]).sum()) + 1,
        smoothing=smoothing,
        vocab_size=log_probs.shape[-1],
        loss={
            "cross_entropy": float(parts.cross_entropy),
            "kl": float(parts.kl),
            "entropy": float(parts.entropy),
            "nll": float(parts.nll),
        },
        definitions={"cross_entropy": float(cross_entropy), "kl": float(kl), "entropy": float(entropy)},
        residual=[
            (view.name, *(float(v[0, index].norm()) for v in (view.x, view.fx, view.total, view.out)))
            for view in seen.residual
            if view.name.startswith("decoder.")
        ],
        gradients=backward_stream(model, batch, index, target),
    )


def explanation_view(e: Explanation) -> Group:
    words = Text()
    for i, piece in enumerate(e.pieces, start=1):
        # Brackets as well as the style: in a pipe or a file the style is gone, the brackets stay.
        words.append(f"[{piece}]" if i == e.position else piece, style="bold reverse" if i == e.position else "")
        words.append(" ")
    softmax = Table(title="logits → softmax (the most probable entries)", title_justify="left")
    for column in ("piece", "logit z", "p = e^z / Σ e^z", "target"):
        softmax.add_column(column, justify="left" if column == "piece" else "right")
    for piece, logit, prob in e.top:
        softmax.add_row(piece, f"{logit:.3f}", f"{prob:.4f}", "1" if piece == e.target_piece else "0")
    if e.target_piece not in [piece for piece, _, _ in e.top]:
        softmax.add_row(f"{e.target_piece} (rank {e.target_rank})", f"{e.target_logit:.3f}", f"{e.target_prob:.4f}", "1")

    eps, V = e.smoothing, e.vocab_size
    loss = Table(title="the loss at this position, in nats", title_justify="left", show_header=True)
    loss.add_column("quantity")
    loss.add_column("formula")
    loss.add_column("training's function", justify="right")
    loss.add_column("by definition", justify="right")
    loss.add_row("cross-entropy, one-hot target", "−ln p(target)", f"{e.loss['nll']:.4f}", f"{-math.log(e.target_prob):.4f}")
    loss.add_row(f"smoothed target q (ε = {eps:g})", f"(1−ε) on the target + ε/V = {eps / V:.2e} on each of V = {V:,}", "", f"q(target) = {1 - eps + eps / V:.4f}")
    loss.add_row("cross-entropy H(q, p)", "−Σ q ln p", f"{e.loss['cross_entropy']:.4f}", f"{e.definitions['cross_entropy']:.4f}")
    loss.add_row("entropy H(q)", "−Σ q ln q", f"{e.loss['entropy']:.4f}", f"{e.definitions['entropy']:.4f}")
    loss.add_row("KL(q‖p)", "Σ q ln(q/p)", f"{e.loss['kl']:.4f}", f"{e.definitions['kl']:.4f}")
    identity = Text(
        f"H(q, p) = KL(q‖p) + H(q):  {e.loss['cross_entropy']:.4f} = {e.loss['kl']:.4f} + {e.loss['entropy']:.4f}"
        + ("   (with ε = 0, q is one-hot: H(q) = 0 and all three equal −ln p)" if eps == 0 else "")
    )

    stream = Table(title=f"the residual stream at position {e.position}, decoder sub-layers (L2 norms)", title_justify="left")
    for column in ("sub-layer", "|x|", "|f(x)|", "|x + f(x)|", "|out|"):
        stream.add_column(column, justify="left" if column == "sub-layer" else "right")
    for name, x, fx, total, out in e.residual:
        _, layer, sublayer = name.split(".")  # "decoder.0.self-attention"
        stream.add_row(f"layer {int(layer) + 1} {sublayer}", f"{x:.2f}", f"{fx:.2f}", f"{total:.2f}", f"{out:.2f}")
    note = Text(
        "x is the stream coming in, f(x) what the sub-layer computes from it; the residual connection "
        "adds them, so f(x) only has to describe a change. |out| is after LayerNorm (post-LN: of the sum; "
        "pre-LN: the sum itself, the norm was applied to f's input).",
        style="dim",
    )
    backward = Table(
        title=f"the backward stream: ‖∂(−ln p(target))/∂x‖ at each sub-layer's input (decoder: position {e.position}; encoder: all source positions)",
        title_justify="left",
    )
    for column in ("sub-layer", "through the residual path", "through f(x)", "in all"):
        backward.add_column(column, justify="left" if column == "sub-layer" else "right")
    for paths in reversed(e.gradients):  # in the order backpropagation visits them
        stack, layer, sublayer = paths.name.split(".")
        backward.add_row(f"{stack} layer {int(layer) + 1} {sublayer}", f"{paths.via_residual:.2e}", f"{paths.via_f:.2e}", f"{paths.total:.2e}")
    backward_note = Text(
        "Read from the top: the gradient of the loss flows from the output back to the input. At each sum "
        "skip(x) + f(x) it splits: the residual path hands it down unchanged, f(x) passes it through its "
        "Jacobian. Without residual connections (--no-residual) only the f(x) path is left.",
        style="dim",
    )
    return Group(words, softmax, loss, identity, stream, note, backward, backward_note)
