"""`tt export`: a trained model in the formats the field serves models with.

    --format hf    a Hugging Face MarianMT folder: transformers' MarianMTModel, MarianTokenizer
                   and pipeline("translation") load it offline (tt.model.marian_folder)
    --format ct2   a CTranslate2 model directory (tt.model.ct2; needs the ct2 extra)

The folder is filled under a temporary name beside OUT and renamed when complete, so a
kill or a full disk never leaves half a model; an existing OUT is replaced only with
--overwrite, and only then.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tt.data.atomic import atomic_folder
from tt.data.errors import UserError
from tt.model.checkpoint import METRICS, load_model_folder
from tt.model.marian import check_exportable
from tt.model.marian_folder import is_marian_folder, marian_files
from tt.model.model_card import guess_languages, model_card

FORMATS = ("hf", "ct2")
QUANTIZATIONS = ("float32", "int8", "int8_float32", "bfloat16")


def run_export(
    folder: Path, out: Path, format: str, quantization: str, overwrite: bool,
    languages: tuple[str | None, str | None], console: Console,
) -> None:
    if format not in FORMATS:
        raise UserError(f"--format must be hf or ct2, not {format!r}")
    if quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    if format == "hf" and quantization != "float32":
        raise UserError("--quantization is for --format ct2; a Hugging Face folder holds float32 weights")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists; choose another folder or pass --overwrite")
    if out.resolve() == folder.resolve():
        raise UserError(f"{out}: is the model folder itself; export to another folder")
    if format == "ct2":
        return export_ct2_dispatch(folder, out, quantization, console)
    if is_marian_folder(folder):
        raise UserError(f"{folder}: is already a Hugging Face Marian folder")
    model, tokenizer, record = load_model_folder(folder)
    check_exportable(model.config, str(folder))
    guessed = guess_languages(record)
    languages = (languages[0] or guessed[0], languages[1] or guessed[1])
    with console.status(f"writing {out}…"):
        files = marian_files(model, tokenizer, languages)
        files["README.md"] = model_card(out.name, model, record, read_metrics(folder), languages).encode()
        with atomic_folder(out) as temporary:
            for name, data in files.items():
                (temporary / name).write_bytes(data)
    console.print(f"wrote {out}/ ({', '.join(sorted(files))})")
    console.print(f'next: python -c \'from transformers import pipeline; print(pipeline("translation", model="{out}")("…"))\'')


def export_ct2_dispatch(folder: Path, out: Path, quantization: str, console: Console) -> None:
    try:
        from tt.model.ct2 import export_ct2
    except ModuleNotFoundError as err:
        if err.name == "tt.model.ct2":
            raise UserError("this tt has no CTranslate2 export (tt.model.ct2 is missing)") from None
        raise UserError(f"--format ct2 needs {err.name}: pip install 'tt-translator[ct2]'") from None
    export_ct2(folder, out, quantization, console)


def read_metrics(folder: Path) -> list[dict]:
    """metrics.jsonl for the model card; an unreadable file only costs the card its training time."""
    from tt.cli.info_command import read_metrics as read

    try:
        return read(folder) if (folder / METRICS).exists() else []
    except UserError:
        return []
