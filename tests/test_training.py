"""Teacher training on the generic trainer: learning, exact resume, export, failures, DDP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from training_setup import check_numbers_of_processes, free_port, make_dump, tiny_config

from pwavenet.data.cache import FeatureCache
from pwavenet.models.export import ExportError, load_teacher, save_export
from pwavenet.train.collective import shard
from pwavenet.train.teacher import (
    TeacherTask,
    build_teacher,
    evaluate_teacher,
    make_teacher_trainer,
    teacher_args,
    train_teacher,
)
from pwavenet.train.trainer import TrainingError, latest_checkpoint

HERE = Path(__file__).parent


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    return make_dump(tmp_path_factory.mktemp("teacher"))


def mean_bits(model, dump) -> float:
    rows = evaluate_teacher(model, FeatureCache(dump), "valid")
    return sum(r["bits"] * r["samples"] for r in rows) / sum(r["samples"] for r in rows)


def test_validation_nll_falls(dump, tmp_path):
    cfg = tiny_config("train.max_steps=150")
    torch.manual_seed(cfg.train.seed)
    untrained = build_teacher(cfg).eval()
    untrained.audio = cfg.audio
    before = mean_bits(untrained, dump)
    export = train_teacher(cfg, dump, tmp_path / "run", cpu=True)
    after = mean_bits(load_teacher(export), dump)
    assert before > 15.0
    assert after < before - 3.0, (before, after)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("valid/nll/bits" in row for row in log) and any("grad/norm" in row for row in log)
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_resume_equals_uninterrupted(dump, tmp_path):
    # 2 batches per epoch: stopping at step 3 resumes in the middle of an epoch
    cfg = tiny_config("train.max_steps=8", "train.save_every=3")
    straight = make_teacher_trainer(cfg, dump, tmp_path / "a", cpu=True)
    straight.fit()
    first = make_teacher_trainer(cfg, dump, tmp_path / "b", cpu=True)
    first.fit(until=3)
    assert latest_checkpoint(tmp_path / "b").name == "step-00000003"
    second = make_teacher_trainer(cfg, dump, tmp_path / "b", cpu=True)
    second.load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert second.progress.step == 3 and second.progress.batch_in_epoch == 1
    second.fit()
    for (name, a), (_, b) in zip(
        straight.unwrapped.state_dict().items(), second.unwrapped.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    for name, a in straight.ema.shadow.items():
        torch.testing.assert_close(a, second.ema.shadow[name], atol=1e-6, rtol=0, msg=name)
    # keep_checkpoints prunes old ones; no temporary checkpoint is left behind
    names = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert names == ["step-00000003", "step-00000006", "step-00000008"]


def test_export_round_trip_and_bad_exports(dump, tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_teacher(cfg).eval()
    path = save_export(model, tmp_path / "t", kind="teacher", model_args=teacher_args(cfg), cfg=cfg)
    loaded = load_teacher(path)
    audio, mel = torch.rand(1, 1, 640) - 0.5, torch.randn(1, 20, 10)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio, mel), model(audio, mel), atol=0, rtol=0)
    assert loaded.audio == cfg.audio
    # another architecture
    other = tiny_config("teacher.residual_channels=16")
    save_export(
        build_teacher(other), tmp_path / "o", kind="teacher", model_args=teacher_args(cfg), cfg=cfg
    )
    with pytest.raises(ExportError, match="another architecture: shape of"):
        load_teacher(tmp_path / "o")
    # a student passed as a teacher
    save_export(model, tmp_path / "s", kind="student", model_args={}, cfg=cfg)
    with pytest.raises(ExportError, match="is a student export, not a teacher"):
        load_teacher(tmp_path / "s")
    with pytest.raises(ExportError, match="no such export folder"):
        load_teacher(tmp_path / "missing")
    (tmp_path / "t" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ExportError, match="unreadable weights"):
        load_teacher(tmp_path / "t")


class NaNTask(TeacherTask):
    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        return loss * float("nan"), metrics


class NaNGradientTask(TeacherTask):
    """A finite loss whose gradient is NaN (d sqrt(u) / du at u = 0 times 0)."""

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        return loss + torch.sqrt(0.0 * sum(p.sum() for p in model.parameters())), metrics


@pytest.mark.parametrize("task", [NaNTask, NaNGradientTask])
def test_non_finite_losses_stop_with_a_clear_error(dump, tmp_path, task):
    cfg = tiny_config("train.max_steps=4", "train.save_every=2", "train.max_nonfinite=3")
    trainer = make_teacher_trainer(cfg, dump, tmp_path / "run", cpu=True)
    trainer.fit(until=2)
    before = {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()}
    trainer.task = task()
    with pytest.raises(
        TrainingError, match=r"3 non-finite losses or gradients in a row at step 2.*step-00000002"
    ):
        trainer.fit()
    assert trainer.progress.nonfinite_total == 3
    for k, v in trainer.unwrapped.state_dict().items():
        assert torch.equal(v, before[k]), k  # skipped steps changed nothing


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(dump, tmp_path):
    """Two processes step like one with their global batch, log the mean of their training
    metrics, and split the validation set between them (the value one process gets)."""
    script = str(HERE / "dist_train.py")
    one = tmp_path / "one.safetensors"
    two = tmp_path / "two.safetensors"
    subprocess.run(
        [sys.executable, script, str(dump), str(tmp_path / "r1"), "4", str(one), "1"],
        check=True,
        timeout=300,
    )
    # Two CPU processes with the gloo backend: accelerate picks up the torchrun environment
    # (`accelerate launch` itself starts several CPU processes only through mpirun).
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    subprocess.run(
        [*launch, script, str(dump), str(tmp_path / "r2"), "2", str(two), "2"],
        check=True,
        timeout=300,
    )
    a, b = load_file(str(one)), load_file(str(two))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=k)
    start = build_teacher(tiny_config()).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # training moved the weights
    # one process validating the two-process weights (EMA off: the weights validated there)
    cfg = tiny_config("data.batch_size=2", "train.max_steps=1", "optim.ema_decay=0")
    trainer = make_teacher_trainer(cfg, dump, tmp_path / "v1", cpu=True)
    trainer.unwrapped.load_state_dict(b)
    one_process = trainer.validate()
    check_numbers_of_processes(tmp_path / "r2", str(two), 2, "nll/bits", one_process)


def test_shards_split_the_batches_in_order_of_their_indices():
    loader = DataLoader(list(range(7)), batch_size=2)  # 4 batches, the last short
    whole = list(loader)
    for processes in (1, 2, 3, 5):
        scored = []
        for rank in range(processes):
            mine = list(shard(loader, rank, processes))
            assert [i for i, _ in mine] == list(range(rank, len(whole), processes))
            assert [i for i, _ in shard(whole, rank, processes)] == [i for i, _ in mine]
            for index, batch in mine:
                assert torch.equal(batch, whole[index])
            scored += [i for i, _ in mine]
        assert sorted(scored) == list(range(len(whole)))


def test_bf16_autocast_trains_with_float32_loss_math(dump, tmp_path):
    cfg = tiny_config("train.mixed_precision=bf16", "train.max_steps=3", "train.log_every=1")
    trainer = make_teacher_trainer(cfg, dump, tmp_path / "run", cpu=True)
    start = {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()}
    audio, mel = torch.zeros(1, 1, 640), torch.zeros(1, 20, 10)
    with trainer.accelerator.autocast():
        out = trainer.model(audio, mel)  # accelerate hands outputs back as float32 ...
    assert torch.equal(out, out.bfloat16().float())  # ... but computed in bf16: autocast is on
    metrics = trainer.fit()
    assert 0 < metrics["nll/bits"] < 25
    assert all(v.dtype == torch.float32 for v in trainer.unwrapped.state_dict().values())
    assert any(not torch.equal(v, start[k]) for k, v in trainer.unwrapped.state_dict().items())


def test_evaluate_teacher_names_the_differing_feature_setting(dump):
    from pwavenet.errors import DataError

    model = build_teacher(tiny_config())
    model.audio = tiny_config("audio.n_mels=24").audio
    with pytest.raises(DataError, match=r"other settings than the model's \(n_mels 20 vs 24\)"):
        evaluate_teacher(model, FeatureCache(dump), "valid")
