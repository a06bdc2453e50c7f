"""Corpus indexing, preprocessing with bad input, the feature cache and segment alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from conftest import tone, write_audio

from pwavenet import cli
from pwavenet.audio import LogMelSpectrogram
from pwavenet.config import AudioConfig, DataConfig, load_config
from pwavenet.data.cache import FeatureCache
from pwavenet.data.corpus import scan_corpus, split_ids
from pwavenet.data.dataset import Collate, SegmentDataset
from pwavenet.data.preprocess import preprocess_corpus
from pwavenet.errors import AudioError, DataError

RATE = 16000
AUDIO = AudioConfig(
    sample_rate=RATE, n_fft=512, hop_length=128, win_length=512, n_mels=40, fmax=None
)
DATA = DataConfig(segment_length=2048, batch_size=2, valid_utterances=1, test_utterances=1)
OVERRIDES = [
    f"audio.sample_rate={RATE}",
    "audio.n_fft=512",
    "audio.hop_length=128",
    "audio.win_length=512",
    "audio.n_mels=40",
    "audio.fmax=null",
    "data.segment_length=2048",
    "data.valid_utterances=1",
    "data.test_utterances=1",
    "teacher.upsample_scales=[8, 16]",
    "student.upsample_scales=[8, 16]",
]


def make_ljspeech(root, n=6, seconds=0.6):
    wavs = root / "wavs"
    lines = []
    for i in range(n):
        uid = f"LJ001-{i:04d}"
        write_audio(wavs / f"{uid}.wav", tone(seconds + 0.1 * i, RATE, 150 + 20 * i, seed=i), RATE)
        lines.append(f"{uid}|Text {i}.|text {i}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# --------------------------------------------------------------------------- scanning and split


def test_scan_ljspeech(tmp_path):
    entries = scan_corpus(make_ljspeech(tmp_path, n=3))
    assert [e.id for e in entries] == ["LJ001-0000", "LJ001-0001", "LJ001-0002"]
    assert entries[1].text == "text 1" and entries[1].path.name == "LJ001-0001.wav"


def test_scan_any_folder(tmp_path):
    write_audio(tmp_path / "a" / "x.wav", tone(0.2, RATE), RATE)
    write_audio(tmp_path / "b" / "x.flac", tone(0.2, RATE), RATE)
    write_audio(tmp_path / "b" / "y.wav", tone(0.2, RATE), RATE)
    write_audio(tmp_path / "b" / "y.flac", tone(0.2, RATE), RATE)
    (tmp_path / "notes.txt").write_text("not audio")
    ids = [e.id for e in scan_corpus(tmp_path)]
    assert ids == ["a_x", "b_x", "b_y_flac", "b_y_wav"]


def test_scan_errors(tmp_path):
    with pytest.raises(DataError, match="no such corpus folder"):
        scan_corpus(tmp_path / "nope")
    with pytest.raises(DataError, match="no audio files found"):
        scan_corpus(tmp_path)
    (tmp_path / "wavs").mkdir()
    (tmp_path / "metadata.csv").write_text("a|x|x\na|y|y\n")
    with pytest.raises(DataError, match=r"metadata.csv:2: duplicate id 'a'"):
        scan_corpus(tmp_path)


def test_split_is_deterministic_and_disjoint():
    ids = [f"u{i}" for i in range(20)]
    a = split_ids(ids, valid=3, test=2, seed=7)
    assert a == split_ids(reversed(ids), valid=3, test=2, seed=7)
    assert a != split_ids(ids, valid=3, test=2, seed=8)
    assert sorted(a.values()).count("valid") == 3 and list(a.values()).count("test") == 2
    assert set(a) == set(ids)
    with pytest.raises(DataError, match="at least 1 train"):
        split_ids(ids[:5], valid=3, test=2, seed=0)


# --------------------------------------------------------------------------- bad input


def make_messy_folder(root):
    """One file of every kind the issue lists, named after what it is."""
    good = tone(0.5, RATE)
    write_audio(root / "good.wav", good, RATE)
    write_audio(root / "good2.wav", tone(0.5, RATE, 300, seed=1), RATE)
    write_audio(root / "good3.wav", tone(0.5, RATE, 180, seed=2), RATE)
    (root / "empty.wav").write_bytes(b"")
    (root / "truncated.wav").write_bytes((root / "good.wav").read_bytes()[:30])
    (root / "garbage.wav").write_bytes(bytes(range(256)) * 20)
    nan = good.copy()
    nan[100] = np.nan
    write_audio(root / "nan.wav", nan, RATE, "FLOAT")
    write_audio(root / "silence.wav", np.zeros(RATE // 2, np.float32), RATE)
    write_audio(root / "short.wav", tone(0.05, RATE), RATE)
    write_audio(root / "stereo.wav", np.stack([good, good[::-1]], 1), RATE)
    write_audio(root / "rate44k.wav", tone(0.5, 44100), 44100)
    write_audio(root / "pcm24.wav", good, RATE, "PCM_24")
    write_audio(root / "float.wav", good, RATE, "FLOAT")
    (root / "vanished.wav").symlink_to(root / "moved-away.wav")  # a dangling link
    return root


SKIP_CAUSES = {
    "empty.wav": "empty file",
    "truncated.wav": "not a readable audio file",
    "garbage.wav": "not a readable audio file",
    "nan.wav": "non-finite",
    "silence.wav": "all silent",
    "short.wav": "shorter than one training segment",
    "vanished.wav": "dangling symbolic link (to ",
}
CONVERTED = {"stereo.wav", "rate44k.wav", "pcm24.wav", "float.wav"}


def test_preprocess_messy_folder_file_by_file(tmp_path):
    corpus = make_messy_folder(tmp_path / "corpus")
    report = preprocess_corpus(corpus, tmp_path / "dump", AUDIO, DATA)
    skipped = {p.split("/")[-1]: cause for p, cause in report.skipped}
    assert skipped.keys() == SKIP_CAUSES.keys()
    for name, cause in SKIP_CAUSES.items():
        assert cause in skipped[name], (name, skipped[name])
    assert report.processed == 7 and report.converted == len(CONVERTED)
    cache = FeatureCache(tmp_path / "dump", AUDIO)
    rows = {r["id"]: r for r in cache.entries()}
    assert set(rows) == {"good", "good2", "good3", "stereo", "rate44k", "pcm24", "float"}
    assert {name for name in rows if rows[name]["converted"]} == {n[:-4] for n in CONVERTED}
    audio, mel = cache.load(rows["rate44k"])
    assert audio.shape[0] % AUDIO.hop_length == 0
    assert mel.shape == (40, audio.shape[0] // AUDIO.hop_length)
    assert abs(audio.shape[0] - RATE // 2) < AUDIO.hop_length  # resampled to 16 kHz
    assert sorted(r["split"] for r in rows.values()).count("train") == 5


def test_preprocess_strict_stops_at_first_unusable(tmp_path):
    corpus = make_messy_folder(tmp_path / "corpus")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        preprocess_corpus(corpus, tmp_path / "dump", AUDIO, DATA, strict=True)
    assert not (tmp_path / "dump" / "manifest.json").exists()


def test_cli_preprocess_prints_one_line_per_skip(tmp_path, capsys):
    corpus = make_messy_folder(tmp_path / "corpus")
    rc = cli.main(["preprocess", str(corpus), str(tmp_path / "dump"), *OVERRIDES])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    skip_lines = [line for line in out if line.startswith("skipped ")]
    assert len(skip_lines) == len(SKIP_CAUSES)
    for name, cause in SKIP_CAUSES.items():
        assert any(name in line and cause in line for line in skip_lines), name
    assert "kept 7 files (4 converted" in out[-1] and f"skipped {len(SKIP_CAUSES)}" in out[-1]
    assert load_config(tmp_path / "dump" / "config.yaml").audio == AUDIO


def test_cli_strict_exits_non_zero_with_one_line(tmp_path, capsys):
    corpus = make_messy_folder(tmp_path / "corpus")
    rc = cli.main(["preprocess", "--strict", str(corpus), str(tmp_path / "dump"), *OVERRIDES])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("pwavenet: error: ") and "empty.wav" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["preprocess", "{tmp}/missing", "{tmp}/dump"], "no such corpus folder"),
        (["preprocess", "{tmp}", "{tmp}/dump", "--config", "{tmp}/none.yaml"], "not found"),
        (["preprocess", "{tmp}", "{tmp}/dump", "train.max_stepz=3"], "unknown key"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, pattern):
    rc = cli.main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and pattern in err and len(err.splitlines()) == 1


def test_no_partial_files_after_a_failure(tmp_path, monkeypatch):
    corpus = make_ljspeech(tmp_path / "corpus", n=4)
    import pwavenet.data.preprocess as data

    real, calls = data.save_file, []

    def failing(tensors, path):
        calls.append(path)
        if len(calls) == 3:
            with open(path, "wb") as f:  # a half-written file under the temporary name
                f.write(b"\0" * 10)
            raise OSError("disk full")
        real(tensors, path)

    monkeypatch.setattr(data, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        preprocess_corpus(corpus, tmp_path / "dump", AUDIO, DATA)
    files = sorted(p.name for p in (tmp_path / "dump").rglob("*") if p.is_file())
    assert files == ["LJ001-0000.safetensors", "LJ001-0001.safetensors"]  # complete ones only


def test_cache_made_with_other_settings_is_refused(tmp_path):
    preprocess_corpus(make_ljspeech(tmp_path / "c", n=4), tmp_path / "dump", AUDIO, DATA)
    other = AudioConfig(**{**AUDIO.__dict__, "n_mels": 80})
    with pytest.raises(DataError, match=r"other settings \(n_mels 40 vs 80"):
        FeatureCache(tmp_path / "dump", other)
    with pytest.raises(DataError, match="run `pwavenet preprocess` first"):
        FeatureCache(tmp_path / "nothing")
    (tmp_path / "dump" / "manifest.json").write_text("{broken")
    with pytest.raises(DataError, match="unreadable feature manifest"):
        FeatureCache(tmp_path / "dump")


def test_rerun_replaces_stale_features(tmp_path):
    corpus = make_ljspeech(tmp_path / "c", n=5)
    preprocess_corpus(corpus, tmp_path / "dump", AUDIO, DATA)
    (corpus / "wavs" / "LJ001-0004.wav").write_bytes(b"")
    report = preprocess_corpus(corpus, tmp_path / "dump", AUDIO, DATA)
    assert report.processed == 4
    assert len(list((tmp_path / "dump" / "feats").iterdir())) == 4


# --------------------------------------------------------------------------- segments


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    preprocess_corpus(make_ljspeech(root / "corpus", n=5), root / "dump", AUDIO, DATA)
    return FeatureCache(root / "dump", AUDIO)


def test_segments_stay_aligned_at_every_offset(cache):
    ds = SegmentDataset(cache, "train", segment_length=DATA.segment_length)
    mel_fn = LogMelSpectrogram.from_config(AUDIO)
    hop, frames = AUDIO.hop_length, DATA.segment_length // AUDIO.hop_length
    # Frames whose analysis window lies inside the segment can be recomputed from it alone.
    lo, hi = -(-mel_fn.pad // hop), frames - -(-mel_fn.pad // hop)
    full_audio, full_mel = cache.load(ds.rows[0])
    n_offsets = full_mel.shape[1] - frames + 1
    assert n_offsets > 10
    for offset in range(n_offsets):
        item = ds.segment(0, offset)
        assert item["audio"].shape == (1, DATA.segment_length) and item["mel"].shape[1] == frames
        start = offset * hop
        torch.testing.assert_close(
            item["audio"][0], full_audio[start : start + DATA.segment_length]
        )
        torch.testing.assert_close(item["mel"], full_mel[:, offset : offset + frames])
        fresh = mel_fn(item["audio"][0])
        torch.testing.assert_close(fresh[:, lo:hi], item["mel"][:, lo:hi], atol=1e-4, rtol=0)
    with pytest.raises(IndexError):
        ds.segment(0, n_offsets)


def test_random_segments_are_valid_and_vary(cache):
    ds = SegmentDataset(cache, "train", segment_length=1024, repeat=3)
    assert len(ds) == 3 * len(cache.entries("train"))
    starts = set()
    for _ in range(20):
        item = ds[0]
        full, _ = cache.load(ds.rows[0])
        seg = item["audio"][0]
        # locate the segment in the utterance: it must start on a hop boundary
        windows = full.unfold(0, 1024, AUDIO.hop_length)
        match = torch.nonzero((windows == seg).all(1)).flatten()
        assert len(match) >= 1
        starts.add(int(match[0]))
    assert len(starts) > 3


def test_short_utterances_are_padded(cache):
    ds = SegmentDataset(cache, "train", segment_length=200 * AUDIO.hop_length)
    row_frames = ds.rows[0]["frames"]
    assert row_frames < 200
    item = ds[0]
    assert item["length"] == row_frames * AUDIO.hop_length
    assert torch.all(item["audio"][0, item["length"] :] == 0)
    assert torch.allclose(item["mel"][:, row_frames:], torch.tensor(float(np.log(1e-5))))


def test_whole_utterances_and_collate(cache):
    ds = SegmentDataset(cache, "train", segment_length=None)
    batch = Collate(AUDIO.hop_length, ds.silence)([ds[0], ds[1]])
    lengths = batch["lengths"].tolist()
    assert lengths == [r["samples"] for r in ds.rows[:2]]
    assert batch["audio"].shape == (2, 1, max(lengths))
    assert batch["mel"].shape == (2, 40, max(lengths) // AUDIO.hop_length)
    short = int(np.argmin(lengths))
    assert torch.all(batch["audio"][short, 0, lengths[short] :] == 0)
    assert batch["ids"] == [r["id"] for r in ds.rows[:2]]


def test_accelerate_shards_are_disjoint_and_complete(cache):
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    ds = SegmentDataset(cache, "train", segment_length=1024, repeat=2)
    loader = DataLoader(ds, batch_size=1, collate_fn=Collate(AUDIO.hop_length, ds.silence))
    seen = []
    for rank in range(2):
        shard = prepare_data_loader(
            loader, torch.device("cpu"), num_processes=2, process_index=rank, put_on_device=False
        )
        seen.append([(b["ids"][0], i) for i, b in enumerate(shard)])
    assert len(seen[0]) == len(seen[1]) == len(ds) // 2
    ids0 = [uid for uid, _ in seen[0]]
    ids1 = [uid for uid, _ in seen[1]]
    assert sorted(ids0 + ids1) == sorted(r["id"] for r in ds.rows for _ in range(2))


def test_empty_split_is_an_error(cache):
    with pytest.raises(ValueError, match="split must be one of"):
        cache.entries("dev")


# --------------------------------------------------------------------------- speakers, config.yaml


def test_scan_reads_speakers_from_a_metadata_column_or_subfolders(tmp_path):
    lj = make_ljspeech(tmp_path / "lj", n=3)
    rows = (lj / "metadata.csv").read_text().splitlines()
    speakers = ["bob", "al", "bob"]
    lines = [f"{row}|{s}" for row, s in zip(rows, speakers, strict=True)]
    (lj / "metadata.csv").write_text("\n".join(lines) + "\n")
    entries = scan_corpus(lj)
    assert [e.speaker for e in entries] == speakers and entries[1].text == "text 1"
    assert [e.speaker for e in scan_corpus(make_ljspeech(tmp_path / "plain", n=2))] == [None] * 2

    (lj / "metadata.csv").write_text("\n".join([*lines[:2], rows[2]]) + "\n")
    with pytest.raises(DataError, match=r"metadata.csv:3: every row or none must name a speaker"):
        scan_corpus(lj)

    folders = tmp_path / "folders"
    for speaker, name in (("p2", "a"), ("p1", "b"), ("p1", "c/d")):
        write_audio(folders / speaker / f"{name}.wav", tone(0.2, RATE), RATE)
    assert [(e.id, e.speaker) for e in scan_corpus(folders)] == [
        ("p1_b", "p1"),
        ("p1_c_d", "p1"),
        ("p2_a", "p2"),
    ]
    write_audio(folders / "loose.wav", tone(0.2, RATE), RATE)  # one file outside any speaker
    assert {e.speaker for e in scan_corpus(folders)} == {None}


def test_preprocess_records_speakers_and_the_dataset_emits_their_ids(tmp_path):
    corpus = tmp_path / "corpus"
    for i in range(6):
        speaker = ("zoe", "adam", "mia")[i % 3]
        write_audio(corpus / speaker / f"u{i}.wav", tone(0.6, RATE, 150 + 20 * i, seed=i), RATE)
    preprocess_corpus(corpus, tmp_path / "dump", AUDIO, DATA)
    cache = FeatureCache(tmp_path / "dump", AUDIO)
    assert cache.speakers == {"adam": 0, "mia": 1, "zoe": 2}  # sorted names
    ds = SegmentDataset(cache, "train", segment_length=DATA.segment_length)
    items = [ds[i] for i in range(len(ds))]
    names = {r["id"]: r["speaker"] for r in cache.entries()}
    assert all(cache.speakers[names[it["id"]]] == it["speaker"] for it in items)
    batch = Collate(AUDIO.hop_length, ds.silence)(items)
    assert batch["speaker"].dtype == torch.long
    assert batch["speaker"].tolist() == [it["speaker"] for it in items]
    cache.check_speakers(0)  # a model without speaker embeddings suits any corpus
    cache.check_speakers(3)
    with pytest.raises(DataError, match=r"dump: the corpus has 3 speakers but teacher.speakers"):
        cache.check_speakers(2)


def test_preprocess_writes_config_yaml_through_the_api(tmp_path):
    corpus = make_ljspeech(tmp_path / "c", n=4)
    preprocess_corpus(corpus, tmp_path / "dump", AUDIO, DATA)
    written = yaml.safe_load((tmp_path / "dump" / "config.yaml").read_text())
    assert sorted(written) == ["audio", "data"]  # the settings the cache depends on
    assert AudioConfig(**written["audio"]) == AUDIO and DataConfig(**written["data"]) == DATA
    cfg = load_config(None, [*OVERRIDES, "teacher.layers=4"])
    preprocess_corpus(corpus, tmp_path / "dump2", cfg.audio, cfg.data, config=cfg)
    assert load_config(tmp_path / "dump2" / "config.yaml") == cfg
    with pytest.raises(ValueError, match=r"config\.audio and config\.data"):
        preprocess_corpus(corpus, tmp_path / "dump3", AUDIO, DATA, config=cfg)
