"""Bad budgets and thread counts on the command line: a one-line error naming the flag, exit status 2, no
traceback, and nothing slow done first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ride.cli import main

# each command that has --threads, with its other required arguments (never read: the check comes first)
THREADED = {
    "demo": [],
    "eval": ["--checkpoint", "none.pt", "--data", "bsds300"],
    "sample": ["--checkpoint", "none.pt", "--size", "8x8", "--out", "none.png"],
    "inpaint": ["--checkpoint", "none.pt", "--image", "a.png", "--mask", "b.png", "--out", "c.png"],
    "fit-mcgsm63": ["--out", "none.pt"],
    "train": ["--out", "none_run"],
}

BAD_BUDGETS = [
    (["demo", "--seconds", "-1"], "--seconds"),
    (["demo", "--seconds", "nan"], "--seconds"),
    (["demo", "--mcgsm-iters", "-1"], "--mcgsm-iters"),
    (["demo", "--ride-steps", "-5"], "--ride-steps"),
    (["demo", "--ride-mcgsm-iters", "-1"], "--ride-mcgsm-iters"),
    (["inpaint", *THREADED["inpaint"], "--sweeps", "-1"], "--sweeps"),
    (["inpaint", *THREADED["inpaint"], "--steps", "-1"], "--steps"),
    (["fit-mcgsm", "--out", "none.pt", "--max-iter", "-1"], "--max-iter"),
    (["fit-mcgsm", "--out", "none.pt", "--max-seconds", "-1"], "--max-seconds"),
    (["fit-mcgsm63", "--out", "none.pt", "--max-seconds", "-1"], "--max-seconds"),
    (["fit-mcgsm63", "--out", "none.pt", "--max-iter", "-1"], "--max-iter"),
    (["train", "--out", "none_run", "--max-seconds", "-1"], "max_seconds"),
]


def one_line_error(capsys, command: str, flag: str) -> None:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"ride {command}: error:") and flag in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize("command", sorted(THREADED))
def test_negative_threads(command: str, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([command, *THREADED[command], "--threads", "-1"]) == 2
    one_line_error(capsys, command, "threads")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(("argv", "flag"), BAD_BUDGETS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_negative_budgets(argv: list[str], flag: str, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    one_line_error(capsys, argv[0], flag)


def test_console_entry_point_prints_one_line() -> None:
    """The real `python -m ride` process: exit status 2 and exactly one line on stderr."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-m", "ride", "demo", "--seconds", "-1"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "--seconds" in done.stderr
