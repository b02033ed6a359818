"""Properties over generated input: corpus readers, normalization, tokenizer, `tt translate`.

The example-based tests pin the cases we thought of; these let hypothesis look for the ones
we did not (odd whitespace, control characters, byte-order marks, broken UTF-8, emoji).
Example counts stay small so the file runs in seconds on two cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tt.cli.main import app
from tt.data.corpus import CorpusSpec, Pair, read_lines, read_pairs
from tt.data.errors import UserError
from tt.data.normalize import normalize
from tt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

# conftest's autouse `_deterministic` is function-scoped; it only seeds torch, so reusing
# it across examples is harmless.
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Characters that have upset text pipelines before: a BOM, zero-width and no-break spaces,
# Unicode line breaks that str.splitlines (but not a file) splits on, controls, a combining
# accent, compatibility forms that NFKC changes, SentencePiece's own space marker, emoji.
TRICKY = [
    "\ufeff", "\u200b", "\u00a0", "\u3000", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c",
    "\x00", "\x07", "\x1b", "\x7f", "\u0301", "\u00b4", "ｆ", "！", "ﬁ", "\u2581", " ", "\\", '"',
    "😀", "👍", "\U0001f3fd", "\u200d", "你", "é",
]
# Any character UTF-8 can spell (not lone surrogates: no file or pipe holds them), controls
# included, with the tricky ones mixed in.
CHARACTERS = st.one_of(st.characters(codec="utf-8"), st.sampled_from(TRICKY))


def text(exclude: str = "", max_size: int = 20) -> st.SearchStrategy[str]:
    alphabet = CHARACTERS.filter(lambda c: c not in exclude) if exclude else CHARACTERS
    return st.text(alphabet, max_size=max_size)


# A field of a line-based file: no tab (the TSV separator) and nothing that ends a line.
FIELD = text(exclude="\t\n\r")
LINE = text(exclude="\n\r")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    # One folder for all examples (tmp_path is per test, not per example); each example
    # overwrites the same file names.
    return tmp_path_factory.mktemp("properties")


def read_all(**spec) -> list[Pair]:
    return list(read_pairs(CorpusSpec(**spec)))


def without_bom(lines: list[str]) -> list[str]:
    # Documented: a byte-order mark at the very start of a file is not text.
    return [lines[0].removeprefix("\ufeff"), *lines[1:]] if lines else lines


# ---- corpus readers: what is written is read back, each pair knowing its file:line


@PROPERTY
@given(pairs=st.lists(st.tuples(FIELD, FIELD), max_size=8))
def test_tsv_round_trip(folder, pairs):
    path = folder / "c.tsv"
    path.write_bytes("".join(f"{src}\t{tgt}\n" for src, tgt in pairs).encode("utf-8"))
    srcs = without_bom([src for src, _ in pairs])
    expected = []
    for number, (src, tgt) in enumerate(zip(srcs, [tgt for _, tgt in pairs]), start=1):
        if not f"{src}\t{tgt}".strip():
            # Documented in _read_tsv: a blank line (whitespace only, the tab included) is
            # one pair with two empty sides, so that cleaning can count and drop it.
            src = tgt = ""
        expected.append(Pair(src, tgt, f"{path}:{number}"))
    assert read_all(path=str(path)) == expected


@PROPERTY
@given(pairs=st.lists(st.tuples(text(max_size=30), text(max_size=30)), max_size=8), ascii_only=st.booleans())
def test_jsonl_round_trip(folder, pairs, ascii_only):
    # JSON escapes tabs and line ends, so any text at all goes through this format.
    path = folder / "c.jsonl"
    lines = [json.dumps({"src": src, "tgt": tgt}, ensure_ascii=ascii_only) for src, tgt in pairs]
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    expected = [Pair(src, tgt, f"{path}:{number}") for number, (src, tgt) in enumerate(pairs, start=1)]
    assert read_all(path=str(path)) == expected


@PROPERTY
@given(pairs=st.lists(st.tuples(LINE, LINE), max_size=8), final_newline=st.booleans())
def test_aligned_files_round_trip(folder, pairs, final_newline):
    # Plain-text files have no blank-line rule: a line of spaces is a pair of spaces. A final
    # line without its "\n" is still a line, unless it is empty (then there is nothing there).
    src_path, tgt_path = folder / "c.zh", folder / "c.en"
    end = "\n" if final_newline or (pairs and (pairs[-1][0] == "" or pairs[-1][1] == "")) else ""
    for path, side in ((src_path, [s for s, _ in pairs]), (tgt_path, [t for _, t in pairs])):
        path.write_bytes(("\n".join(side) + end if side else "").encode("utf-8"))
    srcs, tgts = without_bom([s for s, _ in pairs]), without_bom([t for _, t in pairs])
    expected = [Pair(s, t, f"{src_path}:{n}") for n, (s, t) in enumerate(zip(srcs, tgts), start=1)]
    assert read_all(src_path=str(src_path), tgt_path=str(tgt_path)) == expected


@PROPERTY
@given(src_lines=st.lists(LINE, max_size=6), tgt_lines=st.lists(LINE, max_size=6))
def test_aligned_files_of_different_lengths_name_the_short_one(folder, src_lines, tgt_lines):
    src_path, tgt_path = folder / "d.zh", folder / "d.en"
    src_path.write_bytes("".join(line + "\n" for line in src_lines).encode("utf-8"))
    tgt_path.write_bytes("".join(line + "\n" for line in tgt_lines).encode("utf-8"))
    spec = dict(src_path=str(src_path), tgt_path=str(tgt_path))
    if len(src_lines) == len(tgt_lines):
        assert len(read_all(**spec)) == len(src_lines)
        return
    short = src_path if len(src_lines) < len(tgt_lines) else tgt_path
    with pytest.raises(UserError) as caught:
        read_all(**spec)
    # The first line the short file lacks is where the problem is.
    assert str(caught.value).startswith(f"{short}:{min(len(src_lines), len(tgt_lines)) + 1}: ")


@PROPERTY
@given(lines=st.lists(LINE, max_size=8))
def test_read_lines_gives_each_line_and_its_number(folder, lines):
    path = folder / "lines.txt"
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    assert list(read_lines(str(path))) == list(enumerate(without_bom(lines), start=1))


# Pieces that byte soup rarely finds by itself: separators, line ends, a BOM, broken UTF-8,
# and JSON (valid records, wrong types, a number too long for int(), nesting too deep).
FRAGMENTS = [
    b"\t", b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\xff", b"\xe4\xbd", b"\xc3\x28", b"\x00",
    b'{"src": "a", "tgt": "b"}', b'{"src": 1, "tgt": "b"}', b'{"src": "a"}', b"[]", b'"x"',
    b"{", b"[", b"}", b'"', b"\\u00e9", b"\\ud800", b"1e999", b"NaN",
]
BYTES = st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(FRAGMENTS)), max_size=12).map(b"".join)


def check_reads_or_points_at_a_line(names_and_data: list[tuple[Path, bytes]], **spec) -> None:
    try:
        pairs = read_all(**spec)
    except UserError as err:
        # One line that starts "FILE:LINE: ", the line being one the file has (or the one
        # after its last, for a file that ends too soon).
        message = str(err)
        assert "\n" not in message
        lines_in = {str(path): data.count(b"\n") + 1 for path, data in names_and_data}
        named = [name for name in lines_in if message.startswith(f"{name}:")]
        assert named, message
        match = re.match(r"(\d+): ", message[len(named[0]) + 1 :])
        assert match, message
        assert 1 <= int(match.group(1)) <= lines_in[named[0]] + 1, message
    else:
        for pair in pairs:
            assert isinstance(pair.src, str) and isinstance(pair.tgt, str)
            assert re.fullmatch(r".*:\d+", pair.where)


@PROPERTY
@given(data=BYTES, fmt=st.sampled_from(["tsv", "jsonl"]))
def test_any_bytes_give_pairs_or_a_user_error_at_a_line(folder, data, fmt):
    path = folder / f"soup.{fmt}"
    path.write_bytes(data)
    check_reads_or_points_at_a_line([(path, data)], path=str(path))


# Two JSONL lines that byte soup does not find and json.loads rejects with other errors than
# JSONDecodeError: int() of over 4300 digits (ValueError), nesting past the recursion limit
# (RecursionError). Built here, not as @example, so that a failure report stays short.
@pytest.mark.parametrize("line", [b"1" * 4301, b"[" * 1000], ids=["long-number", "deep-nesting"])
def test_jsonl_lines_json_rejects_otherwise_give_a_user_error_at_a_line(folder, line):
    path = folder / "rejects.jsonl"
    data = b'{"src": "a", "tgt": "b"}\n' + line + b"\n"
    path.write_bytes(data)
    check_reads_or_points_at_a_line([(path, data)], path=str(path))


@PROPERTY
@given(src_data=BYTES, tgt_data=BYTES)
def test_any_bytes_in_aligned_files_give_pairs_or_a_user_error_at_a_line(folder, src_data, tgt_data):
    src_path, tgt_path = folder / "soup.zh", folder / "soup.en"
    src_path.write_bytes(src_data)
    tgt_path.write_bytes(tgt_data)
    names_and_data = [(src_path, src_data), (tgt_path, tgt_data)]
    check_reads_or_points_at_a_line(names_and_data, src_path=str(src_path), tgt_path=str(tgt_path))


# ---- normalization


# normalize also takes lone surrogates (a command-line argument spells undecodable bytes so).
ANY_TEXT = st.text(st.one_of(CHARACTERS, st.characters(categories=["Cs"])), max_size=40)


@PROPERTY
@given(text=ANY_TEXT)
@example(text="a\u200b\u0301")  # a zero-width space between a letter and its accent
@example(text="\u00b4x")  # NFKC turns the acute accent into a space and a combining mark
@example(text="\ud800 \udcff")
def test_normalize_is_idempotent_and_leaves_single_inner_spaces(text):
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip()
    assert "  " not in once
    assert not set(once) & set("\t\n\r\x0b\x0c\x85\u2028\u2029\u00a0\u3000")
    # Whatever whitespace is left is a plain space, one at a time.
    assert all(c == " " for c in once if c.isspace())
    once.encode("utf-8")  # no lone surrogate is left for the tokenizer to choke on


# ---- tokenizer


@pytest.fixture(scope="module")
def tokenizer(trained_model) -> Tokenizer:
    return Tokenizer.load(trained_model)


# What decode_tgt does on purpose: a translation stays one line, so control characters
# (C0, DEL, NEL and the Unicode line and paragraph separators) come back as spaces.
CONTROL_AS_SPACE = {c: " " for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]}


@PROPERTY
@given(text=text(exclude="\u2581", max_size=40).map(normalize))
@example(text="\x00a\x7fb")  # controls are spelled as bytes, and come back as spaces
@example(text="😀 ｆ")
def test_target_text_round_trips_through_the_tokenizer(tokenizer, text):
    # Found: encode_tgt appends EOS (and never BOS); decode_tgt drops EOS, PAD and BOS, so
    # decoding with or without the final EOS gives the same text. Byte fallback spells unseen
    # characters as bytes, so <unk> never appears, and every normalized text comes back with
    # its control characters turned into spaces (none left at the ends, as transformers'
    # MarianTokenizer also trims). "▁" is left to the next test.
    ids = tokenizer.encode_tgt(text)
    assert ids[-1] == EOS_ID
    body = ids[:-1]
    assert not {EOS_ID, BOS_ID, PAD_ID, UNK_ID} & set(body)
    expected = text.translate(CONTROL_AS_SPACE).strip()
    assert tokenizer.decode_tgt(body) == expected
    assert tokenizer.decode_tgt(ids) == expected


@PROPERTY
@given(parts=st.tuples(text(max_size=10), text(max_size=10)))
@example(parts=("", ""))
def test_space_marker_character_round_trips_through_the_tokenizer(tokenizer, parts):
    # U+2581 is SentencePiece's own space marker: a literal one would come back as a space.
    # normalize maps it to "_", so normalized text, whatever it held, round-trips.
    text = normalize(parts[0] + "\u2581" + parts[1])
    assert "\u2581" not in text
    ids = tokenizer.encode_tgt(text)
    assert tokenizer.decode_tgt(ids) == text.translate(CONTROL_AS_SPACE).strip()


# ---- `tt translate`: one line in, one line out

# Lines as a user's file or pipe may hold them: empty, spaces only, emoji, controls, "\r".
INPUT_LINES = st.lists(
    st.one_of(text(exclude="\n"), st.sampled_from(["", " ", "   ", "\t", "\u3000 ", "😀", "\r"])),
    min_size=1,
    max_size=6,
)


def joined(lines: list[str], final_newline: bool) -> str:
    # Without a final "\n" an empty last line would vanish: keep it then.
    return "\n".join(lines) + ("\n" if final_newline or lines[-1] == "" else "")


def output_lines(result) -> list[str]:
    # Bytes, not result.stdout: that one turns "\r\n" into "\n" and replaces bad UTF-8.
    out = result.stdout_bytes.decode("utf-8")
    assert out.endswith("\n"), repr(out)
    return out[:-1].split("\n")


def check_one_line_each(lines: list[str], outputs: list[str]) -> None:
    assert len(outputs) == len(lines), (lines, outputs)
    for line, out in zip(lines, outputs):
        if not normalize(line):
            assert out == "", (line, out)
        # Printed translations are single lines: no "\r" or other line break inside.
        assert not set(out) & set("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), out


@PROPERTY
@given(lines=INPUT_LINES, final_newline=st.booleans())
@example(lines=["a\rb"], final_newline=True)  # a lone "\r" is not a line end on Linux
def test_translate_stdin_gives_one_line_per_line(trained_model, lines, final_newline):
    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model)], input=joined(lines, final_newline))
    assert result.exit_code == 0, (result.output, result.exception)
    check_one_line_each(lines, output_lines(result))


@PROPERTY
@given(lines=INPUT_LINES, final_newline=st.booleans())
@example(lines=["a\rb"], final_newline=True)
def test_translate_file_gives_one_line_per_line(trained_model, folder, lines, final_newline):
    path = folder / "input.txt"
    path.write_bytes(joined(lines, final_newline).encode("utf-8"))
    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--file", str(path)])
    assert result.exit_code == 0, (result.output, result.exception)
    check_one_line_each(lines, output_lines(result))


@PROPERTY
@given(lines=INPUT_LINES, final_newline=st.booleans())
@example(lines=["a\rb", ""], final_newline=True)
def test_translate_json_gives_one_object_per_line(trained_model, lines, final_newline):
    result = CliRunner().invoke(app, ["translate", "--model", str(trained_model), "--json"], input=joined(lines, final_newline))
    assert result.exit_code == 0, (result.output, result.exception)
    records = [json.loads(out) for out in output_lines(result)]
    assert len(records) == len(lines)
    for line, record in zip(lines, records):
        assert isinstance(record, dict)
        # "source" is the line as read (its "\r" line end aside), so it normalizes the same.
        assert normalize(record["source"]) == normalize(line)
        check_one_line_each([line], [record["translation"]])
        if not normalize(line):
            assert record["steps"] == []


@PROPERTY
@given(lines=st.lists(st.binary(max_size=12).filter(lambda b: b"\n" not in b), min_size=1, max_size=6), via_file=st.booleans())
@example(lines=[b"\xff", b"ok", b""], via_file=False)
@example(lines=[b"\xef\xbb\xbf\xc3", b"\r", b"\x0c\xe2\x80\xa8"], via_file=True)
def test_translate_any_bytes_give_one_line_each_or_a_one_line_error(trained_model, folder, lines, via_file):
    # Any bytes may come down a pipe or sit in a file: either one output line per input line,
    # or a UserError (exit 1, one line on stderr), never a traceback.
    data = b"\n".join(lines) + b"\n"
    command = ["translate", "--model", str(trained_model)]
    if via_file:
        (folder / "input.bin").write_bytes(data)
        result = CliRunner().invoke(app, [*command, "--file", str(folder / "input.bin")])
    else:
        result = CliRunner().invoke(app, command, input=data)
    assert result.exit_code in (0, 1), (result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert len(output_lines(result)) == len(lines)
    else:
        assert isinstance(result.exception, SystemExit), result.exception
        assert result.stderr.count("\n") == 1, result.stderr
