"""tt.data.parallel_encode: tokenizing on all cores writes the shards one process writes."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import random

import numpy as np
import pytest

from conftest import write_tsv
from tt.data import parallel_encode, prepare as preparing
from tt.data.clean import CleaningConfig
from tt.data.corpus import CorpusSpec
from tt.data.prepare import prepare
from tt.data.prepared_folder import MANIFEST, PrepareRequest
from tt.data.tokenizer import EOS_ID, TokenizerConfig


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(parallel_encode, "BLOCK_BYTES", 300)
    monkeypatch.setattr(parallel_encode, "PARALLEL_MIN_BYTES", 0)


def corpus_lines(n: int) -> list[tuple[str, str]]:
    rng = random.Random(8)
    return [("我有" + "书" * rng.randrange(1, 9) + f"{i}。", f"I have {i} " + "books " * rng.randrange(1, 5)) for i in range(n)]


def test_workers_write_the_shards_one_process_writes(tmp_path, small_blocks, monkeypatch):
    """Blocks of a few lines on two workers, or the whole file here: the same bytes (digests) in every file."""
    corpus = write_tsv(tmp_path / "corpus.tsv", corpus_lines(1500))
    request = PrepareRequest(
        train=CorpusSpec(path=str(corpus)), dev=None, cleaning=CleaningConfig(),
        tokenizer_config=TokenizerConfig(vocab_size=300), seed=2, dev_size=None,
    )
    pools = []
    real_workers = parallel_encode.answers_in_order
    monkeypatch.setattr(parallel_encode, "answers_in_order", lambda *args: pools.append(1) or real_workers(*args))
    manifests = {}
    for workers in (1, 2):
        monkeypatch.setattr(preparing, "usable_cores", lambda workers=workers: workers)
        prepare(request, tmp_path / f"on-{workers}")
        manifests[workers] = json.loads((tmp_path / f"on-{workers}" / MANIFEST).read_text())
    assert len(pools) == 1  # the second preparation, alone, used workers
    assert manifests[1]["dev_pairs"] == 75 and manifests[1]["train_pairs"] == 1425
    assert manifests[2] == manifests[1]
    assert not multiprocessing.active_children()


def test_encode_block_leaves_out_held_out_sources_and_ends_rows_in_eos(tmp_path):
    from tt.data.tokenizer import train_tokenizer

    pairs = corpus_lines(300)
    tokenizer, _ = train_tokenizer(pairs, TokenizerConfig(vocab_size=300))
    encoding = parallel_encode.encoding_for(tokenizer, {pairs[1][0]}, np.uint16, np.uint16)
    block = "".join(f"{s}\t{t}\n" for s, t in pairs[:3]).encode()
    encoded = parallel_encode.encode_block(parallel_encode._Models(encoding), block)
    assert encoded.lines == 3 and encoded.pairs == 2
    expected = [tokenizer.encode_src(pairs[0][0]), tokenizer.encode_src(pairs[2][0])]
    assert encoded.src_ids.tolist() == expected[0] + expected[1]
    assert encoded.src_lengths.tolist() == [len(expected[0]), len(expected[1])]
    assert encoded.tgt_ids.dtype == np.uint16 and encoded.tgt_ids[-1] == EOS_ID


def test_an_interrupted_pass_stops_its_workers(tmp_path, small_blocks):
    from tt.data.tokenizer import train_tokenizer

    pairs = corpus_lines(2000)
    tokenizer, _ = train_tokenizer(pairs, TokenizerConfig(vocab_size=300))
    cleaned = tmp_path / "cleaned.tsv"
    cleaned.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    encoding = parallel_encode.encoding_for(tokenizer, set(), np.uint16, np.uint16)
    with pytest.raises(KeyboardInterrupt):
        with contextlib.closing(parallel_encode.encoded_blocks(cleaned, encoding, workers=2)) as blocks:
            for count, _ in enumerate(blocks):
                if count == 3:
                    raise KeyboardInterrupt
    assert not multiprocessing.active_children()
