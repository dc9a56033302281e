"""Every how-to in docs/ runs: its ```python blocks are executed in order, in a temporary folder."""

import re
from pathlib import Path

import pytest

DOCS = sorted(p for p in (Path(__file__).parent.parent / "docs").glob("*.md") if "```python" in p.read_text())


def test_there_are_howtos():
    expected = {
        "samplers.md",
        "own-data.md",
        "sample-from-checkpoint.md",
        "evaluate.md",
        "score-based.md",
        "likelihood.md",
        "conditional.md",
        "guidance.md",
        "inpainting.md",
        "colorization.md",
        "classifier.md",
        "distill.md",
    }
    assert {p.name for p in DOCS} >= expected


@pytest.mark.parametrize("doc", DOCS, ids=[p.stem for p in DOCS])
def test_howto_runs(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    namespace: dict = {"__name__": "__doc__"}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)
    assert blocks
