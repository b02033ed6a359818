"""tt.data.corpus: TSV, JSONL and aligned-pair readers, their errors (with file:line), and specs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tt.data.corpus import CorpusSpec, Pair, check_spec, read_pairs, resolve_format
from tt.data.errors import UserError


def write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def write_text(path: Path, text: str) -> str:
    return write_bytes(path, text.encode("utf-8"))


def read_all(**spec) -> list[Pair]:
    return list(read_pairs(CorpusSpec(**spec)))


# ---- TSV


def test_tsv_default_columns(tmp_path):
    """Column 1 is the source, column 2 the target; each pair knows its file:line."""
    path = write_text(tmp_path / "c.tsv", "你好\tHello\n谢谢\tThanks\n")
    assert read_all(path=path) == [
        Pair("你好", "Hello", f"{path}:1"),
        Pair("谢谢", "Thanks", f"{path}:2"),
    ]


def test_tsv_chosen_columns(tmp_path):
    """--src-col 2 --tgt-col 1 swaps the sides; columns beyond those chosen are ignored."""
    path = write_text(tmp_path / "c.tsv", "Hello\t你好\tnote\nThanks\t谢谢\n")
    pairs = read_all(path=path, src_col=2, tgt_col=1)
    assert [(p.src, p.tgt) for p in pairs] == [("你好", "Hello"), ("谢谢", "Thanks")]


def test_tsv_third_column(tmp_path):
    """A column past the second can be chosen."""
    path = write_text(tmp_path / "c.tsv", "1\tHello\t你好\n")
    assert [(p.src, p.tgt) for p in read_all(path=path, src_col=3, tgt_col=2)] == [("你好", "Hello")]


def test_bom_on_first_line_is_ignored(tmp_path):
    """A UTF-8 byte-order mark does not become part of the first source."""
    path = write_bytes(tmp_path / "c.tsv", b"\xef\xbb\xbf" + "你好\tHello\n谢谢\tThanks\n".encode())
    assert [p.src for p in read_all(path=path)] == ["你好", "谢谢"]


def test_crlf_line_ends(tmp_path):
    """Windows line ends do not leak a \\r into the last column."""
    path = write_bytes(tmp_path / "c.tsv", "你好\tHello\r\n谢谢\tThanks\r\n".encode())
    assert [(p.src, p.tgt) for p in read_all(path=path)] == [("你好", "Hello"), ("谢谢", "Thanks")]


def test_last_line_without_newline(tmp_path):
    """The final line is read even without a trailing newline."""
    path = write_text(tmp_path / "c.tsv", "你好\tHello\n谢谢\tThanks")
    assert [p.tgt for p in read_all(path=path)] == ["Hello", "Thanks"]


def test_blank_line_is_an_empty_pair(tmp_path):
    """A blank line is kept as an empty pair (cleaning counts it) with its own where."""
    path = write_text(tmp_path / "c.tsv", "你好\tHello\n\n谢谢\tThanks\n")
    pairs = read_all(path=path)
    assert pairs[1] == Pair("", "", f"{path}:2")
    assert pairs[2].where == f"{path}:3"


def test_missing_column_names_file_and_line(tmp_path):
    """A line with too few fields fails with file:line of that line."""
    path = write_text(tmp_path / "c.tsv", "你好\tHello\n谢谢\tThanks\nonly one field\n")
    with pytest.raises(UserError, match="tab-separated") as err:
        read_all(path=path)
    assert f"{path}:3" in str(err.value)


def test_missing_chosen_column(tmp_path):
    """Two fields are not enough when --src-col 3 is asked for."""
    path = write_text(tmp_path / "c.tsv", "a\tb\tc\nd\te\n")
    with pytest.raises(UserError) as err:
        read_all(path=path, src_col=3, tgt_col=1)
    assert f"{path}:2" in str(err.value)


def test_invalid_utf8_names_line(tmp_path):
    """Bytes that are not UTF-8 fail with the line they are on."""
    path = write_bytes(tmp_path / "c.tsv", "你好\tHello\n谢谢\tThanks\n".encode() + b"bad \xff\tbyte\n")
    with pytest.raises(UserError, match="invalid UTF-8") as err:
        read_all(path=path)
    assert f"{path}:3" in str(err.value)


def test_missing_file(tmp_path):
    """A file that is not there fails with its path."""
    path = str(tmp_path / "nowhere.tsv")
    with pytest.raises(UserError) as err:
        read_all(path=path)
    assert path in str(err.value)


def test_reading_is_lazy(tmp_path):
    """Pairs stream out one by one: an error on a late line waits until iteration reaches it."""
    lines = [f"句子{i}\tsentence {i}\n" for i in range(5)] + ["broken line\n"]
    path = write_text(tmp_path / "c.tsv", "".join(lines))
    pairs = read_pairs(CorpusSpec(path=path))
    first = list(itertools.islice(pairs, 5))
    assert [p.tgt for p in first] == [f"sentence {i}" for i in range(5)]
    with pytest.raises(UserError) as err:
        next(pairs)
    assert f"{path}:6" in str(err.value)


def test_invalid_utf8_late_is_lazy(tmp_path):
    """A bad byte on the last line does not stop the lines before it from being read."""
    path = write_bytes(tmp_path / "c.tsv", "你好\tHello\n".encode() + b"\xc3\x28\tx\n")
    pairs = read_pairs(CorpusSpec(path=path))
    assert next(pairs).tgt == "Hello"
    with pytest.raises(UserError, match=f"{path}:2"):
        next(pairs)


# ---- JSONL


def jsonl(path: Path, lines: list[str]) -> str:
    return write_text(path, "".join(line + "\n" for line in lines))


def test_jsonl_good(tmp_path):
    """Objects with src and tgt become pairs; blank lines are skipped; extra keys ignored."""
    records = [{"src": "你好", "tgt": "Hello"}, {"src": "谢谢", "tgt": "Thanks", "id": 7}]
    path = jsonl(tmp_path / "c.jsonl", [json.dumps(records[0], ensure_ascii=False), "", json.dumps(records[1])])
    assert read_all(path=path) == [Pair("你好", "Hello", f"{path}:1"), Pair("谢谢", "Thanks", f"{path}:3")]


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"src": "你好", "tgt": ', "invalid JSON"),
        ('["你好", "Hello"]', "JSON object"),
        ('{"src": "你好"}', '"tgt"'),
        ('{"tgt": "Hello"}', '"src"'),
        ('{"src": "你好", "tgt": 3}', "must be a string"),
        ('{"src": null, "tgt": "Hello"}', "must be a string"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, bad, message):
    """Each kind of bad record fails with file:line and what is wrong."""
    path = jsonl(tmp_path / "c.jsonl", ['{"src": "a", "tgt": "b"}', bad])
    with pytest.raises(UserError, match=message) as err:
        read_all(path=path)
    assert f"{path}:2" in str(err.value)


# ---- Moses-style aligned files


def test_aligned_pair(tmp_path):
    """Line n of --src pairs with line n of --tgt; a BOM on either file is dropped."""
    src = write_text(tmp_path / "c.zh", "\ufeff你好\n谢谢\n")
    tgt = write_text(tmp_path / "c.en", "\ufeffHello\r\nThanks\r\n")
    assert read_all(src_path=src, tgt_path=tgt) == [
        Pair("你好", "Hello", f"{src}:1"),
        Pair("谢谢", "Thanks", f"{src}:2"),
    ]


@pytest.mark.parametrize("short_side", ["src", "tgt"])
def test_aligned_files_of_different_length(tmp_path, short_side):
    """The shorter file is named, at the line it lacks, and the other file is mentioned."""
    two, three = "一\n二\n", "one\ntwo\nthree\n"
    src = write_text(tmp_path / "c.zh", two if short_side == "src" else three)
    tgt = write_text(tmp_path / "c.en", three if short_side == "src" else two)
    short, long_ = (src, tgt) if short_side == "src" else (tgt, src)
    pairs = read_pairs(CorpusSpec(src_path=src, tgt_path=tgt))
    assert len(list(itertools.islice(pairs, 2))) == 2
    with pytest.raises(UserError) as err:
        next(pairs)
    message = str(err.value)
    assert message.startswith(f"{short}:3")
    assert long_ in message


# ---- formats and specs


@pytest.mark.parametrize(
    "name, expected",
    [("c.tsv", "tsv"), ("c.TSV", "tsv"), ("c.txt", "tsv"), ("corpus", "tsv"), ("c.jsonl", "jsonl"), ("c.json", "jsonl")],
)
def test_resolve_format_by_extension(name, expected):
    assert resolve_format(CorpusSpec(path=name)) == expected


def test_resolve_format_override():
    """--format wins over the extension."""
    assert resolve_format(CorpusSpec(path="c.tsv", format="jsonl")) == "jsonl"
    assert resolve_format(CorpusSpec(path="c.data", format="tsv")) == "tsv"


def test_resolve_format_aligned_pair_is_text():
    assert resolve_format(CorpusSpec(src_path="a.zh", tgt_path="a.en")) == "text"


def test_resolve_format_errors():
    """An unknown extension or --format value fails, naming it."""
    with pytest.raises(UserError, match=r"\.xlsx"):
        resolve_format(CorpusSpec(path="c.xlsx"))
    with pytest.raises(UserError, match="csvish"):
        resolve_format(CorpusSpec(path="c.tsv", format="csvish"))


def test_override_reads_jsonl_with_tsv_extension(tmp_path):
    """format="jsonl" reads a .tsv-named file as JSON lines."""
    path = jsonl(tmp_path / "c.tsv", ['{"src": "你好", "tgt": "Hello"}'])
    assert [(p.src, p.tgt) for p in read_all(path=path, format="jsonl")] == [("你好", "Hello")]


def test_format_text_needs_two_files(tmp_path):
    path = write_text(tmp_path / "c.tsv", "a\tb\n")
    with pytest.raises(UserError, match="--src"):
        read_all(path=path, format="text")


def test_check_spec_accepts_good_specs(tmp_path):
    path = write_text(tmp_path / "c.tsv", "a\tb\n")
    check_spec(CorpusSpec(path=path))
    check_spec(CorpusSpec(src_path=path, tgt_path=path))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"path": "{f}", "src_path": "{f}", "tgt_path": "{f}"}, "not both"),
        ({"path": "{f}", "src_path": "{f}"}, "not both"),
        ({"src_path": "{f}"}, "--tgt"),
        ({}, "--src"),
        ({"path": "{f}", "src_col": 2, "tgt_col": 2}, "both 2"),
        ({"path": "{f}", "src_col": 0}, "count from 1"),
        ({"path": "{d}"}, "folder"),
        ({"path": "{m}"}, "no such file"),
        ({"src_path": "{f}", "tgt_path": "{m}"}, "no such file"),
    ],
)
def test_check_spec_errors(tmp_path, fields, message):
    """Specs that cannot be read fail early with a message saying why."""
    good = write_text(tmp_path / "c.tsv", "a\tb\n")
    folder = tmp_path / "folder.tsv"
    folder.mkdir()
    names = {"f": good, "d": folder, "m": tmp_path / "gone.tsv"}
    spec = CorpusSpec(**{k: v.format(**names) if isinstance(v, str) else v for k, v in fields.items()})
    with pytest.raises(UserError, match=message):
        check_spec(spec)


def test_format_text_for_one_file_is_one_line_on_both_paths(tmp_path):
    from tt.data.clean import CleaningConfig, CleaningReport
    from tt.data.parallel_clean import clean_corpus

    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("a\tb\n", encoding="utf-8")
    spec = CorpusSpec(path=str(corpus), format="text")
    with pytest.raises(UserError, match="^--format text needs a pair of files: --src FILE --tgt FILE$"):
        list(read_pairs(spec))
    with pytest.raises(UserError, match="^--format text needs a pair of files"):
        list(clean_corpus(spec, CleaningConfig(), CleaningReport(), workers=2))
