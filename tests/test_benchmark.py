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


def test_benchmark_prints_and_writes_a_table_of_positive_numbers(tmp_path, capsys):
    tool = load_tool()
    out = tmp_path / "bench.md"
    assert tool.main(["--configs", "tiny", "--seconds", "0.01", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == printed
    head, _, table = printed.partition("\n\n")
    assert head.startswith("Device: ") and "torch threads" in head and "float32" in head
    lines = table.strip().splitlines()
    assert len(lines) == 3  # header, rule, one row
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == COLUMNS
    row = dict(zip(COLUMNS, cells[2], strict=True))
    assert row["model"] == "teacher tiny" and row["train batch"] == "4 x 2048"
    assert int(row["receptive field"]) == 29
    for column in COLUMNS[4:]:
        value = float(row[column].replace(",", ""))
        assert math.isfinite(value) and value > 0, (column, row[column])


def test_benchmark_rejects_unknown_configurations(capsys):
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.main(["--configs", "huge"])
    assert "unknown configuration" in capsys.readouterr().err
