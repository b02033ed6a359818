"""Export to CTranslate2: a tt model folder → a CTranslate2 model directory (fast int8 CPU serving).

    tt model folder → Transformer + tokenizer
                    → ctranslate2 TransformerSpec, filled by name from one table (`LAYER_NAMES`)
                    → ctranslate2's own Converter: validate → optimize (alias tied matrices,
                      quantize; int8 weights in 7 bits, see INT8_WEIGHT_BITS) → model.bin,
                      config.json, shared (or source + target) _vocabulary.json
                    + source.spm, target.spm, README.md
                    → renamed into OUT (built beside it, so OUT is never half written)

What has to line up so that CTranslate2 computes tt's numbers, not Marian's:
- vocabulary: tt's SentencePiece pieces in tt's id order, `<pad>` included (CTranslate2
  pads by length, never by id), so ids mean the same on both sides;
- start: tt decodes from its learned `<s>` embedding (tt.data.tokenizer.BOS_ID), so the
  config names `<s>` as decoder_start_token and start_from_zero_embedding stays off (the
  Marian converter turns it on, because Marian starts from a zero vector);
- positions: the spec carries tt's own sinusoidal table (`model.positions`, sines and
  cosines interleaved), so CTranslate2 does not compute a table of its own layout;
- embeddings scaled by √d_model; LayerNorm ε = 1e-5 (torch's default, which tt uses);
- post-LN or pre-LN (pre-LN adds the two final norms, `encoder_norm` and `final_norm`).
The source is fed as its pieces followed by `</s>`, as tt encodes it (and as converted
Marian models expect).

ctranslate2 is an optional extra: imported only when an export (or `tt bench`'s row) needs it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from tt.data.atomic import atomic_folder, write_atomic
from tt.data.errors import UserError
from tt.data.tokenizer import BOS_ID, UNK_ID, Tokenizer
from tt.model.checkpoint import load_model_folder
from tt.model.transformer import Transformer

QUANTIZATIONS = ("float32", "int8", "int8_float32", "bfloat16")  # what `tt export --quantization` offers
INSTALL_HINT = "pip install 'tt-translator[ct2]'"

# Within one layer: CTranslate2 spec scope ← tt module(s). Several modules are fused by
# rows (CTranslate2 computes self-attention's q, k, v with one matrix, cross-attention's k, v).
LAYER_NAMES = {
    "self_attention/linear_0": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "self_attention/linear_1": ("self_attn.out_proj",),
    "self_attention/layer_norm": ("self_attn_norm",),
    "ffn/linear_0": ("feed_forward.expand",),
    "ffn/linear_1": ("feed_forward.contract",),
    "ffn/layer_norm": ("feed_forward_norm",),
}
DECODER_LAYER_NAMES = {
    **LAYER_NAMES,
    "attention/linear_0": ("cross_attn.q_proj",),
    "attention/linear_1": ("cross_attn.k_proj", "cross_attn.v_proj"),
    "attention/linear_2": ("cross_attn.out_proj",),
    "attention/layer_norm": ("cross_attn_norm",),
}
# Outside the layers. Pre-LN models only have the two final norms (post-LN has none).
MODEL_NAMES = {
    "encoder/embeddings_0": "src_embed",
    "decoder/embeddings": "tgt_embed",
    "decoder/projection": "project",
    "encoder/layer_norm": "encoder_norm",
    "decoder/layer_norm": "final_norm",
}
# tt's feed-forward activation → CTranslate2's name for it (a config without the field is ReLU).
ACTIVATIONS = {"relu": "RELU", "gelu": "GELU", "swish": "SWISH", "silu": "SWISH"}
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, which every tt norm uses
# int8 weights are rounded to 7 bits (±63 per row), not ctranslate2's 8 (±127). On x86 CPUs
# without VNNI (AVX2 only, as this project's machine), CTranslate2's int8 matrix product
# (oneDNN, u8 activations × s8 weights) adds pairs of products in 16 bits, which saturate
# when two neighbouring weights are near ±127: measured on a small tt model, token
# log-probabilities moved by 0.52 nats on average with 8 bits and by 0.01 with 7 bits.
# 7-bit weights cannot saturate (2·255·63 < 2¹⁵) on any CPU and cost one bit of precision.
INT8_WEIGHT_BITS = 7


def require_ctranslate2():
    try:
        import ctranslate2
        import ctranslate2.converters  # noqa: F401
        import ctranslate2.specs  # noqa: F401
    except ImportError:
        raise UserError(f"CTranslate2 export needs the ctranslate2 package: {INSTALL_HINT}") from None
    return ctranslate2


def check_quantization(quantization: str) -> None:
    """The one check of --quantization (`tt export` calls it before any work)."""
    if quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")


# ---- tt → TransformerSpec


def build_spec(model: Transformer, tokenizer: Tokenizer, weight_bits: int = INT8_WEIGHT_BITS):
    """The float32 TransformerSpec of `model`, vocabularies and config set; not yet validated."""
    require_ctranslate2()
    from ctranslate2.specs import common_spec

    config = model.config
    if not config.residual:
        raise UserError("this model was trained with --no-residual, which CTranslate2 has no layer for")
    if config.activation not in ACTIVATIONS:
        raise UserError(f"activation {config.activation!r}: CTranslate2 export knows {', '.join(ACTIVATIONS)}")
    activation = getattr(common_spec.Activation, ACTIVATIONS[config.activation])
    spec = spec_class(weight_bits).from_config(config.n_layers, config.n_heads, pre_norm=config.pre_norm, activation=activation)
    module = model.get_submodule  # by name; a tied embedding answers to each of its names
    for scope, name in MODEL_NAMES.items():
        if isinstance(module(name), nn.Identity):
            continue  # post-LN: no final norms
        set_module(spec, scope, [module(name)])
    for stack, names in (("encoder", LAYER_NAMES), ("decoder", DECODER_LAYER_NAMES)):
        for index in range(config.n_layers):
            for scope, tt_names in names.items():
                set_module(spec, f"{stack}/layer_{index}/{scope}", [module(f"{stack}.{index}.{n}") for n in tt_names])
    positions = tensor(model.positions)  # tt's own table (its layout, its length)
    scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
    for side in (spec.encoder, spec.decoder):
        side.scale_embeddings = scale
        side.position_encodings.encodings = positions
    # Decoding starts from the start token's own embedding row: tt's learned <s>, or for a
    # Marian-style start from <pad>, its all-zero row, the same as start_from_zero_embedding.
    spec.decoder.start_from_zero_embedding = False
    src_pieces = pieces(tokenizer.src)
    tgt_pieces = pieces(tokenizer.tgt)
    spec.register_source_vocabulary(src_pieces)
    spec.register_target_vocabulary(tgt_pieces)
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.config.unk_token = tgt_pieces[UNK_ID]
    spec.config.bos_token = tgt_pieces[BOS_ID]
    spec.config.eos_token = tgt_pieces[config.eos_id]
    spec.config.decoder_start_token = tgt_pieces[config.start_id]
    spec.config.add_source_eos = False  # the caller appends </s>, as for converted Marian models
    return spec


def spec_class(weight_bits: int):
    """ctranslate2's TransformerSpec, except that int8 weights may use fewer than 8 bits."""
    from ctranslate2.specs import model_spec, transformer_spec

    class TtTransformerSpec(transformer_spec.TransformerSpec):
        def optimize(self, quantization=None):
            if quantization not in ("int8", "int8_float32") or weight_bits == 8:
                return super().optimize(quantization)
            top = 2 ** (weight_bits - 1) - 1  # 63 for 7 bits

            def quantize(layer, name, value):
                key = name.rsplit("/", 1)[-1]
                if not hasattr(layer, f"{key}_scale") or not isinstance(value, model_spec.Variable) or value.is_scalar():
                    return  # not a matrix ctranslate2 quantizes: it stays float32, as in its own int8
                weight = value.to("float32").numpy()
                row_max = abs(weight).max(axis=1)
                row_max[row_max == 0] = 1.0
                scale = (top / row_max).astype("float32")  # one per output row, as ctranslate2's own
                quantized = (weight * scale[:, None]).round().astype("int8")
                setattr(layer, key, model_spec.NumpyVariable(quantized))
                setattr(layer, f"{key}_scale", model_spec.NumpyVariable(scale))

            self._alias_variables()  # the tied matrix once, as ctranslate2's optimize does first
            self._visit(quantize)

    return TtTransformerSpec


def set_module(spec, scope: str, modules: list[nn.Module]) -> None:
    """Copy one tt module (or several, fused by rows) into the spec layer at `scope`."""
    from ctranslate2.specs import model_spec

    target = model_spec.index_spec(spec, scope)
    first = modules[0]
    if isinstance(first, nn.Embedding):
        target.weight = tensor(first.weight)
    elif isinstance(first, nn.LayerNorm):
        target.gamma, target.beta = tensor(first.weight), tensor(first.bias)
    elif isinstance(first, nn.Linear):
        target.weight = torch.cat([tensor(m.weight) for m in modules])
        if any(m.bias is not None for m in modules):  # e.g. the output bias of a model with output_bias
            target.bias = torch.cat([tensor(m.bias) if m.bias is not None else torch.zeros(m.out_features) for m in modules])
    else:
        raise AssertionError(f"no CTranslate2 mapping for {type(first).__name__} at {scope}")


def tensor(value: torch.Tensor) -> torch.Tensor:
    # A copy, float32, on the CPU: quantization rewrites the spec's tensors in place, and a
    # tied matrix must reach the spec as equal copies so ctranslate2 aliases them.
    return value.detach().float().cpu().clone().contiguous()


def pieces(processor) -> list[str]:
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


# ---- writing the folder


def write_ct2(
    model: Transformer, tokenizer: Tokenizer, folder: Path, quantization: str, source: str = "", weight_bits: int = INT8_WEIGHT_BITS
) -> None:
    """Write the CTranslate2 model into `folder` (whatever it held is replaced).

    `quantization` is one of QUANTIZATIONS, checked by the caller (check_quantization)."""
    ct2 = require_ctranslate2()

    class TtConverter(ct2.converters.Converter):
        """ctranslate2's own conversion path: validate, optimize (alias + quantize), save."""

        def _load(self):
            return build_spec(model, tokenizer, weight_bits)

    TtConverter().convert(str(folder), quantization=quantization, force=True)  # force: the folder is ours to fill
    write_atomic(folder / "source.spm", tokenizer.src.serialized_model_proto())
    write_atomic(folder / "target.spm", tokenizer.tgt.serialized_model_proto())
    write_atomic(folder / "README.md", folder_readme(quantization, source, ct2.__version__).encode())


def export_ct2(model_folder: Path, out: Path, quantization: str) -> int:
    """`tt export OUT --format ct2`: built in a folder beside OUT, which takes OUT's place
    (an existing OUT, which the caller decided may go, only then). Returns the bytes written."""
    model_folder, out = Path(model_folder), Path(out)
    require_ctranslate2()  # before the model is read: the missing extra is the first thing to say
    model, tokenizer, _ = load_model_folder(model_folder)
    with atomic_folder(out) as building:
        write_ct2(model, tokenizer, building, quantization, source=str(model_folder))
        size = sum(f.stat().st_size for f in building.iterdir())
    return size


def folder_readme(quantization: str, source: str, ct2_version: str) -> str:
    return f"""# CTranslate2 model exported by tt

Exported from `{source or "a tt model"}` with weights in {quantization} (ctranslate2 {ct2_version}).

- `model.bin`, `config.json`, `*vocabulary.json`: the CTranslate2 model. The vocabulary is
  tt's SentencePiece pieces in tt's id order; decoding starts from `<s>` (config.json's
  decoder_start_token) and ends at `</s>`.
- `source.spm`, `target.spm`: tt's SentencePiece models (the same model twice when the
  vocabulary is joint).

How to tokenize, as tt does: normalize the text (Unicode NFKC, runs of whitespace to one
space, ends trimmed), split it into pieces with `source.spm`, and append `</s>`. Join the
output pieces with `target.spm`.

```python
import unicodedata

import ctranslate2
import sentencepiece as spm

folder = "THIS_FOLDER"
translator = ctranslate2.Translator(folder, device="cpu")
source = spm.SentencePieceProcessor(model_file=f"{{folder}}/source.spm")
target = spm.SentencePieceProcessor(model_file=f"{{folder}}/target.spm")

def pieces(text):
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return source.encode(text, out_type=str) + ["</s>"]

results = translator.translate_batch([pieces("我们明天见。")], beam_size=1)
print(target.decode(results[0].hypotheses[0]))
```
"""
