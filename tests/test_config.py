"""Config loading: round trip, unknown keys, types, overrides, commented example file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pwavenet.config import (
    AudioConfig,
    Config,
    apply_overrides,
    audio_mismatch,
    config_to_dict,
    feature_hash,
    load_config,
    save_config,
)
from pwavenet.errors import ConfigError

BASE = Path(__file__).resolve().parents[1] / "pwavenet" / "conf" / "demo" / "base.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file():
    assert load_config() == Config()


def test_round_trip(tmp_path):
    cfg = load_config(overrides=["train.max_steps=7", "audio.fmax=null", "optim.betas=[0.8, 0.9]"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert again.audio.fmax is None and again.optim.betas == [0.8, 0.9]
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "train.max_stepz" in msg and "max_steps" in msg
    assert "\n" not in msg


def test_unknown_section(tmp_path):
    path = write(tmp_path / "c.yaml", "trian:\n  max_steps: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        load_config(path)


@pytest.mark.parametrize(
    "text, key",
    [
        ("train:\n  max_steps: many\n", "train.max_steps"),
        ("train:\n  max_steps: 2.5\n", "train.max_steps"),
        ("teacher:\n  output: wavenet\n", "teacher.output"),
        ("optim:\n  betas: 0.9\n", "optim.betas"),
        ("train:\n  mixed_precision: true\n", "train.mixed_precision"),
        ("audio: 5\n", "audio"),
    ],
)
def test_wrong_types_are_errors(tmp_path, text, key):
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(path)


def test_float_written_without_dot_is_a_float(tmp_path):
    # PyYAML reads "2e-4" as a string; the config must still take it as a float.
    path = write(tmp_path / "c.yaml", "optim:\n  lr: 2e-4\n")
    assert load_config(path).optim.lr == pytest.approx(2e-4)


def test_overrides(tmp_path):
    path = write(tmp_path / "c.yaml", "optim:\n  lr: 0.5\n")
    cfg = load_config(
        path, ["optim.lr=2e-4", "teacher.upsample_scales=[16, 16]", "audio.n_fft=1024"]
    )
    assert cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.teacher.upsample_scales == [16, 16]
    cfg = load_config(path, ["distill.loss_weights={kl: 1, power: 0.5}"])
    assert cfg.distill.loss_weights == {"kl": 1.0, "power": 0.5}


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("optim.lrr=1", r"unknown key 'optim.lrr' \(did you mean 'lr'\?\)"),
        ("optim=1", "is a section"),
        ("optim.lr.x=1", "not a section"),
        ("optim.lr", "section.key=value"),
        ("optim.lr=fast", "optim.lr must be float"),
    ],
)
def test_bad_overrides(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_apply_overrides_does_not_mutate_input():
    data = {"train": {"max_steps": 3}}
    out = apply_overrides(data, ["train.max_steps=4"])
    assert data == {"train": {"max_steps": 3}} and out["train"]["max_steps"] == 4


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (["data.segment_length=1000"], "multiple of audio.hop_length"),
        (["teacher.upsample_scales=[4, 4]"], "multiply to 16"),
        (["audio.win_length=2048"], "exceeds n_fft"),
        (["audio.fmax=20000"], "fmax"),
        (["audio.hop_length=255"], "must be even"),
    ],
)
def test_validation(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, overrides)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = write(tmp_path / "bad.yaml", "train:\n  max_steps: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line \d+"):
        load_config(bad)
    listy = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)
    # Unsafe YAML tags are refused by the safe loader, never executed.
    evil = write(tmp_path / "evil.yaml", "train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(evil)


def test_feature_hash_tracks_feature_settings():
    a = load_config().audio
    b = load_config(None, ["audio.n_mels=64"]).audio
    assert feature_hash(a) == feature_hash(load_config().audio)
    assert feature_hash(a) != feature_hash(b)


def test_example_config_is_complete_and_commented():
    cfg = load_config(BASE)
    assert config_to_dict(cfg).keys() == config_to_dict(Config()).keys()
    keys_seen = 0
    for line in BASE.read_text().splitlines():
        if re.match(r"^\s+\w+:", line):  # a key inside a section
            keys_seen += 1
            assert "#" in line, f"key without a comment: {line.strip()}"
    n_keys = sum(len(section) for section in config_to_dict(Config()).values())
    assert keys_seen == n_keys


def test_audio_mismatch_names_every_differing_setting():
    a = AudioConfig()
    assert audio_mismatch(a, AudioConfig()) is None
    b = AudioConfig(n_mels=24, fmax=None)
    assert audio_mismatch(a, b) == "n_mels 80 vs 24; fmax 8000.0 vs None"
    assert audio_mismatch(b, a) == "n_mels 24 vs 80; fmax None vs 8000.0"
    assert audio_mismatch(AudioConfig(fmax=None), a) == "fmax None vs 8000.0"
