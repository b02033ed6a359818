"""README.md for an exported model: the model card people read before they use a model.

Everything in it comes from what the run recorded (config.json, metrics.jsonl): the
language pair when known, the corpus, the model's shape and size, training time and steps,
dev BLEU with sacrebleu's signature, and how to load the folder. Nothing is made up: what
was not recorded is said to be unknown.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from tt.model.evaluate import bleu_signature
from tt.model.transformer import Transformer, count_parameters


def guess_languages(record: dict) -> tuple[str | None, str | None]:
    """From a Moses-style pair of files (train.zh / train.en), else unknown."""
    corpus = record.get("corpus") if isinstance(record.get("corpus"), dict) else {}
    codes = [_language_suffix(corpus.get(key)) for key in ("src_path", "tgt_path")]
    return (codes[0], codes[1]) if all(codes) else (None, None)


LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")  # zh, en, zh-Hant, pt_BR: BCP 47's shape


def check_language_code(code: str | None, option: str) -> None:
    """A code goes into the card's YAML header as it is: nothing but a language tag may."""
    from tt.data.errors import UserError

    if code is not None and not LANGUAGE_CODE.fullmatch(code):
        raise UserError(f"{option} {code!r}: not a language code (such as zh, en, zh-Hant)")


def _language_suffix(path) -> str | None:
    match = re.fullmatch(r"[a-z]{2,3}", Path(path).suffix[1:]) if isinstance(path, str) else None
    return match.group() if match else None


def model_card(name: str, model: Transformer, record: dict, metrics: list[dict], languages: tuple[str | None, str | None]) -> str:
    src, tgt = languages
    pair = f"{src}→{tgt}" if src and tgt else "translation"
    config = model.config
    lines = ["---"]
    if src or tgt:
        lines += ["language:", *(f"- {code}" for code in (src, tgt) if code)]
    lines += ["library_name: transformers", "pipeline_tag: translation", "tags:", "- translation", "- marian", "- tt", "---", ""]
    lines += [f"# {name}: a small {pair} model trained with tt", ""]
    lines += [
        "A Transformer encoder–decoder (post-LN, sinusoidal positions) trained from scratch with",
        "tt, the toy translator, and exported to the MarianMT format.", "",
        "## Model", "",
        "| | |", "|---|---|",
        f"| d_model | {config.d_model} |", f"| layers | {config.n_layers} encoder, {config.n_layers} decoder |",
        f"| attention heads | {config.n_heads} |", f"| feed-forward | {config.d_ff}, {config.activation} |",
        f"| vocabulary | {_vocabulary(config)} |", f"| parameters | {count_parameters(model):,} |", "",
        "## Training data", "", _corpus(record), "",
        "## Training", "", _training(record, metrics), "",
        "## Evaluation", "", *_evaluation(record), "",
        "## How to use", "",
        "```python",
        "from transformers import MarianMTModel, MarianTokenizer",
        "",
        f'tokenizer, model = MarianTokenizer.from_pretrained("{name}"), MarianMTModel.from_pretrained("{name}")',
        'batch = tokenizer(["..."], return_tensors="pt")',
        "print(tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True))",
        "```", "",
        "`generate` decodes greedily by default (generation_config.json), as `tt translate` does;",
        "tt also stops at twice the source's pieces plus 10, which `max_new_tokens` can do here.",
        *_transformers_versions(config),
        "tt reads the folder as well: `tt translate --model FOLDER`.",
        "The SentencePiece files normalize text with NFKC, as tt did before training.", "",
    ]
    return "\n".join(lines)


def _transformers_versions(config) -> list[str]:
    if config.src_vocab_size != config.tgt_vocab_size:
        # transformers 4's Marian sizes the decoder's embedding by the source vocabulary.
        return ["Its two vocabularies differ in size, which transformers 5 loads and transformers 4 does not."]
    return ["transformers 4 also has `pipeline(\"translation\")`; give it `num_beams=1` (its default is 4 beams)."]


def _vocabulary(config) -> str:
    if config.tie_embeddings and config.src_vocab_size == config.tgt_vocab_size:
        return f"{config.src_vocab_size:,} SentencePiece pieces, shared by both languages (tied embeddings)"
    return f"{config.src_vocab_size:,} source and {config.tgt_vocab_size:,} target SentencePiece pieces"


def _corpus(record: dict) -> str:
    if record.get("demo"):
        where = "tt's built-in demo corpus"
    else:
        corpus = record.get("corpus") if isinstance(record.get("corpus"), dict) else {}
        where = _file_names(corpus) or "not recorded"
    summary = record.get("summary") if isinstance(record.get("summary"), dict) else {}
    train, dev = summary.get("train_pairs"), summary.get("dev_pairs")
    counts = f"{train:,} training pairs after cleaning" if isinstance(train, int) else "training pairs: not recorded"
    if isinstance(dev, int) and dev:
        given = record.get("dev") if isinstance(record.get("dev"), dict) else None
        if given:  # a dev set of its own (--dev), not pairs held out of the corpus
            counts += f"; dev set: {_file_names(given) or 'a file of its own'}, {dev:,} pairs"
        else:
            counts += f", {dev:,} held out for dev"
    return f"Corpus: {where}; {counts}."


def _file_names(spec: dict) -> str:
    """A recorded corpus spec's files, by name: "train.tsv", or "train.zh + train.en"."""
    return " + ".join(Path(p).name for p in (spec.get("path"), spec.get("src_path"), spec.get("tgt_path")) if isinstance(p, str))


def _training(record: dict, metrics: list[dict]) -> str:
    step = record.get("step")
    steps = f"{step:,} steps" if isinstance(step, int) else "steps not recorded"
    seconds = next((m["elapsed_s"] for m in reversed(metrics) if _finite(m.get("elapsed_s"))), None)
    time = f"{seconds / 60:.1f} minutes" if seconds is not None else "time not recorded"
    train = record.get("train") if isinstance(record.get("train"), dict) else {}
    settings = ", ".join(f"{key} {train[key]}" for key in ("batch_tokens", "learning_rate", "label_smoothing") if key in train)
    if train.get("subword_alpha"):  # sampled spellings while training (tt.data.subword_sampling)
        settings += f", subword sampling alpha {train['subword_alpha']}"
    return f"{steps} in {time}" + (f" ({settings})." if settings else ".")


def _evaluation(record: dict) -> list[str]:
    best = record.get("best") if isinstance(record.get("best"), dict) else {}
    bleu, step = best.get("dev_bleu"), best.get("step")
    if not _finite(bleu):
        return ["No dev score was recorded during training; measure one with `tt eval TEST.tsv --model FOLDER`."]
    train = record.get("train") if isinstance(record.get("train"), dict) else {}
    sentences = train.get("dev_bleu_sentences")
    on = f"the first {sentences} dev sentences" if isinstance(sentences, int) else "the dev set"
    return [
        f"Dev BLEU {bleu:.2f} (greedy decoding, {on}, at step {step}); chrF was not recorded.", "",
        f"sacrebleu signature: `{bleu_signature(best.get('bleu_tokenize', '13a'))}`",
    ]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
