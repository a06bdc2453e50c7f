"""Pre-emphasis: the models learn ``x[t] - a x[t-1]`` and synthesis undoes it."""

from __future__ import annotations

import pytest
import torch
from training_setup import make_dump, tiny_config, tiny_models

from pwavenet.audio import deemphasize, preemphasize
from pwavenet.config import AudioConfig, ConfigError, load_config
from pwavenet.data.cache import FeatureCache
from pwavenet.data.dataset import SegmentDataset
from pwavenet.data.preprocess import preprocess_corpus


def test_deemphasis_inverts_preemphasis():
    x = 0.1 * torch.randn(2, 500, generator=torch.Generator().manual_seed(0))
    y = preemphasize(x, 0.9)
    torch.testing.assert_close(y[:, 1:], x[:, 1:] - 0.9 * x[:, :-1])
    torch.testing.assert_close(deemphasize(y, 0.9), x, atol=1e-6, rtol=0)
    assert preemphasize(x, 0.0) is x and deemphasize(x, 0.0) is x
    assert preemphasize(torch.tensor([1.0, -1.0]), 0.9).abs().max() == 1.0  # clamped to 16 bits


def test_the_setting_is_checked():
    with pytest.raises(ConfigError, match="preemphasis"):
        load_config(None, ["audio.preemphasis=1.0"])


def test_segments_are_preemphasised_from_the_whole_utterance(tmp_path):
    dump = make_dump(tmp_path, utterances=6)
    cfg = tiny_config("audio.preemphasis=0.86")
    preprocess_corpus(tmp_path / "corpus", tmp_path / "pe", cfg.audio, cfg.data)
    plain = SegmentDataset(FeatureCache(dump), "train", segment_length=512)
    pe = SegmentDataset(FeatureCache(tmp_path / "pe", cfg.audio), "train", segment_length=512)
    a, b = plain.segment(0, 3)["audio"][0], pe.segment(0, 3)["audio"][0]
    before = plain.cache.load(plain.rows[0])[0][3 * 64 - 1]  # the sample before the segment
    torch.testing.assert_close(b[0], a[0] - 0.86 * before)
    torch.testing.assert_close(b[1:], a[1:] - 0.86 * a[:-1])
    torch.testing.assert_close(pe.segment(0, 3)["mel"], plain.segment(0, 3)["mel"])


def test_synthesis_deemphasises_what_the_model_makes():
    _, student, audio = tiny_models()
    mel = torch.randn(1, 4, 30)
    noise = student.noise([120], torch.Generator().manual_seed(0), "cpu", steps=120)
    raw = student.synthesize(mel, noise=noise, lengths=[100])
    student.audio = AudioConfig(**{**audio.__dict__, "preemphasis": 0.8})
    out = student.synthesize(mel, noise=noise, lengths=[100])
    torch.testing.assert_close(out[:, :100], deemphasize(raw, 0.8)[:, :100])
    assert not out[:, 100:].any()
