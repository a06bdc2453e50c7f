"""The command-line tool as a user runs it: entry point, help, one-line errors, cheap import."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from pwavenet import cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pwavenet", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_subcommands():
    result = run("--help")
    assert result.returncode == 0
    for name in ("make-corpus", "preprocess"):
        assert name in result.stdout


def test_error_is_one_line_without_traceback(tmp_path):
    result = run("preprocess", str(tmp_path / "missing"), str(tmp_path / "dump"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"pwavenet: error: {tmp_path / 'missing'}: no such corpus folder"
    ]
    assert not (tmp_path / "dump").exists()


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 1
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["librosa", "accelerate", "matplotlib"])
def test_import_is_cheap(module):
    code = f"import pwavenet, pwavenet.cli, sys; print({module!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_make_corpus_then_preprocess(tmp_path, capsys):
    corpus, dump = tmp_path / "corpus", tmp_path / "dump"
    assert (
        cli.main(["make-corpus", str(corpus), "--utterances", "6", "--sample-rate", "16000"]) == 0
    )
    assert "wrote 6 utterances" in capsys.readouterr().out
    overrides = [
        "audio.sample_rate=16000",
        "data.valid_utterances=1",
        "data.test_utterances=1",
        "data.segment_length=4096",
    ]
    assert cli.main(["preprocess", str(corpus), str(dump), *overrides]) == 0
    out = capsys.readouterr().out
    assert "kept 6 files (0 converted" in out and "split train 4 / valid 1 / test 1" in out


def test_overrides_may_follow_options(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    assert (
        cli.main(["make-corpus", str(corpus), "--utterances", "4", "--sample-rate", "16000"]) == 0
    )
    args = ["preprocess", str(corpus), str(tmp_path / "d"), "audio.sample_rate=16000"]
    args += ["--strict", "data.valid_utterances=1", "data.test_utterances=1"]
    assert cli.main(args) == 0
    with pytest.raises(SystemExit):
        cli.main(["preprocess", str(corpus), str(tmp_path / "d"), "--strict", "stray"])


def test_load_teacher_is_a_top_level_lazy_attribute():
    code = "import pwavenet, sys; f = pwavenet.load_teacher; print(f.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "pwavenet.models.export"


def test_synthesize_help_shows_the_chunk_default():
    result = run("synthesize", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # help lines wrap at the terminal width
    assert "0 for one pass. (default: 5.0)" in text


def test_every_subcommand_help_shows_its_defaults():
    parser, _ = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, subparser in sub.choices.items():
        text = " ".join(subparser.format_help().split())
        for action in subparser._actions:
            default, words = action.default, action.help or ""
            unset = default is None or default is False or default in ([], argparse.SUPPRESS)
            if unset or "default" in words.lower():  # flags, unset options, own wording
                continue
            assert f"(default: {default})" in text, f"pwavenet {name} --help: {action.dest}"
            checked += 1
    assert checked >= 20
