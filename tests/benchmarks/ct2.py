"""CTranslate2 export on a real model: agreement with tt, int8 BLEU, and speed, on the dev split.

    python tests/benchmarks/ct2.py --model DIR [--sentences 1402]
    python tests/benchmarks/ct2.py --minutes 5 [--out runs/ct2]     # trains a short Tatoeba model first

Exports the model (float32; int8 with tt's 7-bit weights; int8 with ctranslate2's own
8-bit rounding, for comparison), translates the Tatoeba zh→en dev sources greedily with
tt and with each export, and prints:
- agreement: the share of sentences whose CTranslate2 output is tt's, piece for piece;
- the largest difference of a reference token's ln p (tt's teacher forcing vs score_batch);
- dev BLEU (sacrebleu) of each;
- decoding speed on the dev set (batch 64) and at tt bench's fixed length.
Reads the shared data from ../shared/data/tatoeba-cmn-eng/ and exits with a message where it
is absent. Needs ctranslate2 (pip install 'tt-translator[ct2]').
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tt.model.speed import ct2_fixed_length_speed, fixed_length_speed
from tt.data.corpus import CorpusSpec, read_pairs
from tt.data.normalize import normalize
from tt.data.tokenizer import EOS_ID
from tt.model.checkpoint import load_model_folder
from tt.model.ct2 import write_ct2
from tt.model.decode import DecodeConfig, greedy_decode, max_output_length
from tt.model.forced import force_decode
from tt.model.evaluate import score_corpus

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-cmn-eng"
TT = [sys.executable, "-m", "tt.cli"]
EXPORTS = {"float32": ("float32", 8), "int8": ("int8", 7), "int8, 8-bit weights": ("int8", 8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a tt model folder; default: train one for --minutes")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("runs/ct2"))
    parser.add_argument("--sentences", type=int, default=None, help="dev sentences to use (default: all)")
    args = parser.parse_args()
    if not (DATA / "dev.tsv").exists():
        sys.exit(f"no shared data at {DATA}: nothing to measure")
    import ctranslate2

    folder = args.model or train(args.out, args.minutes)
    model, tokenizer, _ = load_model_folder(folder)
    pairs = [(normalize(p.src), p.tgt) for p in read_pairs(CorpusSpec(path=str(DATA / "dev.tsv"), src_col=2, tgt_col=1))]
    pairs = [(s, t) for s, t in pairs if s][: args.sentences]
    references = [t for _, t in pairs]
    src_ids = [tokenizer.encode_src(s) for s, _ in pairs]
    limits = [max_output_length(len(ids), DecodeConfig(), model) for ids in src_ids]
    threads = torch.get_num_threads()
    print(f"model {folder}: d_model {model.config.d_model}, {model.config.n_layers} layers; "
          f"{len(pairs)} dev sentences; {threads} threads")

    started = time.perf_counter()
    hyps = greedy_decode(model, src_ids)
    tt_seconds = time.perf_counter() - started
    tt_pieces = [[tokenizer.tgt_piece(i) for i in h.tokens if i != EOS_ID] for h in hyps]
    tt_texts = [tokenizer.decode_tgt(h.tokens) for h in hyps]
    rows = [("tt", score_corpus(tt_texts, references).bleu, None, None, tt_seconds)]

    source_pieces = [[tokenizer.src_piece(i) for i in ids] for ids in src_ids]
    with tempfile.TemporaryDirectory() as scratch:
        for name, (quantization, bits) in EXPORTS.items():
            out = Path(scratch) / name.replace(" ", "_").replace(",", "")
            write_ct2(model, tokenizer, out, quantization, weight_bits=bits)
            translator = ctranslate2.Translator(str(out), device="cpu", inter_threads=1, intra_threads=threads)
            translator.translate_batch(source_pieces[:64], beam_size=1)  # warm-up
            started = time.perf_counter()
            results = translator.translate_batch(
                source_pieces, max_batch_size=64, beam_size=1, min_decoding_length=0, max_decoding_length=max(limits)
            )
            seconds = time.perf_counter() - started
            # tt stops at its per-sentence length limit; cut CTranslate2's output at the same place.
            pieces = [r.hypotheses[0][:limit] for r, limit in zip(results, limits)]
            agree = sum(ours == theirs for ours, theirs in zip(tt_pieces, pieces)) / len(pieces)
            texts = [tokenizer.decode_tgt([tokenizer.tgt.piece_to_id(p) for p in ps]) for ps in pieces]
            rows.append((name, score_corpus(texts, references).bleu, agree, max_score_difference(model, tokenizer, translator, pairs), seconds))

    print(f"\n{'':<22} {'dev BLEU':>9} {'agreement':>10} {'max |Δ ln p|':>13} {'dev s':>7} {'sent/s':>7}")
    for name, bleu, agree, delta, seconds in rows:
        agreement = "" if agree is None else f"{agree:.2%}"
        difference = "" if delta is None else f"{delta:.1e}"
        print(f"{name:<22} {bleu:>9.2f} {agreement:>10} {difference:>13} {seconds:>7.1f} {len(pairs) / seconds:>7.1f}")

    print("\nfixed length (1,154 random 12-piece sources × 20 output tokens, batch 64, greedy):")
    tt_speed = fixed_length_speed(model, tokenizer.tgt_vocab_size)
    print(f"  tt                    {tt_speed:>8,.0f} tok/s")
    for quantization in ("float32", "int8"):
        speed = ct2_fixed_length_speed(model, tokenizer, quantization, torch.device("cpu"))
        print(f"  CTranslate2 {quantization:<10}{speed:>8,.0f} tok/s  ({speed / tt_speed:.1f}× tt)")


def max_score_difference(model, tokenizer, translator, pairs, count: int = 200) -> float:
    """Largest |ln p| difference over the reference tokens of the first `count` dev pairs."""
    src_ids = [tokenizer.encode_src(s) for s, _ in pairs[:count]]
    tgt_ids = [tokenizer.encode_tgt(normalize(t)) for _, t in pairs[:count]]
    ours = force_decode(model, src_ids, tgt_ids)
    theirs = translator.score_batch(
        [[tokenizer.src_piece(i) for i in ids] for ids in src_ids],
        [[tokenizer.tgt_piece(i) for i in ids[:-1]] for ids in tgt_ids],
        max_batch_size=64,
    )
    return max(abs(a - b) for f, r in zip(ours, theirs) for a, b in zip(f.token_log_probs, r.log_probs))


def train(out: Path, minutes: float) -> Path:
    command = [
        *TT, "train", str(DATA / "train.tsv"), "--src-col", "2", "--tgt-col", "1", "--dev", str(DATA / "dev.tsv"),
        "--out", str(out), "--overwrite", "--max-time", f"{minutes * 60:.0f}s",
    ]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)
    return out


if __name__ == "__main__":
    main()
