"""tools/benchmark.py: runs on the tiny teacher and prints a well-formed Markdown table (speeds
are not asserted: performance claims come from the benchmark, never from a timed test)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest


def load_tool():
    path = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"
    spec = importlib.util.spec_from_file_location("benchmark_tool", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


COLUMNS = [
    "model",
    "params",
    "receptive field",
    "train batch",
    "train (samples/s)",
    "train peak (MiB)",
    "cached B=1 (samples/s)",
    "cached B=8 (samples/s, all 8)",
    "naive B=1 (samples/s)",
    "cached / naive",
    "generate B=8 peak (MiB)",
]


def parse_table(text: str) -> list[dict[str, str]]:
    lines = text.strip().splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def assert_positive(row: dict[str, str], columns: list[str]) -> None:
    for column in columns:
        value = float(row[column].split()[0].replace(",", ""))
        assert math.isfinite(value) and value > 0, (column, row[column])


def test_benchmark_prints_and_writes_tables_of_positive_numbers(tmp_path, capsys):
    tool = load_tool()
    out = tmp_path / "bench.md"
    args = ["--configs", "tiny", "--seconds", "0.01", "--long-seconds", "0.5", "--out", str(out)]
    assert tool.main(args) == 0
    printed = capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == printed
    head, teacher, student = printed.split("\n\n### ")
    assert head.startswith("Device: ") and "torch threads" in head and "float32" in head
    assert "Matrix-product peak" in head
    (row,) = parse_table(teacher.removeprefix("Teacher\n\n"))
    assert list(row) == COLUMNS
    assert row["model"] == "teacher tiny" and row["train batch"] == "4 x 2048"
    assert int(row["receptive field"]) == 29
    assert_positive(row, COLUMNS[4:])
    (row,) = parse_table(student.removeprefix("Student\n\n"))
    assert row["model"] == "student tiny (teacher tiny)"
    assert int(row["lookback"]) == 2 * (1 + 2 * (1 + 2 + 4 + 8))
    numeric = [c for c in row if c not in ("model", "distill train batch")]
    assert "RTF at 22.05 kHz" in numeric and "0.5 s chunked peak (MiB)" in numeric
    assert_positive(row, numeric)


def test_benchmark_rejects_unknown_configurations(capsys):
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.main(["--configs", "huge"])
    assert "unknown configuration" in capsys.readouterr().err


def test_benchmark_paths_table_has_every_path_of_both_models(capsys):
    tool = load_tool()
    assert tool.main(["--configs", "tiny", "--seconds", "0.01", "--tables", "paths"]) == 0
    head, table = capsys.readouterr().out.split("\n\n### ")
    assert "bf16" in head
    rows = parse_table(table.removeprefix("Paths\n\n"))
    paths = [(r["model"], r["path"]) for r in rows]
    assert paths == [
        ("student tiny", "float32"),
        ("student tiny", "bfloat16 (flows)"),
        ("student tiny", "streaming float32, 8-frame chunks"),
        ("student tiny", "streaming bfloat16, 8-frame chunks"),
        ("student tiny", "ONNX Runtime float32"),
        ("teacher tiny", "float32 cached"),
        ("teacher tiny", "bfloat16 cached"),
    ]
    measured = ["B=1 (samples/s)", "RTF at 22.05 kHz", "GFLOP/s", "% of float32 peak"]
    for row in rows[:6]:
        assert_positive(row, [*measured, "% of bf16 peak"])
    assert "SNR vs float32" in rows[1]["note"] and "first audio after" in rows[2]["note"]
    assert rows[6]["B=1 (samples/s)"] == "n/a" and "not offered" in rows[6]["note"]
