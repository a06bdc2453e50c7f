"""A tiny corpus, feature cache and config shared by the training tests (and their subprocesses)."""

from __future__ import annotations

from pathlib import Path

from pwavenet.config import Config, load_config

TINY = [
    "audio.sample_rate=8000",
    "audio.n_fft=256",
    "audio.hop_length=64",
    "audio.win_length=256",
    "audio.n_mels=20",
    "audio.fmax=null",
    "data.segment_length=1024",
    "data.batch_size=4",
    "data.valid_utterances=2",
    "data.test_utterances=2",
    "teacher.layers=6",
    "teacher.cycles=2",
    "teacher.residual_channels=24",
    "teacher.gate_channels=48",
    "teacher.skip_channels=24",
    "teacher.mixtures=3",
    "teacher.upsample_scales=[8, 8]",
    "student.upsample_scales=[8, 8]",
    "optim.lr=3e-3",
    "optim.warmup_steps=5",
    "optim.ema_decay=0.9",
    "train.log_every=5",
    "train.valid_every=1000",
    "train.save_every=1000",
]


def tiny_config(*extra: str) -> Config:
    return load_config(None, [*TINY, *extra])


def make_dump(root: Path, utterances: int = 12) -> Path:
    from pwavenet.data.make_corpus import make_corpus
    from pwavenet.data.preprocess import preprocess_corpus

    cfg = tiny_config()
    corpus = make_corpus(
        root / "corpus",
        num_utterances=utterances,
        seed=1,
        sample_rate=8000,
        min_seconds=0.6,
        max_seconds=1.2,
    )
    preprocess_corpus(corpus, root / "dump", cfg.audio, cfg.data)
    return root / "dump"
