"""Speaker conditioning end to end: a two-speaker corpus, its cache, its batches, a teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from accelerate.utils import set_seed
from training_setup import TINY, tiny_config

from pwavenet import cli
from pwavenet.data.cache import FeatureCache
from pwavenet.data.make_corpus import make_corpus
from pwavenet.data.preprocess import preprocess_corpus
from pwavenet.errors import ConfigError, DataError
from pwavenet.models.export import load_teacher
from pwavenet.train.runs import make_loaders
from pwavenet.train.teacher import (
    build_teacher,
    evaluate_teacher,
    make_teacher_trainer,
    train_teacher,
)

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

UTTERANCES = 8


def make_speaker_dump(root, speakers: int):
    cfg = tiny_config()
    corpus = make_corpus(
        root / "corpus",
        num_utterances=UTTERANCES,
        seed=1,
        sample_rate=8000,
        min_seconds=0.6,
        max_seconds=1.2,
        speakers=speakers,
    )
    preprocess_corpus(corpus, root / "dump", cfg.audio, cfg.data)
    return root / "dump"


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    return make_speaker_dump(tmp_path_factory.mktemp("two_speakers"), speakers=2)


@pytest.fixture(scope="module")
def speakerless(tmp_path_factory):
    return make_speaker_dump(tmp_path_factory.mktemp("no_speakers"), speakers=0)


def test_the_cache_records_every_utterances_speaker(dump, speakerless):
    cache = FeatureCache(dump)
    assert cache.speakers == {"spk01": 0, "spk02": 1}
    expected = {f"SYN-{i + 1:04d}": f"spk{i % 2 + 1:02d}" for i in range(UTTERANCES)}
    assert {r["id"]: r["speaker"] for r in cache.entries()} == expected
    assert FeatureCache(speakerless).speakers == {}
    assert all("speaker" not in r for r in FeatureCache(speakerless).entries())


def test_batches_carry_the_right_speaker_ids(dump, speakerless):
    cfg = tiny_config("teacher.speakers=2")
    cache = FeatureCache(dump, cfg.audio)
    truth = {r["id"]: cache.speakers[r["speaker"]] for r in cache.entries()}
    seen = set()
    for loader in make_loaders(cfg, cache, 1):
        for batch in loader:
            speaker = batch["speaker"]
            assert speaker.dtype == torch.long and speaker.shape == (len(batch["ids"]),)
            assert speaker.tolist() == [truth[i] for i in batch["ids"]]
            seen.update(speaker.tolist())
    assert seen == {0, 1}
    plain = tiny_config()
    for loader in make_loaders(plain, FeatureCache(speakerless, plain.audio), 1):
        assert all("speaker" not in batch for batch in loader)


SPEAKER_TEACHER = ("teacher.speakers=2", "teacher.speaker_channels=4", "train.max_steps=3")


@pytest.fixture(scope="module")
def speaker_teacher(dump, tmp_path_factory):
    """A two-speaker teacher's export (3 steps), trained once for the tests below."""
    from pwavenet.train.trainer import reset_accelerate

    reset_accelerate()
    run = tmp_path_factory.mktemp("speaker_teacher") / "run"
    return train_teacher(tiny_config(*SPEAKER_TEACHER), dump, run, cpu=True)


def test_a_teacher_trains_with_speaker_embeddings(dump, speaker_teacher):
    cfg = tiny_config(*SPEAKER_TEACHER)
    set_seed(cfg.train.seed)  # the initialisation make_teacher_trainer starts from
    initial = build_teacher(cfg).speaker.weight.detach().clone()
    model = load_teacher(speaker_teacher)
    trained = model.speaker.weight.detach()
    assert trained.shape == (2, 4)
    assert (trained - initial).abs().amax(dim=1).min() > 0  # both speakers' rows learned
    rows = evaluate_teacher(model, FeatureCache(dump), "valid")
    assert len(rows) == 2 and all(math.isfinite(r["bits"]) for r in rows)


def test_more_embeddings_than_speakers_is_fine(dump, tmp_path):
    cfg = tiny_config("teacher.speakers=3")
    make_teacher_trainer(cfg, dump, tmp_path / "run", cpu=True)


@pytest.mark.parametrize(
    ("which", "slots", "cause"),
    [
        ("dump", 1, "the corpus has 2 speakers but teacher.speakers is 1"),
        ("speakerless", 2, "teacher.speakers is 2 but the corpus has no speaker labels"),
    ],
)
def test_config_and_corpus_mismatch_is_a_one_line_error(
    request, tmp_path, capsys, which, slots, cause
):
    folder = request.getfixturevalue(which)
    cfg = tiny_config(f"teacher.speakers={slots}")
    with pytest.raises(DataError, match=f"^{folder}: {cause}"):
        make_teacher_trainer(cfg, folder, tmp_path / "api", cpu=True)
    args = ["train-teacher", "--dump", str(folder), "--out", str(tmp_path / "run"), "--cpu"]
    assert cli.main([*args, *TINY, f"teacher.speakers={slots}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pwavenet: error: {folder}: {cause}") and err.count("\n") == 1


def test_synthesis_names_the_speaker(dump, speaker_teacher, tmp_path, capsys):
    model = load_teacher(speaker_teacher)
    assert model.provenance["speakers"] == {"spk01": 0, "spk02": 1}  # recorded by training
    mel = FeatureCache(dump).load(FeatureCache(dump).entries("test")[0])[1][:, :3]
    np.save(tmp_path / "m.npy", mel.numpy())
    args = ["synthesize", str(speaker_teacher), str(tmp_path / "m.npy"), "--seed", "3"]
    wavs = {}
    for name in ("spk01", "spk02", "1"):
        assert cli.main([*args, "--out", str(tmp_path / name), "--speaker", name]) == 0
        wavs[name], _ = sf.read(tmp_path / name / "m.wav", dtype="int16")
    assert np.array_equal(wavs["spk02"], wavs["1"])  # a name and its id are one speaker
    assert not np.array_equal(wavs["spk01"], wavs["spk02"])  # same noise, another voice
    for extra, cause in (
        ([], "conditioned on speakers: name one (spk01, spk02)"),
        (["--speaker", "spk09"], "unknown speaker 'spk09'"),
    ):
        assert cli.main([*args, "--out", str(tmp_path / "bad"), *extra]) == 1
        err = capsys.readouterr().err
        assert cause in err and err.count("\n") == 1
        assert not (tmp_path / "bad" / "m.wav").exists()


def test_a_model_without_speakers_refuses_a_speaker(speakerless, tmp_path):
    model = build_teacher(tiny_config())
    assert model.speaker_ids(None, 2) is None
    with pytest.raises(ConfigError, match="has no speaker conditioning"):
        model.speaker_ids("spk01", 2)
