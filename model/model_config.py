"""The model's shape and its special ids: a plain dataclass, importable without torch.

config.json stores it (tt.model.configs reads it back and checks it), tt.model.transformer
builds the network from it, and the quick path of `tt translate` (tt.model.numpy_model)
reads it without loading torch at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from tt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

ACTIVATION_NAMES = ("relu", "silu", "gelu")  # the feed-forward's non-linearities (tt.model.transformer.ACTIVATIONS)


@dataclass
class ModelConfig:
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    n_layers: int = 3  # in the encoder, and again in the decoder
    dropout: float = 0.1  # on embeddings and on each sub-layer's output (the paper's places)
    pre_norm: bool = False  # False: post-LN as in the paper; True: pre-LN
    residual: bool = True  # False: no skip connection around sub-layers (an experiment, not for use)
    tie_embeddings: bool = True  # one matrix for source, target and output (joint vocabulary only)
    max_positions: int = 1024
    # What published Marian models (tt.model.marian) need beyond tt's own choices, the defaults:
    activation: str = "relu"  # the feed-forward's non-linearity: relu | silu (Marian's "swish") | gelu
    output_bias: bool = False  # a bias on the logits (Marian's final_logits_bias)
    scale_embedding: bool = True  # embeddings × √d_model, as the paper (False: × 1, as some Marian configs)
    tie_output: bool = False  # the output projection is the target embedding even when the source's is separate
    pad_id: int = PAD_ID  # the special ids of the vocabulary the model was trained on (see tt.data.tokenizer)
    start_id: int = BOS_ID  # the decoder's first input: tt's <s> (a learned embedding); Marian's pad (a zero one)
    eos_id: int = EOS_ID
