"""`ride fit-mcgsm63` on a tiny fake BSDS300 tree: one checkpoint with the DC model, the CSV learning curve,
`--resume` (finished conditionals are not refitted; an in-progress one continues), `ride eval` on the result, and
one-line errors."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ride
from ride import protocols as P
from ride.checkpoint import load_payload
from ride.cli import eval as cli_eval
from ride.cli import main
from ride.cli.fit63 import register
from ride.data import patches63
from ride.mcgsm import MCGSM
from ride.patch_models import PatchChainMCGSM

# a tiny chain: 63 conditionals of one component, one scale, one feature, a few L-BFGS iterations
OPTIONS = ["--patches", "300", "--val-patches", "100", "--components", "1", "--scales", "1", "--features", "1",
           "--dc-components", "2", "--max-iter", "3", "--val-every", "1", "--device", "cpu", "--save-every", "1e9"]


def _run(argv: list[str]) -> int:
    """`ride fit-mcgsm63 ARGV` through a parser like the main CLI's (errors propagate)."""
    parser = argparse.ArgumentParser(prog="ride")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fit-mcgsm63", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """A BSDS300 tree of 30 training ids (10 train + 20 val) and 5 test ids: smooth 16x16 grey JPEGs."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for part, ids in (("train", range(1000, 1030)), ("test", range(2000, 2005))):
        folder = root / "bsds300" / "images" / part
        folder.mkdir(parents=True)
        for image_id in ids:
            coarse = rng.integers(0, 256, (4, 4)).astype(np.uint8)
            image = Image.fromarray(coarse).resize((16, 16), Image.BILINEAR)
            image.save(folder / f"{image_id}.jpg", quality=95)
        (root / "bsds300" / f"iids_{part}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture(scope="module")
def fitted(fake_root, tmp_path_factory) -> tuple[Path, list[str]]:
    """An uninterrupted fit: (checkpoint, the data options used)."""
    folder = tmp_path_factory.mktemp("fit")
    data = ["--data-root", str(fake_root), "--cache-dir", str(folder / "cache")]
    out = folder / "chain.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test setting
    try:
        assert _run(["--out", str(out), *data, *OPTIONS]) == 0
    finally:
        torch.set_num_threads(threads)
    return out, data


def test_checkpoint_has_chain_dc_model_and_learning_curve(fitted, fake_root):
    out, _ = fitted
    model = ride.load(out)
    assert isinstance(model, PatchChainMCGSM) and model.dim == 63 and model.num_components == 1
    extra = load_payload(out)["extra"]
    assert extra["status"] == "done" and extra["conditionals_done"] == list(range(63))
    assert extra["in_progress"] is None and extra["config"]["patches"] == 300 and extra["elapsed_s"] > 0
    dc_model = P.DCModel.from_dict(extra[P.DC_MODEL_KEY])
    assert dc_model.num_components == 2
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [int(r["conditional"]) for r in rows] == list(range(63))
    assert all(1 <= int(r["iterations"]) <= 3 and r["stop_reason"] for r in rows)
    # the per-conditional validation NLLs (Jacobians included) add up to the chain's NLL of the validation patches
    val = patches63.BSDS300Patches(fake_root, "val", cache_dir=out.parent / "cache", num_patches=100).patches
    z, _ = P.patches_to_63(val.double())
    with torch.no_grad():
        nll = float(-model.log_prob(z.float()).double().mean())
    assert float(rows[-1]["val_nll_nats_cumulative"]) == pytest.approx(nll, abs=1e-3 * (1 + abs(nll)))
    assert sum(float(r["val_nll_nats"]) for r in rows) == pytest.approx(extra["val_nll_nats"], abs=1e-4)
    assert sum(float(r["train_nll_nats"]) for r in rows) < 0  # smooth patches: a density well above 1


def test_ride_eval_patch_protocols_run_on_the_checkpoint(fitted, tmp_path, monkeypatch, capsys):
    out, data = fitted
    monkeypatch.setenv("RIDE_CACHE", str(tmp_path / "cache"))
    original = patches63.BSDS300Patches

    class FewTestPatches(original):  # 200 test patches instead of 250,000
        def __init__(self, root, split, cache_dir=None, regenerate=False, *, num_patches=None):
            super().__init__(root, split, cache_dir, regenerate, num_patches=num_patches or 200)

    monkeypatch.setattr("ride.data.BSDS300Patches", FewTestPatches)  # what `ride eval` reads
    parser = argparse.ArgumentParser(prog="ride")
    cli_eval.register(parser.add_subparsers(dest="command", required=True))
    results = {}
    for protocol in ("patches63", "patches64"):
        args = parser.parse_args(["eval", "--checkpoint", str(out), "--data", "bsds300", "--split", "test",
                                  "--data-root", data[1], "--protocol", protocol, "--json", "--no-progress",
                                  "--device", "cpu"])
        assert args.func(args) == 0
        results[protocol] = json.loads(capsys.readouterr().out)
    assert results["patches63"]["num_patches"] == results["patches64"]["num_patches"] == 200
    assert all(np.isfinite(r["nats"]) for r in results.values())
    assert results["patches64"]["num_pixels"] == 200 * 64


def test_resume_skips_finished_conditionals_and_continues_the_current_one(fitted, tmp_path, monkeypatch):
    reference, data = fitted
    out = tmp_path / "chain.pt"
    calls: list[tuple[int, bool | None]] = []
    interrupt_at: list[int] = []  # conditional k (k inputs for k >= 1) whose first L-BFGS iteration raises Ctrl-C
    original = MCGSM.fit

    def spy(self, *a, **kw):
        if kw["max_iter"] > 0:  # max_iter=0: the standardiser of pixel 0 (no L-BFGS)
            calls.append((self.dim_in, kw.get("init")))
        if interrupt_at and self.dim_in == interrupt_at[0] and kw["max_iter"] > 0:
            callback = kw["callback"]

            def interrupting(info):
                callback(info)  # with --save-every 0 this writes a snapshot of the conditional
                raise KeyboardInterrupt

            kw["callback"] = interrupting
        return original(self, *a, **kw)

    monkeypatch.setattr(MCGSM, "fit", spy)
    options = OPTIONS[:-2]  # without --save-every

    # 1. Ctrl-C in conditional 3, no checkpoint written before: the interruption saves conditionals 0..2
    interrupt_at[:] = [3]
    with pytest.raises(KeyboardInterrupt):
        _run(["--out", str(out), *data, *options, "--save-every", "1e9"])
    extra = load_payload(out)["extra"]
    assert extra["status"] == "interrupted" and extra["conditionals_done"] == [0, 1, 2]
    assert extra["in_progress"] is None and P.DC_MODEL_KEY in extra
    assert len(list(csv.DictReader(out.with_suffix(".csv").open()))) == 3

    # 2. resume, snapshots after every iteration, Ctrl-C in conditional 5: its snapshot is kept
    interrupt_at[:] = [5]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        _run(["--out", str(out), *data, *options, "--save-every", "0", "--resume"])
    assert calls == [(3, True), (4, True), (5, True)]  # 0..2 not refitted; 3 refitted from the start
    extra = load_payload(out)["extra"]
    assert extra["status"] == "fitting" and extra["conditionals_done"] == [0, 1, 2, 3, 4]
    assert extra["in_progress"] == {"conditional": 5, "iterations": 1}
    assert len(list(csv.DictReader(out.with_suffix(".csv").open()))) == 5
    before = ride.load(out)

    # 3. resume to the end: conditional 5 continues from its snapshot
    interrupt_at.clear()
    calls.clear()
    assert _run(["--out", str(out), *data, *options, "--save-every", "1e9", "--resume"]) == 0
    assert calls == [(5, False)] + [(k, True) for k in range(6, 63)]
    after, full = ride.load(out), ride.load(reference)
    for k in range(63):
        for name, value in after.conditionals[k].state_dict().items():
            if k < 5:
                assert torch.equal(value, before.conditionals[k].state_dict()[name])
            if k != 5:  # each conditional has its own seed: as in an uninterrupted fit
                assert torch.equal(value, full.conditionals[k].state_dict()[name])
    extra = load_payload(out)["extra"]
    assert extra["status"] == "done" and extra["conditionals_done"] == list(range(63))
    assert [r["conditional"] for r in extra["conditionals"]] == list(range(63))
    assert extra["conditionals"][5]["iterations"] > 1  # 1 before the snapshot, more after it
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [int(r["conditional"]) for r in rows] == list(range(63))  # appended

    # 4. a finished checkpoint: nothing to refit
    calls.clear()
    assert _run(["--out", str(out), *data, *options, "--resume"]) == 0
    assert calls == []


def test_clear_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RIDE_DATA", raising=False)
    out = str(tmp_path / "x.pt")
    assert main(["fit-mcgsm63", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RIDE_DATA" in err and "ride fit-mcgsm63: error:" in err
    assert main(["fit-mcgsm63", "--out", out, "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["fit-mcgsm63", "--out", out, "--patches", "1"]) == 2
    assert "--patches" in capsys.readouterr().err
    ride.save(MCGSM(2), out)
    assert main(["fit-mcgsm63", "--out", out, "--resume"]) == 2
    assert "not written by `ride fit-mcgsm63`" in capsys.readouterr().err


def test_refit_fits_the_named_conditionals_again_and_keeps_the_others(fitted, tmp_path):
    out, data = fitted
    copy = tmp_path / "chain.pt"
    shutil.copy(out.with_suffix(".csv"), copy.with_suffix(".csv"))
    # Spoil conditionals 2 and 5 (as a cut-short fit would leave them); --refit must fit them again.
    payload = load_payload(out)
    original = {name: value.clone() for name, value in payload["state_dict"].items()}
    for name, value in payload["state_dict"].items():
        if name.split(".")[1] in ("2", "5") and value.is_floating_point():
            value.add_(1.0)
    torch.save(payload, copy)
    assert _run(["--out", str(copy), *data, *OPTIONS, "--resume", "--refit", "2", "5"]) == 0
    after = ride.load(copy).state_dict()
    for name, value in original.items():
        if name.split(".")[1] in ("2", "5"):
            torch.testing.assert_close(after[name], value)  # refitted: the same optimum as the first fit
        else:
            assert torch.equal(after[name], value)  # untouched
    rows = list(csv.DictReader(copy.with_suffix(".csv").open()))
    assert [int(r["conditional"]) for r in rows[-2:]] == [2, 5]
    assert load_payload(copy)["extra"]["conditionals_done"] == list(range(63))
    assert main(["fit-mcgsm63", "--out", str(copy), "--refit", "3"]) == 2  # --refit needs --resume
