"""Fine-tuning on a front end's mels: ``preprocess --mels DIR`` caches given ``.npy`` mels in place
of the computed ones, the teacher and the student train on them, and bad files are refused."""

from __future__ import annotations

import json
import logging
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import reset_accelerate
from training_setup import TINY, tiny_config

from pwavenet import cli
from pwavenet.data.cache import FeatureCache
from pwavenet.data.mel_files import MEL_FRAME_TOLERANCE
from pwavenet.data.preprocess import preprocess_corpus
from pwavenet.errors import DataError
from pwavenet.features import Features
from pwavenet.models.export import load_student, load_teacher
from pwavenet.train.distill import train_student
from pwavenet.train.teacher import train_teacher

STUDENT = [
    "student.flow_layers=[2, 2]",
    "student.layers_per_cycle=2",
    "student.residual_channels=8",
    "student.gate_channels=16",
    "distill.samples=2",
]
QUICK = ["train.max_steps=1", "train.monitor_seconds=0"]  # one step, no pitch monitor


def perturb(mel: np.ndarray) -> np.ndarray:
    """A mel an acoustic model might predict for the same audio: the computed one, off by up
    to 0.3 nats in a pattern over bands and frames (still in the natural-log range)."""
    bands, frames = np.meshgrid(np.arange(mel.shape[0]), np.arange(mel.shape[1]), indexing="ij")
    return (mel + 0.3 * np.sin(0.7 * bands + 0.3 * frames)).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny corpus, its computed cache, a folder of perturbed mels of every utterance (one a
    frame longer than its audio, as a centred front end gives, one two frames shorter, one
    float64) and the ids in the cache's order."""
    from pwavenet.data.make_corpus import make_corpus

    root = tmp_path_factory.mktemp("mel_finetune")
    cfg = tiny_config()
    corpus = make_corpus(
        root / "corpus", num_utterances=8, seed=3, sample_rate=8000, min_seconds=0.6,
        max_seconds=1.0,
    )  # fmt: skip
    computed = root / "computed"
    preprocess_corpus(corpus, computed, cfg.audio, cfg.data)
    mels = root / "mels"
    mels.mkdir()
    rows = FeatureCache(computed).entries()
    for i, row in enumerate(rows):
        mel = perturb(FeatureCache(computed).load(row)[1].numpy())
        if i == 0:
            mel = np.concatenate([mel, mel[:, -1:]], axis=1)
        if i == 1:
            mel = mel[:, :-MEL_FRAME_TOLERANCE]
        if i == 2:
            mel = mel.astype(np.float64)  # float64 files are read as float32
        np.save(mels / f"{row['id']}.npy", mel)
    return corpus, computed, mels, [r["id"] for r in rows]


def test_the_cache_holds_the_given_mels(data, tmp_path):
    corpus, computed, mels, ids = data
    cfg = tiny_config()
    report = preprocess_corpus(corpus, tmp_path / "dump", cfg.audio, cfg.data, mels=mels)
    assert report.processed == len(ids) and report.mel_aligned == 2 and not report.mel_warnings
    given, plain = FeatureCache(tmp_path / "dump", cfg.audio), FeatureCache(computed)
    hop = cfg.audio.hop_length
    rows = {r["id"]: r for r in given.entries()}
    for i, uid in enumerate(ids):
        audio, mel = given.load(rows[uid])
        full_audio, full_mel = plain.load(next(r for r in plain.entries() if r["id"] == uid))
        file_mel = torch.from_numpy(np.load(mels / f"{uid}.npy"))
        frames = min(file_mel.shape[1], full_mel.shape[1])
        assert mel.shape == (cfg.audio.n_mels, frames) and audio.shape == (frames * hop,)
        assert rows[uid]["frames"] == frames and rows[uid]["samples"] == frames * hop
        assert torch.equal(mel, file_mel[:, :frames].float())  # the file's values, bit for bit
        assert (mel - full_mel[:, :frames]).abs().max() > 0.25  # not the computed mel
        assert torch.equal(audio, full_audio[: frames * hop])  # the same audio, maybe cut
        assert rows[uid]["mel_file"] == f"{uid}.npy"
        assert bool(rows[uid]["mel_aligned"]) == (i < 2), rows[uid]
    assert "the mel's last 1 dropped" in rows[ids[0]]["mel_aligned"]
    assert f"audio cut to {rows[ids[1]]['samples']} samples" in rows[ids[1]]["mel_aligned"]
    assert given.mel_source == {
        "source": "files",
        "dir": str(mels.resolve()),
        "range_checked": True,
        "frame_tolerance": MEL_FRAME_TOLERANCE,
    }
    assert plain.mel_source == {"source": "computed"}


def test_pitch_rows_still_come_from_the_audio(data, tmp_path):
    corpus, _, mels, _ = data
    cfg = tiny_config("audio.pitch=true")
    preprocess_corpus(corpus, tmp_path / "dump", cfg.audio, cfg.data, mels=mels)
    cache, features, n = FeatureCache(tmp_path / "dump"), Features(cfg.audio), cfg.audio.n_mels
    for row in cache.entries():
        audio, feats = cache.load(row)
        assert feats.shape == (n + 2, row["frames"])
        file_mel = torch.from_numpy(np.load(mels / f"{row['id']}.npy"))
        assert torch.equal(feats[:n], file_mel[:, : row["frames"]].float())
        assert torch.equal(feats[n:], features(audio)[n:])  # log-F0 and voicing of its audio


def continue_run(train, cfg, dump, base, tuned, caplog):
    """Fine-tune the run ``base`` on ``dump`` as documented: copy its folder to ``tuned`` and
    train it there one step further; it resumes from ``base``'s checkpoint (of step 1)."""
    reset_accelerate()
    shutil.copytree(base, tuned)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pwavenet.train.trainer"):
        export = train(cfg, dump, tuned, cpu=True)
    assert "at step 1" in caplog.text
    return export


@pytest.mark.slow  # four tiny training runs: 12-36 s on a shared 2-core machine
@pytest.mark.usefixtures("fresh_accelerate_state")
def test_teacher_and_student_fine_tune_on_given_mels(data, tmp_path, caplog):
    """A teacher and a student trained on computed mels continue on the given ones; the
    exports say where their mels came from."""
    corpus, computed, mels, _ = data
    cfg = tiny_config()
    dump = tmp_path / "dump"
    preprocess_corpus(corpus, dump, cfg.audio, cfg.data, mels=mels)
    teacher_cfg = tiny_config(*QUICK)
    base = train_teacher(teacher_cfg, computed, tmp_path / "teacher", cpu=True)
    assert "mels" not in load_teacher(base).provenance
    teacher_cfg.train.max_steps = 2
    tuned = continue_run(train_teacher, teacher_cfg, dump, base.parent, tmp_path / "tuned", caplog)
    teacher = load_teacher(tuned)
    assert teacher.provenance["steps"] == 2
    assert teacher.provenance["mels"]["dir"] == str(mels.resolve())
    weights = load_teacher(base).state_dict()
    assert any(not torch.equal(v, teacher.state_dict()[k]) for k, v in weights.items())

    reset_accelerate()
    student_cfg = tiny_config(f"distill.teacher={base}", *STUDENT, *QUICK)
    train_student(student_cfg, computed, tmp_path / "student", cpu=True)
    student_cfg = tiny_config(f"distill.teacher={tuned}", *STUDENT, *QUICK, "train.max_steps=2")
    export = continue_run(
        train_student, student_cfg, dump, tmp_path / "student", tmp_path / "student2", caplog
    )
    student = load_student(export)
    assert student.provenance["mels"]["source"] == "files"
    assert student.teacher["path"] == str(tuned.resolve())
    log = (tmp_path / "student2" / "log.jsonl").read_text().splitlines()
    losses = [row["loss"] for row in map(json.loads, log) if "loss" in row]
    assert losses and all(math.isfinite(x) for x in losses)


# --------------------------------------------------------------------------- refusals


def _break(mel: np.ndarray, how: str, path) -> None:
    """Write ``path`` as the bad mel file ``how`` describes."""
    if how == "missing":
        return
    if how == "garbage":
        path.write_bytes(b"not an array")
        return
    bad: object = {
        "pickled": np.array([mel], dtype=object),
        "integer": mel.astype(np.int16),
        "one-dimensional": mel[0],
        "transposed": mel.T,
        "bands": mel[:-1],
        "nan": np.where(np.arange(mel.shape[1]) == 3, np.nan, mel),
        "too long": np.concatenate([mel] + [mel[:, -1:]] * (MEL_FRAME_TOLERANCE + 1), axis=1),
        "too short": mel[:, : -(MEL_FRAME_TOLERANCE + 1)],
        "decibels": mel * 20 / math.log(10),
        "normalised": (mel - mel.mean(1, keepdims=True)) / mel.std(1, keepdims=True),
    }[how]
    np.save(path, bad, allow_pickle=how == "pickled")


REFUSALS = {
    "missing": "no mel file for utterance",
    "garbage": "unreadable .npy mel",
    "pickled": "unreadable .npy mel",
    "integer": "int16 values; a mel is a float32 or float64 array",
    "one-dimensional": "a mel is (n_mels, frames)",
    "transposed": "it looks transposed",
    "bands": "19 mel bands where audio.n_mels is 20",
    "nan": "non-finite values",
    "too long": "padded in a batch",
    "too short": "the mel of other audio",
    "decibels": "looks like a dB",
    "normalised": "looks like a normalised mel",
}


@pytest.mark.parametrize("how", REFUSALS)
def test_a_bad_mel_file_is_refused_in_one_line_and_nothing_is_written(data, tmp_path, capsys, how):
    corpus, _, mels, ids = data
    folder = tmp_path / "mels"
    shutil.copytree(mels, folder)
    victim = folder / f"{ids[-1]}.npy"
    mel = np.load(victim)
    victim.unlink()
    _break(mel, how, victim)
    out = tmp_path / "dump"
    rc = cli.main(["preprocess", str(corpus), str(out), "--mels", str(folder), *TINY])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"pwavenet: error: {victim}: ") and REFUSALS[how] in err, err
    assert not out.exists()


def test_a_missing_mel_folder_is_refused(data, tmp_path, capsys):
    corpus, _, _, _ = data
    out = tmp_path / "dump"
    rc = cli.main(["preprocess", str(corpus), str(out), "--mels", str(tmp_path / "no"), *TINY])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err == f"pwavenet: error: {tmp_path / 'no'}: no such folder of .npy mels"
    assert not out.exists()


def test_the_range_check_can_be_turned_off(data, tmp_path, capsys):
    corpus, _, mels, ids = data
    folder = tmp_path / "mels"
    shutil.copytree(mels, folder)
    for uid in ids[:3]:
        np.save(folder / f"{uid}.npy", np.load(folder / f"{uid}.npy") * 20 / math.log(10))
    out = tmp_path / "dump"
    args = ["preprocess", str(corpus), str(out), "--mels", str(folder), *TINY]
    assert cli.main([*args, "--no-mel-range-check"]) == 0
    captured = capsys.readouterr()
    warning = captured.err.strip()
    assert warning.startswith("pwavenet: warning: ") and "(and 2 more mels)" in warning
    assert len(warning.splitlines()) == 1 and "looks like a dB" in warning
    assert f"mels from {folder} (2 cut to agree with their audio)" in captured.out
    cache = FeatureCache(out)
    assert cache.mel_source["range_checked"] is False
    row = next(r for r in cache.entries() if r["id"] == ids[2])
    assert torch.equal(
        cache.load(row)[1], torch.from_numpy(np.load(folder / f"{ids[2]}.npy")).float()
    )


def test_the_api_refuses_with_data_error(data, tmp_path):
    corpus, _, mels, _ = data
    cfg = tiny_config("audio.n_mels=24")
    with pytest.raises(DataError, match=r"20 mel bands where audio\.n_mels is 24"):
        preprocess_corpus(corpus, tmp_path / "dump", cfg.audio, cfg.data, mels=mels)
    assert not (tmp_path / "dump").exists()
