"""The Hugging Face MarianMT format, both ways: tt's names, config and weights ↔ theirs.

A Marian folder (what `MarianMTModel.save_pretrained` and `MarianTokenizer.save_pretrained`
write, and what Helsinki-NLP publishes):

    config.json             model_type "marian", d_model, layers, heads, ids …
    generation_config.json  how `generate` decodes: start token, banned ids, beams
    model.safetensors       weights under Hugging Face's names (NAMES below)
    source.spm, target.spm  SentencePiece models that cut text into pieces
    vocab.json              piece → id (target_vocab.json too with separate vocabularies)
    tokenizer_config.json   MarianTokenizer's settings

The architecture is tt's (post-LN, sinusoidal positions, embeddings × √d_model, tied
embeddings); the differences and how each is bridged exactly:

- positions: Marian's table puts the sines in the first half of the dimensions and the
  cosines in the second; tt interleaves them. Dimensions of the residual stream are only
  labels, so the model dimension is reordered (`HALVES`) in every tensor that reads or
  writes the stream: embeddings, attention's input and output projections, feed-forward,
  LayerNorms. LayerNorm and dot products do not care about the order, so the two models
  compute the same numbers (up to float summation order), and tt needs no second table.
- the start token: Marian starts decoding from the pad id (whose embedding row is zero);
  tt from a learned <s>. Both are "the row of the start id": ModelConfig.start_id, written
  as decoder_start_token_id (transformers takes any id there, not only the pad's).
- feed-forward activation (swish/SiLU, ReLU, GELU), the output bias (final_logits_bias),
  scale_embedding and tying are ModelConfig options; Marian's LayerNorm eps is torch's
  default, 1e-5, as tt's.
- ids: Marian numbers pieces by vocab.json, not by SentencePiece (tt.data.tokenizer.MappedTokenizer).
"""

from __future__ import annotations

import re
import torch

from tt.data.errors import UserError
from tt.model.transformer import ModelConfig, Transformer

# ---- the name table: tt's name ↔ Hugging Face's, read both ways ({i}: the layer)

LAYER_NAMES = [
    ("encoder.{i}.self_attn.", "model.encoder.layers.{i}.self_attn."),  # q_proj, k_proj, v_proj, out_proj alike
    ("encoder.{i}.self_attn_norm.", "model.encoder.layers.{i}.self_attn_layer_norm."),
    ("encoder.{i}.feed_forward.expand.", "model.encoder.layers.{i}.fc1."),
    ("encoder.{i}.feed_forward.contract.", "model.encoder.layers.{i}.fc2."),
    ("encoder.{i}.feed_forward_norm.", "model.encoder.layers.{i}.final_layer_norm."),
    ("decoder.{i}.self_attn.", "model.decoder.layers.{i}.self_attn."),
    ("decoder.{i}.self_attn_norm.", "model.decoder.layers.{i}.self_attn_layer_norm."),
    ("decoder.{i}.cross_attn.", "model.decoder.layers.{i}.encoder_attn."),
    ("decoder.{i}.cross_attn_norm.", "model.decoder.layers.{i}.encoder_attn_layer_norm."),
    ("decoder.{i}.feed_forward.expand.", "model.decoder.layers.{i}.fc1."),
    ("decoder.{i}.feed_forward.contract.", "model.decoder.layers.{i}.fc2."),
    ("decoder.{i}.feed_forward_norm.", "model.decoder.layers.{i}.final_layer_norm."),
]
OUTPUT_BIAS = ("project.bias", "final_logits_bias")  # (V,) in tt, (1, V) in Marian


def embedding_names(shared: bool, tied: bool) -> dict[str, tuple[str, ...]]:
    """tt's embedding and output matrices → the Marian names that may hold them, the one
    transformers writes first (a tied matrix is written once). A file from an older
    transformers may hold a shared matrix only as model.shared.weight: read it there too."""
    if shared and tied:  # one matrix for all three
        names = ("model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")
        return dict.fromkeys(("src_embed.weight", "tgt_embed.weight", "project.weight"), names)
    decoder = ("model.decoder.embed_tokens.weight", "model.shared.weight")
    return {
        "src_embed.weight": ("model.encoder.embed_tokens.weight", "model.shared.weight"),
        "tgt_embed.weight": decoder,
        "project.weight": decoder if tied else ("lm_head.weight",),
    }


def _pattern(prefix: str) -> re.Pattern:
    return re.compile(re.escape(prefix).replace(re.escape("{i}"), r"(\d+)"))


def _rename(name: str, pairs: list[tuple[str, str]]) -> str | None:
    for source, target in pairs:
        match = _pattern(source).match(name)
        if match:
            return target.replace("{i}", match.group(1)) + name[match.end():]
    return None


def hf_name(tt_name: str) -> str | None:
    return _rename(tt_name, LAYER_NAMES)


def tt_name(hf_name: str) -> str | None:
    return _rename(hf_name, [(theirs, ours) for ours, theirs in LAYER_NAMES])


# ---- the model dimension's order: tt interleaves sin/cos, Marian puts them in halves

# Which axis of a tensor runs along the residual stream (d_model): the one reordered.
# q/k/v projections read the stream (axis 1) and write head space; out_proj the reverse.
STREAM_AXIS = {
    "embed.weight": 1, "project.weight": 1, "q_proj.weight": 1, "k_proj.weight": 1, "v_proj.weight": 1,
    "out_proj.weight": 0, "out_proj.bias": 0, "expand.weight": 1, "contract.weight": 0, "contract.bias": 0,
    "norm.weight": 0, "norm.bias": 0,
}


def halves(d_model: int) -> torch.Tensor:
    """Marian's dimension j is tt's dimension HALVES[j]: tt's sines (even) first, then cosines (odd)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def stream_axis(name: str) -> int | None:
    """name: tt's (decoder.0.self_attn_norm.weight, src_embed.weight, …)."""
    for ending, axis in STREAM_AXIS.items():
        if name.endswith(ending):
            return axis
    return None


def to_marian_order(name: str, tensor: torch.Tensor, d_model: int) -> torch.Tensor:
    axis = stream_axis(name)
    return tensor if axis is None else tensor.index_select(axis, halves(d_model))


def to_tt_order(name: str, tensor: torch.Tensor, d_model: int) -> torch.Tensor:
    axis = stream_axis(name)
    return tensor if axis is None else tensor.index_select(axis, torch.argsort(halves(d_model)))


# ---- weights both ways


def marian_tensors(model: Transformer) -> dict[str, torch.Tensor]:
    """tt's weights under Marian's names and in its dimension order, float32, one copy per matrix."""
    config = model.config
    shared = model.src_embed is model.tgt_embed
    tied = model.project.weight is model.tgt_embed.weight
    out: dict[str, torch.Tensor] = {}
    written: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name in embedding_names(shared, tied):
            if id(tensor) in written:
                continue
            written.add(id(tensor))
            target = embedding_names(shared, tied)[name][0]
        elif name == OUTPUT_BIAS[0]:
            out[OUTPUT_BIAS[1]] = tensor.detach().float()[None].clone()
            continue
        else:
            target = hf_name(name)
            assert target is not None, f"no Marian name for {name}"  # pre-LN models are refused before
        out[target] = to_marian_order(name, tensor.detach().float(), config.d_model).contiguous()
    out.setdefault(OUTPUT_BIAS[1], torch.zeros(1, config.tgt_vocab_size))
    return out


def tt_tensors(read, config: ModelConfig, shared: bool, tied: bool, names: set[str]) -> dict[str, torch.Tensor]:
    """The state dict of Transformer(config) from a Marian file: read(name) gives its tensor."""
    with torch.device("meta"):
        skeleton = Transformer(config)
    state = {}
    for name in skeleton.state_dict():
        if name == OUTPUT_BIAS[0]:
            state[name] = read(OUTPUT_BIAS[1]).float().reshape(-1)
            continue
        source = next(n for n in source_names(name, shared, tied) if n in names)
        state[name] = to_tt_order(name, read(source).float(), config.d_model)
    return state


def source_names(name: str, shared: bool, tied: bool) -> tuple[str, ...]:
    """Where a Marian file may hold tt's tensor `name`."""
    embeddings = embedding_names(shared, tied)
    if name in embeddings:
        return embeddings[name]
    if name == OUTPUT_BIAS[0]:
        return (OUTPUT_BIAS[1],)
    return (hf_name(name),)


def expected_shapes(config: ModelConfig, shared: bool, tied: bool) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """tt's tensor name → (its shape in a Marian file, the names it may be found under): no memory allocated."""
    with torch.device("meta"):
        skeleton = Transformer(config)
    shapes = {}
    for name, tensor in skeleton.state_dict().items():
        shape = (1, *tensor.shape) if name == OUTPUT_BIAS[0] else tuple(tensor.shape)
        shapes[name] = (shape, source_names(name, shared, tied))
    return shapes


# ---- config both ways

ACTIVATION_NAMES = {"relu": "relu", "swish": "silu", "silu": "silu", "gelu": "gelu"}  # Marian's → tt's


def marian_config(config: ModelConfig) -> dict:
    """config.json for MarianMTModel, every key written out (MarianConfig's defaults describe a big model)."""
    shared = config.tie_embeddings and config.src_vocab_size == config.tgt_vocab_size
    return {
        "architectures": ["MarianMTModel"], "model_type": "marian",
        "vocab_size": config.src_vocab_size, "decoder_vocab_size": config.tgt_vocab_size,
        "d_model": config.d_model, "max_position_embeddings": config.max_positions,
        "encoder_layers": config.n_layers, "decoder_layers": config.n_layers,
        "encoder_attention_heads": config.n_heads, "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.d_ff, "decoder_ffn_dim": config.d_ff,
        "activation_function": {"silu": "swish"}.get(config.activation, config.activation),
        "scale_embedding": config.scale_embedding,
        "share_encoder_decoder_embeddings": shared, "tie_word_embeddings": shared or config.tie_output,
        "pad_token_id": config.pad_id, "eos_token_id": config.eos_id, "decoder_start_token_id": config.start_id,
        "bos_token_id": None, "forced_eos_token_id": None,
        "dropout": config.dropout, "attention_dropout": 0.0, "activation_dropout": 0.0,
        "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0, "init_std": 0.02,
        "is_encoder_decoder": True, "is_decoder": False, "use_cache": True, "dtype": "float32",
    }


def generation_config(config: ModelConfig) -> dict:
    """Greedy by default, as `tt translate`; never the pad or start token, as tt's decoding."""
    return {
        "decoder_start_token_id": config.start_id, "pad_token_id": config.pad_id, "eos_token_id": config.eos_id,
        "bos_token_id": None, "forced_eos_token_id": None,
        "bad_words_ids": [[i] for i in sorted({config.pad_id, config.start_id})],
        "max_length": config.max_positions, "num_beams": 1, "do_sample": False,
    }


def model_config(values: dict, where: str) -> tuple[ModelConfig, bool, bool]:
    """tt's config for a Marian config.json, with (shared, tied). Absent keys take MarianConfig's defaults."""

    def get(key: str, kind: type, default):
        value = values.get(key, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UserError(f"{where}: {key} = {str(value)[:40]} is not {'an integer' if kind is int else kind.__name__}")
        return value

    d_model = get("d_model", int, 1024)
    layers, decoder_layers = get("encoder_layers", int, 12), get("decoder_layers", int, 12)
    heads, decoder_heads = get("encoder_attention_heads", int, 16), get("decoder_attention_heads", int, 16)
    d_ff, decoder_ff = get("encoder_ffn_dim", int, 4096), get("decoder_ffn_dim", int, 4096)
    if (layers, heads, d_ff) != (decoder_layers, decoder_heads, decoder_ff):
        raise UserError(
            f"{where}: the encoder (layers {layers}, heads {heads}, d_ff {d_ff}) and decoder (layers {decoder_layers}, "
            f"heads {decoder_heads}, d_ff {decoder_ff}) differ in shape; tt's models have one shape for both"
        )
    activation = get("activation_function", str, "gelu")
    if activation not in ACTIVATION_NAMES:
        raise UserError(f"{where}: activation_function {activation!r} is not one tt has ({', '.join(ACTIVATION_NAMES)})")
    vocab = get("vocab_size", int, 58101)
    shared = get("share_encoder_decoder_embeddings", bool, True)
    tied = get("tie_word_embeddings", bool, True)
    decoder_vocab = vocab if shared else get("decoder_vocab_size", (int, type(None)), None) or vocab
    dropout = values.get("dropout", 0.1)
    config = ModelConfig(
        src_vocab_size=vocab, tgt_vocab_size=decoder_vocab, d_model=d_model, n_heads=heads, d_ff=d_ff,
        n_layers=layers, max_positions=get("max_position_embeddings", int, 1024),
        dropout=float(dropout) if isinstance(dropout, (int, float)) and 0 <= dropout < 1 else 0.1,
        activation=ACTIVATION_NAMES[activation], scale_embedding=get("scale_embedding", bool, False),
        output_bias=True, tie_embeddings=shared and tied, tie_output=tied and not shared,
        pad_id=get("pad_token_id", int, 58100), eos_id=get("eos_token_id", int, 0),
        start_id=get("decoder_start_token_id", int, 58100),
    )
    return config, shared, tied


def check_exportable(config: ModelConfig, where: str) -> None:
    """A UserError for what Marian's code cannot compute."""
    if config.pre_norm:
        raise UserError(f"{where}: a pre-LN model (--pre-norm) has no Marian form: MarianMTModel is post-LN")
    if not config.residual:
        raise UserError(f"{where}: a model without residual connections has no Marian form")
