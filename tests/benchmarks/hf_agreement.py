"""tt against transformers on an exported model: same greedy text? same per-token log-probs?

    python tests/benchmarks/hf_agreement.py MODEL_FOLDER [--dev DEV.tsv] [--src-col 2] [--limit N]

Exports MODEL_FOLDER with `tt export --format hf` into a temporary folder, translates every
dev source greedily with `tt translate`'s code and with transformers' `generate` (float32,
both on the CPU), and prints: the share of identical translations, the share of identical
token sequences, and the largest difference between tt's per-token log-probabilities and
transformers' (teacher-forced on tt's tokens). Needs transformers; the dev set defaults to
../shared/data/tatoeba-cmn-eng/dev.tsv (Chinese in column 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ["HF_HUB_OFFLINE"] = "1"

DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-cmn-eng" / "dev.tsv"
CONTROL_TO_SPACE = {c: " " for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]}  # tt's one-line rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--src-col", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N sources")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not args.dev.exists():
        sys.exit(f"no dev set at {args.dev}")
    sources = [line.rstrip("\n").split("\t")[args.src_col - 1] for line in args.dev.open(encoding="utf-8") if line.strip()]
    sources = sources[: args.limit]

    import transformers
    from typer.testing import CliRunner

    from tt.cli.main import app
    from tt.model.translator import Translator
    from tt.model.decode import DecodeConfig, max_output_length

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / "hf"
        result = CliRunner().invoke(app, ["export", str(exported), "--model", str(args.model)])
        if result.exit_code:
            sys.exit(result.output)
        started = time.perf_counter()
        translator = Translator(args.model, device="cpu")
        ours = translator.translate(sources, DecodeConfig(batch_size=args.batch_size))
        tt_seconds = time.perf_counter() - started
        hf_model = transformers.MarianMTModel.from_pretrained(exported).eval()
        hf_tokenizer = transformers.MarianTokenizer.from_pretrained(exported)
        same_text = same_tokens = 0
        worst = 0.0
        started = time.perf_counter()
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            batch = hf_tokenizer([sources[i] for i in rows], return_tensors="pt", padding=True)
            lengths = batch.attention_mask.sum(1).tolist()
            limits = [max_output_length(n, DecodeConfig(), translator.model) for n in lengths]
            generated = hf_model.generate(**batch, max_new_tokens=max(limits))
            log_probs = hf_model(**batch, decoder_input_ids=generated).logits.log_softmax(-1)
            for j, i in enumerate(rows):
                tokens = ours[i].hypothesis.tokens if ours[i].hypothesis else []
                theirs = generated[j, 1 : limits[j] + 1].tolist()  # a sentence alone would stop at its own limit
                eos = hf_model.config.eos_token_id
                theirs = theirs[: theirs.index(eos) + 1] if eos in theirs else theirs
                same_tokens += theirs == tokens
                text = hf_tokenizer.decode(theirs, skip_special_tokens=True).translate(CONTROL_TO_SPACE).strip()
                same_text += text == ours[i].translation
                if tokens and generated[j, 1 : len(tokens) + 1].tolist() == tokens:
                    chosen = log_probs[j, : len(tokens)].gather(1, torch.tensor(tokens)[:, None])[:, 0]
                    worst = max(worst, float((chosen - torch.tensor(ours[i].hypothesis.token_log_probs)).abs().max()))
        hf_seconds = time.perf_counter() - started
    n = len(sources)
    print(f"{n} dev sources, {args.model}")
    print(f"identical translations: {same_text}/{n} ({100 * same_text / n:.2f} %)")
    print(f"identical token sequences: {same_tokens}/{n} ({100 * same_tokens / n:.2f} %)")
    print(f"largest |tt − transformers| per-token log-probability: {worst:.2e}")
    print(f"greedy decoding time: tt {tt_seconds:.1f} s, transformers {hf_seconds:.1f} s (shared CPU)")


if __name__ == "__main__":
    main()
