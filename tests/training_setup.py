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
    "train.monitor_seconds=0.25",  # the pitch monitor at every final validation, kept short
]


def tiny_config(*extra: str) -> Config:
    return load_config(None, [*TINY, *extra])


def free_port() -> int:
    """A TCP port free on this machine now (for a rendezvous of several processes)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def tiny_models(seed: int = 0, output: str = "mol", base: str = "logistic"):
    """A randomly initialised tiny teacher (``output``) and student (``base``) on 4 mel bands
    with hop 4, float32 and in eval mode, with their feature settings as ``.audio``."""
    import torch

    from pwavenet.config import AudioConfig
    from pwavenet.models.student import Student
    from pwavenet.models.teacher import WaveNet

    audio = AudioConfig(
        sample_rate=8000, n_fft=64, hop_length=4, win_length=32, n_mels=4, fmax=None
    )
    teacher = WaveNet(
        n_mels=4, layers=3, cycles=1, residual_channels=8, gate_channels=8, skip_channels=8,
        mixtures=2, upsample_scales=[2, 2], output=output,
    )  # fmt: skip
    student = Student(
        n_mels=4, flow_layers=[2, 2], layers_per_cycle=2, residual_channels=6, gate_channels=8,
        upsample_scales=[2, 2], log_scale_init=-2.0, base=base,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every parameter at random: the output layers start at zero
        for module in (teacher, student):
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    teacher.audio = student.audio = audio
    return teacher.eval(), student.eval(), audio


def tiny_batch(seed: int = 0, batch: int = 2, steps: int = 128):
    """A collated batch for :func:`tiny_models`: ``audio (B, 1, T)``, ``mel (B, 4, T // 4)``
    and ``lengths`` (the second utterance shorter, so the mask matters)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    audio = 0.3 * torch.sin(torch.arange(steps) * 0.3)[None, None] + 0.05 * torch.randn(
        batch, 1, steps, generator=g
    )
    lengths = torch.tensor([steps - 32 * i for i in range(batch)])
    audio = audio * (torch.arange(steps)[None, None] < lengths[:, None, None])
    return {
        "audio": audio,
        "mel": torch.randn(batch, 4, steps // 4, generator=g),
        "lengths": lengths,
    }


class RecordingTask:
    """A training task that records what this process computed: the metrics of each of its
    loss calls, and the index and totals of each validation batch it scored."""

    def __init__(self, task) -> None:
        self.task = task
        self.losses: list[dict[str, float]] = []
        self.validated: list[tuple[int, dict[str, tuple[float, float]]]] = []

    def loss(self, model, batch):
        loss, metrics = self.task.loss(model, batch)
        self.losses.append(dict(metrics))
        return loss, metrics

    def validation_totals(self, model, batch, index: int):
        totals = self.task.validation_totals(model, batch, index)
        self.validated.append((index, totals))
        return totals

    def dump(self, path: str) -> None:
        import json

        with open(path, "w", encoding="utf-8") as f:
            json.dump({"losses": self.losses, "validated": self.validated}, f)


def check_numbers_of_processes(
    run: Path, out: str, processes: int, loss_key: str, one_process: dict[str, float]
) -> None:
    """What a run of ``processes`` processes logged (``run/log.jsonl``) against what each
    process computed itself (``<out>.<rank>.json`` of :class:`RecordingTask`): the last logged
    ``loss_key`` is the mean of the processes' own last values; process ``r`` validated the
    batches ``r, r + processes, ...`` and nothing else; and the logged validation equals
    ``one_process``, the validation of the same weights by one process."""
    import json

    import pytest

    ranks = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(processes)]
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    own = [rank["losses"][-1][loss_key] for rank in ranks]
    assert len(set(own)) == processes, own  # else the first process's value would pass too
    logged = [row for row in rows if loss_key in row][-1][loss_key]
    assert logged == pytest.approx(sum(own) / processes, rel=1e-12), (logged, own)

    seen = [[index for index, _ in rank["validated"]] for rank in ranks]
    batches = sum(len(s) for s in seen)
    assert batches >= processes
    for r, indices in enumerate(seen):
        assert indices == list(range(r, batches, processes)), seen

    valid = [row for row in rows if any(k.startswith("valid/") for k in row)][-1]
    assert one_process and set(one_process) <= set(valid)
    for key, value in one_process.items():
        assert valid[key] == pytest.approx(value, rel=1e-5), key
    key = next(iter(one_process)).removeprefix("valid/")
    for rank in ranks:  # one process's share alone is not the whole: the shares were added
        total, weight = (sum(t[key][i] for _, t in rank["validated"]) for i in (0, 1))
        assert total / weight != pytest.approx(one_process[f"valid/{key}"], rel=1e-4)
