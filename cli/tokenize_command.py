"""`tt tokenize`: what the model sees of a text. Normalized, then SentencePiece pieces and ids.

Byte-fallback pieces (`<0xE4>` …) are marked: a character the tokenizer never saw in
training is spelled as its UTF-8 bytes, each a piece the model must learn to combine.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from tt.cli.consoles import printable
from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.data.tokenizer import Tokenizer

SIDES = ("src", "tgt")


def tokenize(tokenizer: Tokenizer, text: str, side: str) -> dict:
    """The pieces exactly as the encoder (src) or decoder (tgt) would see them, </s> last."""
    if side not in SIDES:
        raise UserError(f"--side must be src or tgt, not {side!r}")
    normalized = normalize(text)
    ids = tokenizer.encode_src(normalized) if side == "src" else tokenizer.encode_tgt(normalized)
    piece = tokenizer.src_piece if side == "src" else tokenizer.tgt_piece
    return {
        "text": text,
        "normalized": normalized,
        "side": side,
        "pieces": [{"piece": piece(i), "id": i, "byte": tokenizer.is_byte(i, side)} for i in ids],
    }


def pieces_table(record: dict) -> Table:
    pieces = record["pieces"]
    n_bytes = sum(1 for p in pieces if p["byte"])
    table = Table(title=Text(printable(record["normalized"])), title_justify="left")  # Text: never markup
    table.add_column("#", justify="right")
    table.add_column("piece")
    table.add_column("id", justify="right")
    table.add_column("byte fallback")
    for position, item in enumerate(pieces, start=1):
        byte = item["byte"]
        table.add_row(str(position), Text(item["piece"], style="yellow" if byte else "bold"), str(item["id"]), "byte" if byte else "")
    table.caption = f"{len(pieces)} piece{'' if len(pieces) == 1 else 's'} ({n_bytes} byte fallback), {record['side']} vocabulary"
    table.min_width = len(table.caption)  # a caption wider than the table would wrap mid-phrase
    return table
