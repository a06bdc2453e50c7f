"""Distillation on the generic trainer: learning, frozen teacher, resume, export, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import reset_accelerate
from safetensors.torch import load_file
from training_setup import (
    check_numbers_of_processes,
    make_dump,
    tiny_batch,
    tiny_config,
    tiny_models,
)

from pwavenet.config import LOSS_TERMS, ConfigError, DistillConfig
from pwavenet.models.export import ExportError, load_student
from pwavenet.train.collective import validate
from pwavenet.train.distill import TERMS, DistillTask, make_distill_trainer, train_student
from pwavenet.train.teacher import train_teacher
from pwavenet.train.trainer import latest_checkpoint

STUDENT = [
    "student.flow_layers=[4, 4]",
    "student.layers_per_cycle=4",
    "student.residual_channels=16",
    "student.gate_channels=32",
    "train.log_every=5",
    "train.valid_every=1000",
]


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    dump = make_dump(root)
    teacher = train_teacher(tiny_config("train.max_steps=100"), dump, root / "teacher", cpu=True)
    reset_accelerate()
    return dump, teacher


def student_config(teacher, *extra: str):
    return tiny_config(f"distill.teacher={teacher}", *STUDENT, *extra)


def test_distillation_lowers_kl_and_power_loss(setup, tmp_path):
    dump, teacher = setup
    cfg = student_config(
        teacher, "train.max_steps=150", "distill.loss_weights={kl: 1.0, power: 10.0}"
    )
    trainer, _ = make_distill_trainer(cfg, dump, tmp_path / "run", cpu=True)
    frozen = {k: v.clone() for k, v in trainer.task.teacher.state_dict().items()}
    before = trainer.validate()
    trainer.fit()
    after = trainer.validate()
    assert after["valid/kl/loss"] < 0.7 * before["valid/kl/loss"], (before, after)
    assert after["valid/power/loss"] < before["valid/power/loss"] - 0.05, (before, after)
    assert abs(after["valid/rms/ratio_db"]) < 6.0  # not whispering
    # The teacher was never trained and never joined the optimizer.
    teacher_now = trainer.task.teacher.state_dict()
    assert all(torch.equal(v, teacher_now[k]) for k, v in frozen.items())
    owned = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not owned & {id(p) for p in trainer.task.teacher.parameters()}
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]  # training rows (not validation)
    assert rows
    for key in (
        "kl/loss",
        "power/loss",
        "kl/ce_std",
        "rms/student",
        "scale/log_s_tot",
        "grad/norm",
    ):
        assert all(key in r and r[key] == r[key] for r in rows), key


def test_resume_equals_uninterrupted(setup, tmp_path):
    dump, teacher = setup
    cfg = student_config(teacher, "train.max_steps=4", "train.save_every=2")
    straight, _ = make_distill_trainer(cfg, dump, tmp_path / "a", cpu=True)
    straight.fit()
    first, _ = make_distill_trainer(cfg, dump, tmp_path / "b", cpu=True)
    first.fit(until=2)
    second, _ = make_distill_trainer(cfg, dump, tmp_path / "b", cpu=True)
    second.load_checkpoint(latest_checkpoint(tmp_path / "b"))
    second.fit()
    a, b = straight.unwrapped.state_dict(), second.unwrapped.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_export_records_teacher_and_loads(setup, tmp_path):
    dump, teacher = setup
    cfg = student_config(teacher, "train.max_steps=2")
    export = train_student(cfg, dump, tmp_path / "run", cpu=True)
    model = load_student(export)
    assert model.teacher["path"] == str(teacher.resolve())
    assert len(model.teacher["sha256"]) == 64
    meta = json.loads((export / "model.json").read_text())
    assert meta["kind"] == "student"
    mel = torch.randn(1, 20, 5)
    z = model.noise([320], torch.Generator().manual_seed(0))
    again = load_student(export)
    torch.testing.assert_close(model.synthesize(mel, noise=z), again.synthesize(mel, noise=z))
    with pytest.raises(ExportError, match="is a student export, not a teacher"):
        train_student(student_config(export, "train.max_steps=1"), dump, tmp_path / "x", cpu=True)


def test_teacher_with_other_features_is_refused(setup, tmp_path):
    dump, teacher = setup
    cfg = student_config(teacher, "audio.n_mels=24")
    with pytest.raises(ConfigError, match=r"other feature settings.*n_mels 20 vs 24"):
        make_distill_trainer(cfg, dump, tmp_path / "run", cpu=True)
    with pytest.raises(ConfigError, match=r"distill\.teacher is empty"):
        make_distill_trainer(tiny_config(*STUDENT), dump, tmp_path / "run", cpu=True)


@pytest.mark.slow
def test_two_processes_keep_one_student(setup, tmp_path):
    """Two processes train one student, log the mean of their training metrics, and split the
    validation set between them (the value one process gets, with the same noise)."""
    from test_training import free_port

    dump, teacher = setup
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    script = str(Path(__file__).parent / "dist_distill.py")
    out = tmp_path / "weights"
    args = [script, str(dump), str(teacher), str(tmp_path / "run"), str(out), "2"]
    subprocess.run([*launch, *args], check=True, timeout=300)
    a, b = load_file(f"{out}.0"), load_file(f"{out}.1")
    for k in a:  # the ranks trained one model: gradients were synchronised
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    flows = [k for k in a if k.endswith("out.weight")]
    assert flows and any(float(a[k].abs().max()) > 0 for k in flows)  # the steps moved them
    cfg = student_config(teacher, "train.max_steps=2", "optim.ema_decay=0")  # as dist_distill
    trainer, _ = make_distill_trainer(cfg, dump, tmp_path / "one", cpu=True)
    trainer.unwrapped.load_state_dict(a)
    check_numbers_of_processes(tmp_path / "run", str(out), 2, "loss", trainer.validate())


# The loss of a tiny seeded setup, pinned (values measured before the loss became a weight
# table): refactoring the loss must not move a number.
PINNED_LOSS = {
    "default": (
        {},
        128,
        {"loss": 3464.529541015625, "kl/loss": 0.2287130504846573, "power/loss": 3464.30078125},
    ),
    "every-term": (
        {
            "loss_weights": {"kl": 1.0, "power": 0.5, "loudness": 2.0},
            "power_loss": "logpower",
            "contrastive_gamma": 0.3,
        },
        128,
        {
            "loss": 75.8902587890625,
            "power/loss": 52.478755950927734,
            "loudness/loss": 24.730627059936523,
            "contrastive/kl": 0.13029305636882782,
            "kl/ce_std": 0.05801432579755783,
        },
    ),
    "mrstft": (
        {"loss_weights": {"kl": 0.5, "power": 1.0}, "power_loss": "mrstft"},
        1280,
        {"loss": 16.17048454284668, "power/loss": 16.085481643676758},
    ),
}


@pytest.mark.parametrize("case", sorted(PINNED_LOSS))
def test_loss_value_is_pinned(case):
    settings, steps, expected = PINNED_LOSS[case]
    teacher, student, audio = tiny_models()
    task = DistillTask(teacher, DistillConfig(samples=4, **settings), audio)
    torch.manual_seed(0)
    loss, metrics = task.loss(student, tiny_batch(steps=steps))
    assert float(loss.detach()) == pytest.approx(expected["loss"], rel=1e-6)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-6), key


def test_gaussian_pair_loss_is_pinned():
    teacher, student, audio = tiny_models(output="gaussian", base="gaussian")
    task = DistillTask(teacher, DistillConfig(samples=4), audio)
    torch.manual_seed(0)
    loss, metrics = task.loss(student, tiny_batch())
    assert float(loss.detach()) == pytest.approx(121.66922760009766, rel=1e-6)
    assert metrics["kl/loss"] == pytest.approx(0.01798887550830841, rel=1e-6)


def test_validation_value_is_pinned():
    # Re-measured when validation began to seed each batch from its index (for sharding across
    # processes): the first batch's draws are unchanged, the second's are new.
    teacher, student, audio = tiny_models()
    task = DistillTask(teacher, DistillConfig(samples=4), audio)
    batches = [tiny_batch(1, batch=1), tiny_batch(2, batch=1)]
    valid = validate(task.validation_totals, student, batches)
    assert valid["kl/loss"] == pytest.approx(0.18499119579792023, rel=1e-6)
    assert valid["power/loss"] == pytest.approx(2492.0194091796875, rel=1e-6)
    assert valid["rms/ratio_db"] == pytest.approx(20.906870504102926, rel=1e-6)


def test_loss_terms_are_one_list():
    assert tuple(TERMS) == LOSS_TERMS


def test_a_zero_weight_term_is_not_computed(monkeypatch):
    def never(task, step):
        raise AssertionError("a term of weight 0 was computed")

    monkeypatch.setitem(TERMS, "power", never)
    teacher, student, audio = tiny_models()
    cfg = DistillConfig(samples=2, loss_weights={"kl": 1.0, "power": 0.0, "loudness": 1.0})
    task = DistillTask(teacher, cfg, audio)
    loss, metrics = task.loss(student, tiny_batch())
    assert "power/loss" not in metrics and "contrastive/loss" not in metrics
    assert float(loss.detach()) == pytest.approx(metrics["kl/loss"] + metrics["loudness/loss"])
    with pytest.raises(ConfigError, match="every loss term weighs 0"):
        DistillTask(teacher, DistillConfig(loss_weights={"kl": 0.0, "power": 0.0}), audio)


def test_validation_reports_every_weighted_term():
    teacher, student, audio = tiny_models()
    cfg = DistillConfig(samples=2, loss_weights={"kl": 1.0, "power": 1.0, "loudness": 0.5})
    task = DistillTask(teacher, cfg, audio)
    batches = [tiny_batch(1, batch=1), tiny_batch(2, batch=1)]
    valid = validate(task.validation_totals, student, batches)
    assert {"kl/loss", "power/loss", "loudness/loss", "loss"} <= set(valid)
    torch.manual_seed(0)
    _, metrics = task.loss(student, tiny_batch())
    assert {k for k in metrics if k.endswith("/loss")} == {k for k in valid if k.endswith("/loss")}
    # the same fixed noise at every validation: the numbers repeat
    assert validate(task.validation_totals, student, batches) == valid
    # each batch's noise is fixed by its index, not by the batches validated before it (as on
    # another process): scored in the other order, the batches give the same validation
    second = task.validation_totals(student, batches[1], 1)
    first = task.validation_totals(student, batches[0], 0)
    assert {k: (first[k][0] + second[k][0]) / 2 for k in valid} == pytest.approx(valid, rel=1e-12)


def test_contrastive_gamma_is_the_contrastive_weight():
    teacher, student, audio = tiny_models()
    values = []
    for cfg in (
        DistillConfig(samples=2, contrastive_gamma=0.3),
        DistillConfig(samples=2, loss_weights={"kl": 1.0, "power": 1.0, "contrastive": 0.3}),
    ):
        torch.manual_seed(0)
        loss, metrics = DistillTask(teacher, cfg, audio).loss(student, tiny_batch())
        assert metrics["contrastive/loss"] == -metrics["contrastive/kl"] < 0
        values.append(float(loss.detach()))
    assert values[0] == values[1]
    with pytest.raises(ConfigError, match="alias"):
        tiny_config("distill.contrastive_gamma=0.3", "distill.loss_weights={contrastive: 0.3}")
