"""The README's Python examples run as written, and its links into docs/ land on a heading.

The examples load ``demo_out/`` (a finished demo), so the test first runs a tiny demo into a
temporary folder; then every fenced ``python`` block runs there in order, in one namespace (a block
may use what an earlier one defined, as a reader running them in turn would).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_demo import STUDENT, TEACHER

from pwavenet.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the fenced ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings (lower case, punctuation dropped, spaces to
    hyphens)."""
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_python_blocks_are_found():
    blocks = python_blocks("text\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n")
    assert blocks == ["x = 1\n", "y = 2\n"]
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 3


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "teacher_quick.yaml").write_text(TEACHER)
    (conf / "student_quick.yaml").write_text(STUDENT)
    monkeypatch.chdir(tmp_path)
    run_demo("demo_out", "quick", conf_dir=conf, log=lambda line: None)  # what the blocks load
    namespace: dict = {"__name__": "readme"}
    for number, block in enumerate(python_blocks(README.read_text(encoding="utf-8")), 1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    assert (tmp_path / "dump" / "manifest.json").is_file()  # block 1 made a feature cache
    assert (tmp_path / "sample.wav").is_file() and (tmp_path / "student.wav").is_file()
    assert (tmp_path / "my_eval" / "report.html").is_file()


def test_readme_links_into_docs_land_on_headings():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[\w./-]+)(?:#([\w-]+))?\)", text)
    assert links, "the README points at the design notes"
    for path, anchor in links:
        target = ROOT / path
        assert target.is_file(), path
        if anchor:
            assert anchor in heading_anchors(target.read_text(encoding="utf-8")), f"{path}#{anchor}"
