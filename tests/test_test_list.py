"""A fixed test list (data.test_list): parsed like other toolkits' lists, checked against the
corpus before anything is written, and the test set of the split, kept out of train and valid."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_audio
from test_data import DATA, OVERRIDES, RATE, make_ljspeech

from pwavenet import cli
from pwavenet.data.corpus import read_test_list, split_ids
from pwavenet.errors import DataError

IDS = [f"LJ001-{i:04d}" for i in range(6)]


def test_lists_of_ids_paths_and_other_toolkits_rows_are_read(tmp_path):
    listing = tmp_path / "test.txt"
    listing.write_text(
        "# the paper's test utterances\n"
        "LJ001-0003\n"
        "\n"
        "DUMMY/LJ001-0001.wav|Printing, in the only sense|text\n"  # Tacotron 2 filelist row
        "LJ001-0005 /data/wavs/LJ001-0005.wav  # Kaldi-style 'id path'\n"
        "LJ001-0003\n",  # listed twice: counted once
        encoding="utf-8",
    )
    assert read_test_list(listing, IDS) == ["LJ001-0003", "LJ001-0001", "LJ001-0005"]


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("LJ001-0001\nLJ009-0001\nLJ009-0002\n", r"test\.txt: 2 listed ids not in the corpus: "),
        ("# nothing but a comment\n\n", r"test\.txt: no utterance ids"),
    ],
)
def test_a_bad_list_is_a_one_line_error_naming_the_file(tmp_path, text, pattern):
    listing = tmp_path / "test.txt"
    listing.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=pattern) as err:
        read_test_list(listing, IDS)
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(DataError, match="unreadable test list"):
        read_test_list(tmp_path / "none.txt", IDS)


def test_only_the_first_missing_ids_are_named():
    with pytest.raises(
        DataError, match=r"7 listed ids not among the utterances: x0, x1, x2, x3, x4, \.\.\.$"
    ):
        split_ids(IDS, 1, 1, 0, [f"x{i}" for i in range(7)])


def test_the_listed_ids_are_the_test_set_and_the_rest_split_as_before():
    ids = [f"u{i:02d}" for i in range(20)]
    listed = ["u07", "u03", "u15"]
    split = split_ids(ids, valid=4, test=9, seed=5, test_ids=listed)  # test count is ignored
    assert sorted(u for u, s in split.items() if s == "test") == sorted(listed)
    assert list(split.values()).count("valid") == 4 and set(split) == set(ids)
    assert split == split_ids(reversed(ids), valid=4, test=9, seed=5, test_ids=listed[::-1])
    with pytest.raises(DataError, match="3 listed test \\+ at least 1 train"):
        split_ids(ids[:8] + listed, valid=8, test=0, seed=0, test_ids=listed)


def _preprocess(tmp_path, corpus, listing) -> int:
    dump = tmp_path / "dump"
    return cli.main(["preprocess", str(corpus), str(dump), *OVERRIDES, f"data.test_list={listing}"])


def test_preprocess_uses_the_list_and_keeps_it_out_of_training(tmp_path, capsys):
    corpus = make_ljspeech(tmp_path / "corpus", n=6)
    listing = tmp_path / "paper_test.txt"
    listing.write_text("LJ001-0004\nwavs/LJ001-0001.wav\n", encoding="utf-8")
    assert _preprocess(tmp_path, corpus, listing) == 0
    manifest = json.loads((tmp_path / "dump" / "manifest.json").read_text())
    split = {u["id"]: u["split"] for u in manifest["utterances"]}
    assert {u for u, s in split.items() if s == "test"} == {"LJ001-0004", "LJ001-0001"}
    assert list(split.values()).count("valid") == DATA.valid_utterances
    test_sources = (tmp_path / "dump" / "lists" / "test.txt").read_text().split()
    assert sorted(p.rsplit("/", 1)[-1] for p in test_sources) == [
        "LJ001-0001.wav",
        "LJ001-0004.wav",
    ]
    for other in ("train", "valid"):
        text = (tmp_path / "dump" / "lists" / f"{other}.txt").read_text()
        assert "LJ001-0004" not in text and "LJ001-0001" not in text
    assert "split train 3 / valid 1 / test 2" in capsys.readouterr().out


def test_ids_missing_from_the_corpus_stop_preprocess_before_it_writes(tmp_path, capsys):
    corpus = make_ljspeech(tmp_path / "corpus", n=4)
    listing = tmp_path / "paper_test.txt"
    listing.write_text("LJ001-0001\nLJ050-0001\n", encoding="utf-8")
    assert _preprocess(tmp_path, corpus, listing) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{listing}: 1 listed ids not in the corpus: LJ050-0001" in err
    assert not (tmp_path / "dump").exists()


def test_a_listed_utterance_skipped_as_unusable_is_an_error(tmp_path, capsys):
    corpus = make_ljspeech(tmp_path / "corpus", n=5)
    write_audio(corpus / "wavs" / "LJ001-0002.wav", np.zeros(RATE, np.float32), RATE)  # silent
    listing = tmp_path / "paper_test.txt"
    listing.write_text("LJ001-0002\nLJ001-0003\n", encoding="utf-8")
    assert _preprocess(tmp_path, corpus, listing) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{listing}: 1 listed ids were skipped as unusable: LJ001-0002" in err
    assert not (tmp_path / "dump" / "manifest.json").exists()
