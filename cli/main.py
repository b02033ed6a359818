"""The `tt` command: Typer app, its commands, and the one place user errors become messages.

Translations go to stdout with plain `print` (a pipe gets exactly the text); progress,
summaries and errors go to stderr.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from tt.cli.consoles import OutputConsole
from tt.data.errors import UserError

app = typer.Typer(
    help="tt, the toy translator: train a small Transformer on a parallel corpus, translate, and look inside.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True, soft_wrap=True)  # one line even in a pipe


def user_errors(command):
    """UserError → one red line on stderr and exit code 1; never a traceback for a user mistake."""

    @functools.wraps(command)  # typer reads the wrapped signature
    def run(*args, **kwargs):
        from tt.cli.interrupts import interrupt_immediately

        try:
            # SIGTERM as Ctrl-C: the command unwinds (a half-written --output is removed) instead of dying.
            with interrupt_immediately():
                return command(*args, **kwargs)
        except UserError as err:
            stderr.print(f"[red]error:[/] {escape(str(err))}")
            raise typer.Exit(code=1)
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM where a command turns it into this
            stderr.print("[red]interrupted[/]")
            raise typer.Exit(code=getattr(err, "exit_code", 130)) from None
        except BrokenPipeError:
            # `tt translate … | head` closed the pipe: not an error of ours or the user's.
            sys.stderr = open(os.devnull, "w")
            raise typer.Exit(code=0)
        except OSError as err:
            # The system refused a path the user gave: a full disk (e.g. stdout redirected to
            # a file), a folder without permission, a name too long. Their problem to fix, so
            # one line naming the file, as for any other user mistake.
            where = str(err.filename or "the output")
            what = f"cannot write {where}" if err.errno in DISK_ERRORS else where
            stderr.print(f"[red]error:[/] {escape(what)}: {escape(err.strerror or str(err))}")
            raise typer.Exit(code=1)

    return run


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}
CORPUS = "Corpus"
MODEL = "Model shape"
TRAINING = "Training"
LIMITS = "Limits and checkpoints"

# The corpus options, shared by `tt train` and `tt prepare`: one definition, one help text.
CorpusSrc = Annotated[Optional[Path], typer.Option(help="Source side of a pair of aligned plain-text files.", rich_help_panel=CORPUS)]
CorpusTgt = Annotated[Optional[Path], typer.Option(help="Target side of a pair of aligned plain-text files.", rich_help_panel=CORPUS)]
CorpusFormat = Annotated[Optional[str], typer.Option(help="tsv, jsonl or text (default: from the extension).", rich_help_panel=CORPUS)]
CorpusSrcCol = Annotated[Optional[int], typer.Option(help="TSV column of the source, from 1. (default: 1)", rich_help_panel=CORPUS)]
CorpusTgtCol = Annotated[Optional[int], typer.Option(help="TSV column of the target, from 1. (default: 2)", rich_help_panel=CORPUS)]
CorpusDev = Annotated[Optional[Path], typer.Option(help="Dev set file (same format options). Default: a held-out slice.", rich_help_panel=CORPUS)]
CorpusDevSrc = Annotated[Optional[Path], typer.Option(help="Dev set as aligned files: source side.", rich_help_panel=CORPUS)]
CorpusDevTgt = Annotated[Optional[Path], typer.Option(help="Dev set as aligned files: target side.", rich_help_panel=CORPUS)]
CorpusDevSize = Annotated[Optional[int], typer.Option(help="Pairs to hold out when no --dev is given. (default: 5%, at most 1000; none under 1000 pairs)", rich_help_panel=CORPUS)]
CorpusMaxChars = Annotated[Optional[int], typer.Option(help="Drop pairs with a side longer than this many characters. (default: 300)", rich_help_panel=CORPUS)]
CorpusMaxRatio = Annotated[Optional[float], typer.Option(help="Drop pairs whose longer side is over this many times the shorter. (default: 9)", rich_help_panel=CORPUS)]


@app.command()
@user_errors
def train(
    corpus: Annotated[Optional[Path], typer.Argument(help="Parallel corpus (.tsv or .jsonl). Leave out to train the built-in demo.", show_default=False)] = None,
    src: CorpusSrc = None,
    tgt: CorpusTgt = None,
    format: CorpusFormat = None,
    src_col: CorpusSrcCol = None,
    tgt_col: CorpusTgtCol = None,
    dev: CorpusDev = None,
    dev_src: CorpusDevSrc = None,
    dev_tgt: CorpusDevTgt = None,
    dev_size: CorpusDevSize = None,
    max_chars: CorpusMaxChars = None,
    max_ratio: CorpusMaxRatio = None,
    out: Annotated[Optional[Path], typer.Option(help="Model folder to write. (default: ./tt-model)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out with its recorded corpus and options; give higher limits to train longer.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a model already in --out (the old one stays until the new run writes its first checkpoint).")] = False,
    init_from: Annotated[Optional[Path], typer.Option(help="Start from this model's weights and tokenizer (fine-tuning).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON or TOML file of these same options; the command line wins.")] = None,
    prepared: Annotated[Optional[Path], typer.Option(help="Folder for the prepared (tokenized) corpus, reused by later runs on the same data; `tt prepare` fills one. (default: OUT/prepared)", rich_help_panel=CORPUS)] = None,
    preset: Annotated[Optional[str], typer.Option(help="Named starting point for the sizes below: tiny, small or base. (default: tiny where training runs on a CPU, where it learned more than small in 15 minutes with and without bfloat16 units; small on a GPU; see the README)", rich_help_panel=MODEL)] = None,
    layers: Annotated[Optional[int], typer.Option(help="Layers in the encoder, and again in the decoder. (default: from --preset)", rich_help_panel=MODEL)] = None,
    d_model: Annotated[Optional[int], typer.Option(help="Width of the residual stream. (default: from --preset)", rich_help_panel=MODEL)] = None,
    heads: Annotated[Optional[int], typer.Option(help="Attention heads (must divide --d-model). (default: from --preset)", rich_help_panel=MODEL)] = None,
    ff: Annotated[Optional[int], typer.Option(help="Inner size of the feed-forward sub-layers. (default: from --preset)", rich_help_panel=MODEL)] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout on the embeddings and on each sub-layer's output, before the residual sum. (default: from --preset)", rich_help_panel=MODEL)] = None,
    pre_norm: Annotated[Optional[bool], typer.Option("--pre-norm/--post-norm", help="LayerNorm before each sub-layer (pre-LN) or after the residual sum (post-LN, the paper's).", rich_help_panel=MODEL, show_default=False)] = None,
    residual: Annotated[Optional[bool], typer.Option("--residual/--no-residual", help="Residual connections around each sub-layer (the default); --no-residual makes each x → LayerNorm(f(x)), an experiment on what they are for.", rich_help_panel=MODEL, show_default=False)] = None,
    vocab_size: Annotated[Optional[int], typer.Option(help="SentencePiece vocabulary size (shrinks if the corpus is small).", rich_help_panel=MODEL)] = None,
    separate_vocab: Annotated[Optional[bool], typer.Option("--separate-vocab/--joint-vocab", help="One vocabulary per language, or one for both (tied embeddings). (default: joint where the two languages share most of their characters, one each where they do not, as Chinese and English)", rich_help_panel=MODEL, show_default=False)] = None,
    src_vocab_size: Annotated[Optional[int], typer.Option(help="Separate vocabularies: the source's own size. (default: --vocab-size; when tt chose separate vocabularies, the source's characters plus the joint vocabulary's room for longer pieces)", rich_help_panel=MODEL, show_default=False)] = None,
    tgt_vocab_size: Annotated[Optional[int], typer.Option(help="Separate vocabularies: the target's own size, the width of the output layer. (default: as --src-vocab-size)", rich_help_panel=MODEL, show_default=False)] = None,
    batch_tokens: Annotated[Optional[int], typer.Option(help="Tokens per batch, padding included. (default: from --preset)", rich_help_panel=TRAINING)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate, reached after warm-up. (default: from --preset)", rich_help_panel=TRAINING)] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Warm-up steps (a linear rise to --lr). (default: from --preset)", rich_help_panel=TRAINING)] = None,
    decay: Annotated[Optional[str], typer.Option(help="After warm-up: rsqrt (1/√step decay, the paper's) or constant (the peak held until the cool-down). (default: from --preset: constant for tiny, rsqrt for small and base)", rich_help_panel=TRAINING, show_default=False)] = None,
    cooldown: Annotated[Optional[float], typer.Option(help="Share of the run, by its first limit (--max-time, --max-steps, --max-epochs), at the end of which the learning rate falls linearly to 0; 0 turns it off. (default: from --preset)", rich_help_panel=TRAINING)] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="ε: target mass spread over the vocabulary. (default: from --preset)", rich_help_panel=TRAINING)] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="AdamW's decoupled weight decay. (default: 0)", rich_help_panel=TRAINING, show_default=False)] = None,
    clip_norm: Annotated[Optional[float], typer.Option(help="Gradients are scaled down to this global norm when longer. (default: 1)", rich_help_panel=TRAINING, show_default=False)] = None,
    subword_alpha: Annotated[Optional[float], typer.Option(help="Subword regularization: each batch's sentences spelled in pieces sampled from the tokenizer, a spelling x with probability ∝ P(x)^α; smaller α is more varied, 0 turns it off (the likeliest spelling, as translation uses). (default: 0)", rich_help_panel=TRAINING, show_default=False)] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto (bf16 where the CPU or GPU does it fast), bf16 or fp32. Weights stay float32.", rich_help_panel=TRAINING)] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (CUDA when present), cpu or cuda.", rich_help_panel=TRAINING)] = None,
    accum: Annotated[Optional[int], typer.Option(help="Gradient accumulation: cut each batch in N pieces, one update per batch (less memory; under torchrun, per process).", rich_help_panel=TRAINING)] = None,
    probe: Annotated[Optional[list[str]], typer.Option(help="A sentence pair \"SOURCE<TAB>REFERENCE\" to watch as the model learns it: p of each reference token, CE and the greedy translation at every metrics line (repeatable; see tt info). In bash the tab is typed $'你好。\\tHello.'. The demo probes 你好世界! → Hello World!.", rich_help_panel=TRAINING, show_default=False)] = None,
    probe_file: Annotated[Optional[Path], typer.Option(help="Probe pairs from a file (TSV or JSONL, as a corpus).", rich_help_panel=TRAINING, show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: the same seed and limits in steps give the same model.", rich_help_panel=TRAINING)] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch. (default: torch's choice)", rich_help_panel=TRAINING)] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many updates.", rich_help_panel=LIMITS)] = None,
    max_epochs: Annotated[Optional[float], typer.Option(help="Stop after this many passes over the corpus (a corpus run with no limit stops after 20).", rich_help_panel=LIMITS)] = None,
    max_time: Annotated[Optional[str], typer.Option(help="Stop after this much wall-clock time for the whole command: 90s, 15m, 2h.", rich_help_panel=LIMITS)] = None,
    dev_every: Annotated[Optional[int], typer.Option(help="Steps between dev evaluations. (default: 500)", rich_help_panel=LIMITS)] = None,
    log_every: Annotated[Optional[int], typer.Option(help="Steps between lines of metrics.jsonl (and at least one every 10 s). (default: 50)", rich_help_panel=LIMITS)] = None,
    save_every: Annotated[Optional[str], typer.Option(help="Time between checkpoints: 2m, 30s. (default: 2m)", rich_help_panel=LIMITS)] = None,
    patience: Annotated[Optional[int], typer.Option(help="Stop after this many dev evaluations without a better dev BLEU. (default: never)", rich_help_panel=LIMITS)] = None,
    average_last: Annotated[Optional[int], typer.Option(help="At the end, also try the mean of the weights at the last N dev evaluations; kept if its dev BLEU is higher.", rich_help_panel=LIMITS)] = None,
    dev_bleu_sentences: Annotated[Optional[int], typer.Option(help="Dev sentences translated for BLEU at each evaluation; the best-BLEU weights become model.safetensors, or, once the cool-down has run its course, the last ones unless an earlier evaluation beat them on BLEU and dev loss both (0: dev loss only, keep the latest). (default: 500)", rich_help_panel=LIMITS)] = None,
):
    """Train a tokenizer and a Transformer on a parallel corpus (or, with no corpus, the demo).

    Examples:

      tt train                                          # the built-in demo, about a minute

      tt train pairs.tsv --src-col 2 --tgt-col 1 --max-time 15m

      tt train --src train.zh --tgt train.en --dev dev.tsv --out zh-en

      tt train --resume --out zh-en --max-time 30m
    """
    from tt.cli.options import merge, option_kinds, options_given

    given = options_given(train, locals(), leave_out=("resume", "overwrite", "config"))
    from tt.cli.train_command import run_train

    options = merge(given, config, option_kinds(train))
    from tt.cli.consoles import TrainingConsole

    run_train(options, resume=resume, overwrite=overwrite, console=TrainingConsole())


@app.command()
@user_errors
def prepare(
    corpus: Annotated[Optional[Path], typer.Argument(help="Parallel corpus (.tsv or .jsonl).", show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder to write the prepared corpus to (give it to `tt train --prepared`).")] = Path("tt-prepared"),
    src: CorpusSrc = None,
    tgt: CorpusTgt = None,
    format: CorpusFormat = None,
    src_col: CorpusSrcCol = None,
    tgt_col: CorpusTgtCol = None,
    dev: CorpusDev = None,
    dev_src: CorpusDevSrc = None,
    dev_tgt: CorpusDevTgt = None,
    dev_size: CorpusDevSize = None,
    max_chars: CorpusMaxChars = None,
    max_ratio: CorpusMaxRatio = None,
    preset: Annotated[Optional[str], typer.Option(help="The `tt train` preset whose vocabulary size to use. (default: small, whose 4k vocabulary tiny shares)")] = None,
    vocab_size: Annotated[Optional[int], typer.Option(help="SentencePiece vocabulary size (shrinks if the corpus is small).")] = None,
    separate_vocab: Annotated[Optional[bool], typer.Option("--separate-vocab/--joint-vocab", help="One vocabulary per language, or one for both. (default: joint where the two languages share most of their characters)", show_default=False)] = None,
    src_vocab_size: Annotated[Optional[int], typer.Option(help="Separate vocabularies: the source's own size. (default: see tt train --help)", show_default=False)] = None,
    tgt_vocab_size: Annotated[Optional[int], typer.Option(help="Separate vocabularies: the target's own size. (default: see tt train --help)", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed of the dev split and the tokenizer (use the same for `tt train`).")] = None,
):
    """Clean, split and tokenize a corpus once, into token id files that `tt train` reuses.

    Runs on its own what `tt train` otherwise does first; give `tt train` the same corpus
    options and `--prepared` the same folder. Examples:

      tt prepare pairs.tsv --src-col 2 --tgt-col 1 --out zh-en-data

      tt train pairs.tsv --src-col 2 --tgt-col 1 --prepared zh-en-data --out zh-en
    """
    from tt.cli.options import options_given
    from tt.cli.prepare_command import prepared_line, run_prepare

    options = {k: v for k, v in options_given(prepare, locals(), leave_out=("out",)).items() if v is not None}
    stderr.print(prepared_line(run_prepare(options, out, stderr)))


# Every command that reads a model takes it the same way (resolved by `model_folder` below).
ModelFolder = Annotated[
    Optional[Path],
    typer.Option(
        "--model", "-m",
        help="A tt model folder, a Hugging Face Marian folder, or a model id (org/name) already in the local "
        "Hugging Face cache. (default: $TT_MODEL, else ./tt-model)",
        show_default=False,
    ),
]


def model_folder(model: Optional[Path]) -> Path:
    """--model, else $TT_MODEL, else ./tt-model; a model id (org/name) is found in the Hugging Face cache."""
    from tt.model.folders import resolve_model

    if model is not None:
        return resolve_model(model)
    from_environment = os.environ.get("TT_MODEL")
    folder = resolve_model(Path(from_environment or "tt-model"))
    if from_environment and not folder.exists():
        raise UserError(f"{folder}: no such model folder ($TT_MODEL names it: set it to a model folder, or pass --model)")
    return folder


@app.command()
@user_errors
def translate(
    texts: Annotated[Optional[list[str]], typer.Argument(help="Sentences to translate, one per argument. None: read stdin (or prompt).", show_default=False)] = None,
    model: ModelFolder = None,
    file: Annotated[Optional[Path], typer.Option(help="Translate this file, one sentence per line (- : stdin).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Write translations here (atomically) instead of stdout.")] = None,
    probs: Annotated[bool, typer.Option("--probs", help="Show a table per sentence: each step's token, probability, entropy and top-k.")] = False,
    top_k: Annotated[int, typer.Option(help="Alternatives shown per step with --probs or --json, or offered by --step.")] = 5,
    json_lines: Annotated[bool, typer.Option("--json", help="JSON Lines instead of text: tokens, probabilities, alternatives.")] = False,
    beam: Annotated[int, typer.Option(help="Beam size; 1 is greedy decoding.")] = 1,
    length_penalty: Annotated[float, typer.Option(help="GNMT length penalty α for beam search (0: raw log-probability).")] = 0.6,
    n_best: Annotated[int, typer.Option(help="Outputs per input (beam search, with a beam of at least N), best first by the length-penalized score: lines of INPUT_INDEX<TAB>LOG_PROB<TAB>TEXT, LOG_PROB the plain sum.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Sentences decoded together.")] = 64,
    precision: Annotated[str, typer.Option(help="fp32 (the same translation whatever --batch-size; probabilities agree to about 1e-6), bf16 (faster) or auto (bf16 where the hardware does it fast).")] = "fp32",
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    lens: Annotated[bool, typer.Option("--lens", help="Logit lens: what each decoder layer would pick, and its probability of the chosen token (a table, or \"layers\" in --json).")] = False,
    attention: Annotated[bool, typer.Option("--attention", help="Cross-attention: a heatmap of source pieces × target pieces (or \"attention\" in --json).")] = False,
    attention_layer: Annotated[Optional[int], typer.Option(help="Decoder layer shown by --attention, from 1 (default: the last).", show_default=False)] = None,
    attention_head: Annotated[Optional[int], typer.Option(help="Head shown by --attention, from 1 (default: the mean over heads).", show_default=False)] = None,
    prefix: Annotated[Optional[str], typer.Option(help="Force the output to start with this text, then continue greedily (or sampling).")] = None,
    step: Annotated[bool, typer.Option("--step", help="Decode by hand: at each step pick one of the top-k tokens (Enter = the top one).")] = False,
    sample: Annotated[bool, typer.Option("--sample", help="Draw each token at random from the model's distribution instead of the argmax.")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling (another value than 1 turns it on): below 1 sharpens the distribution, above 1 flattens it.")] = 1.0,
    top_k_sampling: Annotated[Optional[int], typer.Option(help="Sampling (turns it on): draw only among the k most probable tokens. (default: no cut)", show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Sampling (turns it on): draw only among the most probable tokens whose mass reaches p (nucleus). (default: no cut)", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling (turns it on): a seed makes the draws repeatable for the same input. (default: new draws each run)", show_default=False)] = None,
    n: Annotated[int, typer.Option("--n", help="Sampling (more than 1 turns it on): outputs per input, as lines of INPUT_INDEX<TAB>LOG_PROB<TAB>TEXT.")] = 1,
):
    """Translate sentences with a trained model.

    Examples:

      tt translate "你好世界!"

      tt translate --probs "你好世界!"

      tt translate --lens --attention "你好世界!"

      cat zh.txt | tt translate > en.txt

      tt translate --file zh.txt --output en.txt --model zh-en
    """
    from tt.cli.translate_command import run_translate, translate_quickly

    check_decoding(beam, n_best, precision, batch_size, length_penalty)
    if probs and (beam > 1 or n_best > 1 or n > 1):
        raise UserError("--probs shows one decoding step by step: leave out --beam/--n-best/--n")
    show_attention = attention or attention_layer is not None or attention_head is not None
    if (lens or show_attention) and (beam > 1 or n_best > 1):
        raise UserError("--lens and --attention show greedy decoding step by step: leave out --beam/--n-best")
    if top_k < 1:
        raise UserError("--top-k must be at least 1")
    if texts and file:
        raise UserError("give sentences as arguments or --file, not both")
    if texts == ["-"] or (file is not None and str(file) == "-"):  # the usual name for stdin
        texts, file = None, None
    # Any sampling option turns sampling on: a --temperature or --seed silently ignored by greedy would mislead.
    sampling = sample or n > 1 or top_k_sampling is not None or top_p is not None or temperature != 1.0 or seed is not None
    if sampling and (beam > 1 or n_best > 1):
        raise UserError("choose sampling (--sample, --n, --temperature, --top-k-sampling, --top-p, --seed) or beam search (--beam, --n-best), not both")
    if step:
        others = {
            "--file": file, "--output": output, "--json": json_lines, "--probs": probs, "--lens": lens,
            "--attention": show_attention, "--beam": beam > 1, "--n-best": n_best > 1, "--prefix": prefix is not None,
            "--sample/--n/--temperature/--top-k-sampling/--top-p/--seed": sampling,
        }
        if any(others.values()):
            names = ", ".join(name for name, given in others.items() if given)
            raise UserError(f"--step decodes by hand, one sentence at a time on the terminal: leave out {names}")
    from tt.model.configs import check_seed

    if seed is not None:
        check_seed(seed)
    if not 0 < temperature < math.inf:
        raise UserError("--temperature must be a positive number")
    if n < 1 or (top_k_sampling is not None and top_k_sampling < 1) or (top_p is not None and not 0 < top_p <= 1):
        raise UserError("sampling needs --n ≥ 1, --top-k-sampling ≥ 1 and 0 < --top-p ≤ 1")
    if prefix is not None and (beam > 1 or n_best > 1):
        raise UserError("--prefix works with greedy decoding and sampling, not --beam")
    plain = not (file or probs or json_lines or lens or show_attention or step or sampling or prefix is not None)
    if texts and plain and beam == 1 and n_best == 1 and precision == "fp32" and device in ("auto", "cpu"):
        # The quick path: a few sentences, plain greedy output, answered without importing torch.
        if translate_quickly(model_folder(model), texts, output):
            return
    from tt.model.translator import AttentionView, Search
    from tt.model.decode import DecodeConfig
    from tt.model.beam import BeamConfig
    from tt.model.sampling import Sampler

    config = DecodeConfig(batch_size=batch_size, precision=decoding_precision(precision, device), device=device)
    search = Search(
        beam=BeamConfig(beam=max(beam, n_best), alpha=length_penalty, n_best=n_best),
        sampler=Sampler(temperature, top_k_sampling, top_p, seed) if sampling else None,
        samples=n,
        prefix=prefix,
    )
    if step:
        from tt.cli.step_command import run_step

        return run_step(model_folder(model), texts, top_k, stderr, device)
    view = AttentionView(attention_layer, attention_head) if show_attention else None
    run_translate(model_folder(model), texts, file, output, probs, top_k, json_lines, config, search, lens, view)


MAX_BATCH_SIZE = 4096  # sentences; past a few hundred decoding is no faster, only bigger


def check_decoding(beam: int, n_best: int, precision: str, batch_size: int, length_penalty: float) -> None:
    if not 0 <= length_penalty <= 10:  # also refuses nan; GNMT's α is usually between 0.6 and 1
        raise UserError("--length-penalty must be between 0 and 10")
    if beam < 1:
        raise UserError("--beam must be at least 1")
    if n_best < 1:
        raise UserError("--n-best must be at least 1")
    from tt.model.decode_config import check_precision

    check_precision(precision)
    check_batch_size(batch_size)


def check_batch_size(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:  # one padded batch of it all would hold gigabytes, for no speed
        raise UserError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE:,}")


def decoding_precision(precision: str, device: str) -> str:
    """"auto" → bf16 or fp32 for the device the model will run on."""
    from tt.model.device import resolve_device, resolve_precision

    return resolve_precision(precision, resolve_device(device))


@app.command(name="eval")
@user_errors
def evaluate(
    test: Annotated[Optional[Path], typer.Argument(help="Test set (.tsv or .jsonl) with references.", show_default=False)] = None,
    model: ModelFolder = None,
    src: Annotated[Optional[Path], typer.Option(help="Source side of a pair of aligned plain-text files.")] = None,
    tgt: Annotated[Optional[Path], typer.Option(help="Reference side of a pair of aligned plain-text files.")] = None,
    format: Annotated[Optional[str], typer.Option(help="tsv, jsonl or text (default: from the extension).")] = None,
    src_col: Annotated[int, typer.Option(help="TSV column of the source, from 1.")] = 1,
    tgt_col: Annotated[int, typer.Option(help="TSV column of the reference, from 1.")] = 2,
    beam: Annotated[int, typer.Option(help="Beam size; 1 is greedy decoding.")] = 1,
    length_penalty: Annotated[float, typer.Option(help="GNMT length penalty α for beam search.")] = 0.6,
    batch_size: Annotated[int, typer.Option(help="Sentences decoded together.")] = 64,
    precision: Annotated[str, typer.Option(help="fp32, bf16 or auto (bf16 where the hardware does it fast).")] = "fp32",
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    output: Annotated[Optional[Path], typer.Option(help="Also write the translations here, one per line.")] = None,
    json_line: Annotated[bool, typer.Option("--json", help="One JSON line instead of the table.")] = False,
    calibration: Annotated[bool, typer.Option("--calibration", help="Also: under teacher forcing, how often the argmax is right per confidence bin, and the expected calibration error.")] = False,
):
    """Translate a test set and score it with sacrebleu: BLEU and chrF.

    BLEU's tokenization follows the references: zh for Chinese, char for Japanese and Korean, 13a otherwise (the signature in --json says which).

    Examples:

      tt eval dev.tsv --src-col 2 --tgt-col 1

      tt eval dev.tsv --src-col 2 --tgt-col 1 --beam 5 --json
    """
    from tt.cli.eval_command import eval_table, run_eval, write_translations
    from tt.data.atomic import check_output
    from tt.data.corpus import CorpusSpec
    from tt.model.decode import DecodeConfig
    from tt.model.beam import BeamConfig

    check_decoding(beam, 1, precision, batch_size, length_penalty)
    if test is None and not (src and tgt):
        raise UserError("give a test file, or --src and --tgt")
    spec = CorpusSpec(
        path=str(test) if test else None, src_path=str(src) if src else None, tgt_path=str(tgt) if tgt else None,
        format=format, src_col=src_col, tgt_col=tgt_col,
    )
    if output is not None:
        for reading in (test, src, tgt):
            check_output(output, reading=reading)
    result, translations = run_eval(
        model_folder(model), spec, DecodeConfig(batch_size=batch_size, precision=decoding_precision(precision, device), device=device),
        BeamConfig(beam=beam, alpha=length_penalty), stderr,
    )
    if calibration:
        from tt.cli.eval_command import calibration_table, run_calibration

        result["calibration"] = run_calibration(model_folder(model), spec, device=device)
    if output is not None:  # only once everything asked for has worked
        write_translations(output, translations)
    if json_line:
        print(json.dumps(result, ensure_ascii=False))
    else:
        OutputConsole().print(eval_table(result))
        if calibration:
            OutputConsole().print(calibration_table(result["calibration"]))


@app.command()
@user_errors
def bench(
    data: Annotated[Optional[Path], typer.Option(help="Folder with train.tsv/dev.tsv (Tatoeba layout); synthetic data where absent.")] = None,
    seconds: Annotated[float, typer.Option(help="Seconds per training measurement.")] = 20.0,
    json_line: Annotated[bool, typer.Option("--json", help="One JSON object instead of the table.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto: where the matmul, training and decoding figures are measured.")] = "cpu",
):
    """Measure this machine and tt on it: matmul peak, training and decoding speed, memory, start-up.

    Takes a few minutes. Examples:

      tt bench

      tt bench --data ../shared/data/tatoeba-cmn-eng --json
    """
    from tt.cli.bench_command import bench_table, run_bench

    if not 0.1 <= seconds <= 3600:  # also refuses nan and inf (which would never end)
        raise UserError("--seconds must be between 0.1 and 3600")

    if data is not None and not (data / "train.tsv").exists():
        raise UserError(f"--data {data}: no such folder" if not data.exists() else f"--data {data}: no train.tsv there")
    results = run_bench(data, seconds, lambda what: stderr.print(f"[dim]measuring {what}…[/]"), device)
    if json_line:
        print(json.dumps(results))
    else:
        OutputConsole().print(bench_table(results))


@app.command()
@user_errors
def score(
    src: Annotated[Optional[str], typer.Option(help="Source sentence (with --ref).", show_default=False)] = None,
    ref: Annotated[Optional[str], typer.Option(help="Reference translation of --src, to score.", show_default=False)] = None,
    model: ModelFolder = None,
    file: Annotated[Optional[Path], typer.Option(help="Pairs to score (.tsv or .jsonl), read as `tt train` reads a corpus.", show_default=False)] = None,
    src_file: Annotated[Optional[Path], typer.Option(help="Source side of a pair of aligned plain-text files.", show_default=False)] = None,
    ref_file: Annotated[Optional[Path], typer.Option(help="Reference side of a pair of aligned plain-text files.", show_default=False)] = None,
    format: Annotated[Optional[str], typer.Option(help="tsv, jsonl or text (default: from the extension).", show_default=False)] = None,
    src_col: Annotated[int, typer.Option(help="TSV column of the source, from 1.")] = 1,
    tgt_col: Annotated[int, typer.Option(help="TSV column of the reference, from 1.")] = 2,
    json_lines: Annotated[bool, typer.Option("--json", help="JSON Lines, one per pair, instead of tables (a file's totals go to stderr).")] = False,
    batch_size: Annotated[int, typer.Option(help="Pairs scored together.")] = 64,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
):
    """Forced decoding: the model's probability of each token of a reference translation.

    Per token: p, −ln p, its rank (1 = the model's own pick) and the model's pick; per sentence: cross-entropy (mean −ln p, nats) and perplexity = exp(cross-entropy); for a file, corpus totals at the end.

    Examples:

      tt score --src "你好世界!" --ref "Hello World!"

      tt score --file dev.tsv --src-col 2 --tgt-col 1 --json
    """
    from tt.cli.score_command import run_score, score_inputs

    check_batch_size(batch_size)
    pairs, from_files = score_inputs(src, ref, file, src_file, ref_file, format, src_col, tgt_col)
    run_score(model_folder(model), pairs, from_files, json_lines, batch_size, stderr, device)


@app.command()
@user_errors
def tokenize(
    texts: Annotated[list[str], typer.Argument(help="Text to split into pieces, one table per argument.", show_default=False)],
    model: ModelFolder = None,
    side: Annotated[str, typer.Option(help="src: the encoder's tokenizer; tgt: the decoder's (the same one when joint).")] = "src",
    json_lines: Annotated[bool, typer.Option("--json", help="JSON Lines, one per text, instead of tables.")] = False,
):
    """Show how the model's tokenizer splits a text: pieces, ids, and byte-fallback pieces.

    Examples:

      tt tokenize "你好世界!"

      tt tokenize --side tgt --json "Hello World!"
    """
    from tt.cli.tokenize_command import pieces_table, tokenize as split
    from tt.model.folders import open_tokenizer

    tokenizer = open_tokenizer(model_folder(model))
    records = [split(tokenizer, text, side) for text in texts]
    console = OutputConsole()
    for record in records:
        if json_lines:
            print(json.dumps(record, ensure_ascii=False))
        else:
            console.print(pieces_table(record))


@app.command()
@user_errors
def explain(
    src: Annotated[str, typer.Option(help="The source sentence.")],
    ref: Annotated[str, typer.Option(help="Its reference translation.")],
    position: Annotated[int, typer.Option(help="Target position to explain, from 1 (the reference's pieces, </s> last).")] = 1,
    smoothing: Annotated[Optional[float], typer.Option(help="Label smoothing ε (default: the model's training value).", show_default=False)] = None,
    model: ModelFolder = None,
):
    """The loss and the residual stream at one position, with every number shown.

    logits → softmax → cross-entropy against the one-hot target; with label smoothing the
    smoothed target, KL(q‖p) and the identity H(q, p) = KL(q‖p) + H(q), computed by the
    function training uses; and, per decoder sub-layer, the sizes of x, f(x) and x + f(x).

    Example:

      tt explain --src "你好世界!" --ref "Hello World!" --position 2
    """
    from tt.cli.explain_command import explain as run_explain, explanation_view
    from tt.model.folders import open_model

    folder = model_folder(model)
    network, tokenizer, record = open_model(folder)
    epsilon = smoothing if smoothing is not None else trained_smoothing(record, folder)
    if not 0 <= epsilon < 1:
        raise UserError("--smoothing must be in [0, 1)")
    OutputConsole().print(explanation_view(run_explain(network, tokenizer, src, ref, position, epsilon)))


def trained_smoothing(record: dict, folder: Path) -> float:
    """The label smoothing the model was trained with (config.json), 0.1 where none is recorded."""
    train = record.get("train", {})
    value = train.get("label_smoothing", 0.1) if isinstance(train, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"{folder / 'config.json'}: train.label_smoothing is not a number in [0, 1); give --smoothing")
    return float(value)


@app.command()
@user_errors
def info(
    runs: Annotated[Optional[list[Path]], typer.Argument(help="Model folders; two or more are compared, their curves overlaid.", show_default=False)] = None,
    model: ModelFolder = None,
):
    """What a model folder holds: config, parameters, training data, loss and gradient curves, probe sentences.

    Examples:

      tt info --model zh-en

      tt info residual-6 no-residual-6      # two runs, overlaid
    """
    from tt.cli.info_command import compare_view, info_view

    folders = [model_folder(folder) for folder in [*(runs or []), *([model] if model is not None else [])]] or [model_folder(None)]
    OutputConsole().print(info_view(folders[0]) if len(folders) == 1 else compare_view(folders))


@app.command()
@user_errors
def export(
    out: Annotated[Path, typer.Argument(help="Folder to write.", show_default=False)],
    model: ModelFolder = None,
    format: Annotated[str, typer.Option(help="hf: a Hugging Face MarianMT folder (transformers); ct2: a CTranslate2 model.")] = "hf",
    quantization: Annotated[str, typer.Option(help="ct2 only: float32, int8, int8_float32 or bfloat16.")] = "float32",
    src_lang: Annotated[Optional[str], typer.Option(help="Source language code for the model card (default: from train.xx files, else unknown).", show_default=False)] = None,
    tgt_lang: Annotated[Optional[str], typer.Option(help="Target language code for the model card.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it holds an earlier export (only once the new folder is complete); any other folder is kept.")] = False,
):
    """Write the model in a format other tools serve: Hugging Face transformers or CTranslate2.

    Examples:

      tt export zh-en-hf --model zh-en

      tt translate --model zh-en-hf "你好世界!"      # the same translation, read back

      tt export zh-en-hf --model zh-en --src-lang zh --tgt-lang en --overwrite

      tt export zh-en-ct2 --model zh-en --format ct2 --quantization int8
    """
    from tt.cli.export_command import run_export

    run_export(model_folder(model), out, format, quantization, overwrite, (src_lang, tgt_lang), stderr)

