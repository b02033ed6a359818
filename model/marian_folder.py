"""A Hugging Face Marian folder on disk: read into tt, or written from a tt model.

Reading is as careful as with tt's own folders (tt.model.checkpoint): only JSON,
SentencePiece and safetensors are opened (a folder with only pytorch_model.bin, a pickle,
is refused); config.json is checked against tt's size limits and the file's tensor shapes
against the config before the model's memory is allocated. transformers is not needed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from tt.data.errors import UserError
from tt.data.spm_normalizer import with_nfkc
from tt.data.tokenizer import MappedTokenizer, Tokenizer, load_sentencepiece
from tt.model.model_record import read_json
from tt.model.configs import check_model_config
from tt.model.marian import expected_shapes, generation_config, marian_config, marian_tensors, model_config, tt_tensors
from tt.model.transformer import Transformer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER_CONFIG = "tokenizer_config.json"
PICKLES = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
MAX_VOCAB_BYTES = 64 << 20  # a vocab.json of a million pieces is about 30 MB
SPECIAL_PIECES = {"pad": "<pad>", "unk": "<unk>", "eos": "</s>"}  # MarianTokenizer's defaults


def is_marian_folder(folder: Path) -> bool:
    """config.json says model_type "marian" (tt's own config.json has no model_type)."""
    path = folder / CONFIG
    if not path.is_file():
        return False
    try:
        return read_json(path).get("model_type") == "marian"
    except UserError:
        return False


def load_marian_folder(folder: Path) -> tuple[Transformer, MappedTokenizer, dict]:
    """The model in eval mode, its tokenizer, and a record of the folder for `tt info`."""
    values = read_json(folder / CONFIG)
    where = str(folder / CONFIG)
    weights = folder / WEIGHTS
    if not weights.is_file():
        refuse_missing_weights(folder)
    config, shared, tied = model_config(values, where)
    check_model_config(config, where)
    tokenizer = read_marian_tokenizer(folder)
    for name, ours, theirs in (("pad", tokenizer.pad_id, config.pad_id), ("eos", tokenizer.eos_id, config.eos_id)):
        if ours != theirs:
            raise UserError(f"{where}: {name}_token_id is {theirs}, but vocab.json gives {SPECIAL_PIECES[name]} the id {ours}")
    if tokenizer.src_vocab_size > config.src_vocab_size or tokenizer.tgt_vocab_size > config.tgt_vocab_size:
        raise UserError(
            f"{folder}: vocab.json has ids up to {max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) - 1}, "
            f"beyond the model's {config.src_vocab_size}/{config.tgt_vocab_size} embeddings"
        )
    names = check_marian_shapes(weights, config, shared, tied)
    model = Transformer(config)
    try:
        with safe_open(str(weights), "pt") as handle:
            model.load_state_dict(tt_tensors(handle.get_tensor, config, shared, tied, names))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise UserError(f"{weights}: cannot load weights ({err})") from None
    for name, tensor in model.state_dict().items():  # a stranger's weights carry no checksum of ours
        if not torch.isfinite(tensor).all():
            raise UserError(f"{weights}: the weights hold NaN or infinite values (tt's {name})")
    model.eval()
    record = {
        "format": "Hugging Face Marian",
        "model": asdict(config),
        "marian": {key: values[key] for key in ("activation_function", "share_encoder_decoder_embeddings", "tie_word_embeddings") if key in values},
        "tokenizer": {"vocabulary": len(tokenizer.src_ids), "separate_vocabs": tokenizer.src_ids is not tokenizer.tgt_ids},
    }
    return model, tokenizer, record


def refuse_missing_weights(folder: Path) -> None:
    pickles = [name for name in PICKLES if (folder / name).exists()]
    if pickles:
        raise UserError(
            f"{folder}: the weights are only in {pickles[0]}, which tt does not load (pickle can run code); "
            f"download model.safetensors (`huggingface-cli download MODEL_ID model.safetensors`) or convert once with "
            f"transformers: MarianMTModel.from_pretrained(DIR).save_pretrained(DIR)"
        )
    if (folder / f"{WEIGHTS}.index.json").exists():
        raise UserError(f"{folder}: the weights are split over several files; tt reads one {WEIGHTS}")
    raise UserError(f"{folder}: no {WEIGHTS} here")


def check_marian_shapes(path: Path, config, shared: bool, tied: bool) -> set[str]:
    """Every tensor the config implies is in the file, with its shape; the file's names are returned."""
    try:
        with safe_open(str(path), "pt") as handle:
            found = {name: handle.get_slice(name) for name in handle.keys()}
            shapes = {name: tuple(part.get_shape()) for name, part in found.items()}
            dtypes = {name: part.get_dtype() for name, part in found.items()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None
    for shape, names in expected_shapes(config, shared, tied).values():
        present = [name for name in names if name in shapes]
        if not present:
            raise UserError(f"{path}: tensor {names[0]} is missing (the file does not hold the model config.json describes)")
        if shapes[present[0]] != shape:
            raise UserError(f"{path}: tensor {present[0]} has shape {list(shapes[present[0]])}, config.json implies {list(shape)}")
        if dtypes[present[0]] not in ("F32", "F16", "BF16", "F64"):
            raise UserError(f"{path}: tensor {present[0]} holds {dtypes[present[0]]}, not floating-point numbers")
    return set(shapes)


def read_marian_tokenizer(folder: Path) -> MappedTokenizer:
    settings = read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).exists() else {}
    separate = settings.get("separate_vocabs") is True
    src_vocab = read_vocab(folder / "vocab.json")
    tgt_vocab = read_vocab(folder / "target_vocab.json") if separate else src_vocab
    special = {}
    for name, default in SPECIAL_PIECES.items():
        value = settings.get(f"{name}_token", default)
        value = value.get("content") if isinstance(value, dict) else value  # some files spell a token as an object
        if not isinstance(value, str) or value not in src_vocab or value not in tgt_vocab:
            raise UserError(f"{folder / 'vocab.json'}: no {name} piece {str(value)[:30]!r} in the vocabulary")
        special[name] = value
    for side in ("source", "target"):
        if not (folder / f"{side}.spm").is_file():
            raise UserError(f"{folder}: no {side}.spm (the SentencePiece model that cuts the {side} text into pieces)")
    src, tgt = load_sentencepiece(folder / "source.spm"), load_sentencepiece(folder / "target.spm")
    return MappedTokenizer(src, tgt, src_vocab, tgt_vocab, special)


def read_vocab(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise UserError(f"{path}: no such file (a Marian folder numbers its pieces in it)")
    if path.stat().st_size > MAX_VOCAB_BYTES:
        raise UserError(f"{path}: over {MAX_VOCAB_BYTES >> 20} MB, too large for a vocabulary")
    vocab = read_json(path)
    for piece, index in vocab.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1 << 24:
            raise UserError(f"{path}: the id of {piece[:30]!r} is {json.dumps(index)[:20]}, not a token id")
    if not vocab:
        raise UserError(f"{path}: an empty vocabulary")
    return vocab


# ---- writing: tt's model as a Marian folder


def marian_files(model: Transformer, tokenizer: Tokenizer, languages: tuple[str | None, str | None]) -> dict[str, bytes]:
    """File name → contents of the Marian folder for a tt model (README.md aside)."""
    config = model.config
    src_pieces = piece_ids(tokenizer.src, tokenizer.src_vocab_size)
    tgt_pieces = piece_ids(tokenizer.tgt, tokenizer.tgt_vocab_size)
    separate = not tokenizer.joint
    files = {
        "config.json": to_json(marian_config(config)),
        "generation_config.json": to_json(generation_config(config)),
        WEIGHTS: safetensors_bytes(marian_tensors(model), metadata={"format": "pt"}),
        "source.spm": with_nfkc(tokenizer.src.serialized_model_proto()),
        "target.spm": with_nfkc(tokenizer.tgt.serialized_model_proto()),
        "vocab.json": to_json(src_pieces),
        TOKENIZER_CONFIG: to_json({
            "tokenizer_class": "MarianTokenizer", "source_lang": languages[0], "target_lang": languages[1],
            "unk_token": tokenizer.src_piece(tokenizer.unk_id), "eos_token": tokenizer.src_piece(tokenizer.eos_id),
            "pad_token": tokenizer.src_piece(tokenizer.pad_id), "model_max_length": config.max_positions,
            "separate_vocabs": separate, "sp_model_kwargs": {},
        }),
    }
    if separate:
        files["target_vocab.json"] = to_json(tgt_pieces)
    return files


def piece_ids(model, size: int) -> dict[str, int]:
    return {model.id_to_piece(i): i for i in range(size)}


def to_json(record) -> bytes:
    return (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()

