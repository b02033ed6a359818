"""`tt export`: a trained model in the formats the field serves models with.

    --format hf    a Hugging Face MarianMT folder: transformers' MarianMTModel and
                   MarianTokenizer load it offline (tt.model.marian_folder)
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
from tt.model.ct2 import check_quantization, export_ct2
from tt.model.marian import check_exportable
from tt.model.marian_folder import is_marian_folder, marian_files
from tt.model.model_card import check_language_code, guess_languages, model_card

FORMATS = ("hf", "ct2")


def run_export(
    folder: Path, out: Path, format: str, quantization: str, overwrite: bool,
    languages: tuple[str | None, str | None], console: Console,
) -> None:
    if format not in FORMATS:
        raise UserError(f"--format must be hf or ct2, not {format!r}")
    check_quantization(quantization)
    check_language_code(languages[0], "--src-lang")
    check_language_code(languages[1], "--tgt-lang")
    if format == "hf" and quantization != "float32":
        raise UserError("--quantization is for --format ct2; a Hugging Face folder holds float32 weights")
    check_out(out, folder, overwrite)
    if is_marian_folder(folder):
        if format == "ct2":  # its tokenizer maps Marian's own vocabulary, which tt's CTranslate2 layout cannot hold
            if exported_by_tt(folder):  # ctranslate2's converter assumes Marian's start token (the pad), not tt's <s>
                raise UserError(f"{folder}: exported by tt; export the tt model folder it came from with --format ct2")
            raise UserError(f"{folder}: a Hugging Face Marian model; convert it with ctranslate2's own ct2-transformers-converter")
        raise UserError(f"{folder}: is already a Hugging Face Marian folder")
    if format == "ct2":
        with console.status(f"writing the CTranslate2 model ({quantization})…"):
            size = export_ct2(folder, out, quantization)
        console.print(f"wrote {out}: CTranslate2 model, {quantization}, {size / 1e6:.1f} MB")
        return
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
    console.print(f"next: tt translate --model {out} \"…\", or transformers (its README.md says how)")


def check_out(out: Path, folder: Path, overwrite: bool) -> None:
    """OUT may be new, empty, or (with --overwrite) an earlier export: replacing anything else
    would delete files tt did not write, perhaps the very model being exported."""
    if out.exists() and not out.is_dir():  # --overwrite replaces a folder, never a file
        raise UserError(f"{out}: is a file; export to a folder")
    where, model = out.resolve(), folder.resolve()
    if where == model:
        raise UserError(f"{out}: is the model folder itself; export to another folder")
    if model.is_relative_to(where):
        raise UserError(f"{out}: holds the model folder {folder}; export to another folder")
    if Path.cwd().resolve().is_relative_to(where):
        raise UserError(f"{out}: is the folder you are working in (or holds it); export to another folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UserError(f"{out}: already exists; choose another folder or pass --overwrite")
    if not is_export(out):
        raise UserError(f"{out}: holds files that are not an exported model; --overwrite replaces only an earlier export")


def exported_by_tt(folder: Path) -> bool:
    """tt's export starts decoding from its own <s>; Marian's models start from the pad id."""
    from tt.model.model_record import read_json

    values = read_json(folder / "config.json")
    return values.get("decoder_start_token_id") != values.get("pad_token_id")


def is_export(folder: Path) -> bool:
    """An earlier `tt export` (or any Marian or CTranslate2 model folder): what --overwrite may replace."""
    return is_marian_folder(folder) or ((folder / "model.bin").is_file() and (folder / "config.json").is_file())


def read_metrics(folder: Path) -> list[dict]:
    """metrics.jsonl for the model card; an unreadable file only costs the card its training time."""
    from tt.cli.info_command import read_metrics as read

    try:
        return read(folder) if (folder / METRICS).exists() else []
    except UserError:
        return []
