"""The shipped models' figures are written once, in `ride.model_zoo`: the documents that state them agree with it,
and the weights are stored once (in the package, not again in models/)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ride.model_zoo import pretrained_models

ROOT = Path(__file__).resolve().parents[1]
ZOO = {entry.name: entry for entry in pretrained_models()}
HEADER = "| shipped model | figure | value |"


def _figures_table(path: Path) -> dict[str, dict[str, str]]:
    """The rows of the document's "| shipped model | figure | value |" table: {name: {label: value}}."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines.count(HEADER) == 1, f"{path.name} needs exactly one table headed {HEADER!r}"
    table: dict[str, dict[str, str]] = {}
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 3 and re.fullmatch(r"`\w+`", cells[0]), f"{path.name}: bad row {line!r}"
        table.setdefault(cells[0].strip("`"), {})[cells[1]] = cells[2]
    return table


@pytest.mark.parametrize("document", ["RESULTS.md", "models/README.md"])
def test_documents_state_the_zoo_figures(document):
    assert _figures_table(ROOT / document) == {name: dict(entry.figures) for name, entry in ZOO.items()}


def test_readme_table_states_the_zoo_tiles64_figures():
    """README's "Shipped models" table names every shipped model, and each "tiles64 X bit/px" it gives is the zoo's."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\|[^\n]*\| `(\w+)`[^|\n]*\|$", readme, re.M)
            if m.group(1) in ZOO}
    assert set(rows) == set(ZOO)
    stated = 0
    for name, row in rows.items():
        for value in re.findall(r"tiles64 (\d+\.\d+) bit/px", row):
            assert ZOO[name].figures["tiles64 BSDS300 test"].startswith(f"{value} "), (name, value)
            stated += 1
    assert stated >= 4  # the four grey models


def test_shipped_weights_are_stored_once():
    package = {hashlib.sha256(p.read_bytes()).hexdigest(): p.name for p in (ROOT / "src/ride/weights").glob("*.pt")}
    assert {ZOO[name].sha256 for name in ZOO} == set(package)
    copies = [p.name for p in (ROOT / "models").rglob("*.pt") if hashlib.sha256(p.read_bytes()).hexdigest() in package]
    assert copies == [], f"models/ holds copies of shipped weights: {copies}"
