"""The experiment drivers' bookkeeping (experiments/*.py): which run holds a model, and its learning curve."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def nbsize():
    # the script imports plot_training from its own folder, which running it puts on sys.path
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("deadleaves_nbsize", ROOT / "experiments" / "deadleaves_nbsize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIELDS = ["elapsed_s", "stage", "event", "val_bits_per_dim"]


def write_run(folder: Path, vals: list[float], seconds: float, done: bool = True) -> None:
    """A run folder whose log.csv holds an initial validation and one validation per stage."""
    folder.mkdir(parents=True)
    rows = [{"elapsed_s": "0", "stage": "-1", "event": "val", "val_bits_per_dim": "0.5"}]
    rows += [{"elapsed_s": f"{seconds * (k + 1) / len(vals):g}", "stage": str(k), "event": "val",
              "val_bits_per_dim": str(v)} for k, v in enumerate(vals)]
    with open(folder / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    if done:
        (folder / "done").touch()


def test_the_chain_of_continuations_gives_the_final_run_and_one_learning_curve(nbsize, tmp_path):
    write_run(tmp_path / "ride_nb5_s0", [1.0, 2.0], 100.0)
    write_run(tmp_path / "ride_nb5_s0_cont", [2.5, 2.7, 2.8], 30.0)
    write_run(tmp_path / "ride_nb5_s0_cont2", [2.9], 10.0, done=False)  # still running: not part of the chain
    assert nbsize.final_run(tmp_path, 5, 0) == tmp_path / "ride_nb5_s0_cont"
    assert nbsize.best_validation(nbsize.final_run(tmp_path, 5, 0)) == 2.8
    rows = nbsize.learning_curve(tmp_path, 5, 0)
    # the continuation's initial validation is dropped; its stages and seconds follow the first run's
    assert [(r["stage"], r["elapsed_s"], r["val_bits_per_dim"]) for r in rows[3:]] == [
        ("2", "110", "2.5"), ("3", "120", "2.7"), ("4", "130", "2.8")]
    (tmp_path / "ride_nb5_s0_cont2" / "done").touch()
    rows = nbsize.learning_curve(tmp_path, 5, 0)
    assert nbsize.final_run(tmp_path, 5, 0) == tmp_path / "ride_nb5_s0_cont2"
    assert (rows[-1]["stage"], rows[-1]["elapsed_s"], rows[-1]["val_bits_per_dim"]) == ("5", "140", "2.9")
    assert nbsize.stages_per_run(tmp_path, 5, 0) == [2, 3, 1]  # what `restore` splits a learning curve by
    # the later continuations (cont3 .. cont9) extend the chain the same way, one after the other
    for k, val in ((3, 3.0), (4, 3.05), (5, 3.1)):
        write_run(tmp_path / f"ride_nb5_s0_cont{k}", [val], 10.0)
    assert nbsize.final_run(tmp_path, 5, 0) == tmp_path / "ride_nb5_s0_cont5"
    assert nbsize.stages_per_run(tmp_path, 5, 0) == [2, 3, 1, 1, 1, 1]
    assert nbsize.learning_curve(tmp_path, 5, 0)[-1]["stage"] == "8"
    # a second continuation without the first one finished is not in the chain
    write_run(tmp_path / "ride_nb7_s0", [1.0], 50.0)
    write_run(tmp_path / "ride_nb7_s0_cont2", [3.0], 5.0)
    assert nbsize.final_run(tmp_path, 7, 0) == tmp_path / "ride_nb7_s0"


def test_plot_training_joins_a_run_and_its_continuation_into_one_curve(tmp_path):
    spec = importlib.util.spec_from_file_location("plot_training", ROOT / "experiments" / "plot_training.py")
    plot_training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_training)
    write_run(tmp_path / "first", [1.0, 2.0], 100.0)
    write_run(tmp_path / "cont", [2.5, 2.7], 30.0)
    rows = plot_training.read_chain([tmp_path / "first" / "log.csv", tmp_path / "cont" / "log.csv"])
    # the continuation's initial check (stage -1) is dropped; its stages and seconds follow the first run's
    assert [(r["stage"], float(r["elapsed_s"]), r["val_bits_per_dim"]) for r in rows] == [
        ("-1", 0.0, "0.5"), ("0", 50.0, "1.0"), ("1", 100.0, "2.0"), ("2", 115.0, "2.5"), ("3", 130.0, "2.7")]


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda p: p.name)
def test_experiment_configs_are_valid_train_configs(path):
    """Every committed experiment config holds only known keys of valid types and a consistent schedule."""
    from ride.model_zoo import pretrained_models
    from ride.train.config import TrainConfig, read_config_file

    config = TrainConfig.from_dict(read_config_file(path))
    assert len(config.learning_rates) in (1, len(config.patch_sizes))
    if config.init:  # a committed model or a shipped one, by name
        shipped = {entry.name for entry in pretrained_models()}
        assert config.init in shipped or config.init.startswith("models/"), "init: a committed or shipped model"


@pytest.mark.parametrize(("patience", "outcomes", "stopped"), [
    (1, ["initial", "improved", "improved (below min_improvement)"], True),
    (1, ["initial", "improved", "rolled back"], True),
    (1, ["initial", "improved", "improved"], False),
    (2, ["initial", "improved", "improved (below min_improvement)"], False),
    (2, ["initial", "rolled back", "improved (below min_improvement)"], True),
    (2, ["initial", "rolled back"], True),  # the trainer counts its initial record too
    (0, ["initial", "rolled back", "rolled back"], False),  # no patience: the run ends only with its stages
])
def test_stopped_on_rule_counts_stages_without_improvement_as_the_trainer_does(nbsize, tmp_path, patience, outcomes,
                                                                              stopped):
    import torch

    model = tmp_path / "model.pt"
    torch.save({"extra": {"config": {"patience": patience}, "history": [{"outcome": o} for o in outcomes]}}, model)
    assert nbsize.stopped_on_rule(model) is stopped
