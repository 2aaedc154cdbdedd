"""`ride train` and the Trainer: learning, exact resume, add-layer, fine-tuning, DDP, checkpoints, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_two_ranks
from PIL import Image

import ride
from ride.cli import main
from ride.marginal import MARGINAL_KEY
from ride.train.config import TrainConfig, read_config_file, replace_checked
from ride.train.trainer import Trainer


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Eight 40x40 dead-leaves PNGs (the last one is held out by val_fraction 0.125)."""
    folder = tmp_path_factory.mktemp("dl")
    for k, img in enumerate(ride.dead_leaves_images(8, 40, seed=3)):
        Image.fromarray(np.asarray(img, dtype=np.uint8).reshape(40, 40)).save(folder / f"{k}.png")
    return folder


def tiny_config(image_dir, **changes) -> TrainConfig:
    values = dict(data="images", images=str(image_dir), val_fraction=0.125, num_hiddens=6, num_components=3,
                  num_features=4, nb_size=3, patch_sizes=(8, 12), learning_rates=(3e-3,), optimizer="adam",
                  batch_size=8, precondition_pairs=5000, finetune_pixels=3000, finetune_val_pixels=1000,
                  finetune_iter=0, val_tile=20, finetune_tile=20, tensorboard=False, log_every=5,
                  checkpoint_every_s=1e9)
    values.update(changes)
    return replace_checked(TrainConfig(), values)


def params_of(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_tiny_run_improves_validation_and_writes_its_files(image_dir, tmp_path):
    trainer = Trainer(tiny_config(image_dir, max_steps_per_epoch=25), tmp_path / "run", progress=False)
    summary = trainer.run()
    initial = summary["history"][0]
    assert initial["outcome"] == "initial"
    assert summary["best_val_bits_per_dim"] > initial["val_bits_per_dim"] + 0.05
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"state.pt", "model.pt", "log.csv"}
    # the model file carries its training config and loads with ride.load
    payload = ride.checkpoint.load_payload(tmp_path / "run" / "model.pt")
    assert payload["extra"]["config"]["patch_sizes"] == [8, 12]
    assert isinstance(ride.load(tmp_path / "run" / "model.pt"), ride.RIDE)
    assert TrainConfig.from_dict(payload["extra"]["config"]) == trainer.config
    # the training marginal is stored for the samplers' boundary, and `ride sample` uses it
    counts = payload["extra"][MARGINAL_KEY]["counts"]
    assert sum(counts[0]) == sum(img.numel() for img in trainer.task.train)
    assert main(["sample", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--size", "16x16", "--num", "2",
                 "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
    assert "train_bits_per_dim" in header and "val_bits_per_dim" in header


def test_kill_and_resume_gives_the_uninterrupted_parameters(image_dir, tmp_path):
    config = tiny_config(image_dir, max_steps_per_epoch=9, checkpoint_every_steps=4, epochs_per_stage=2,
                         rollback=False)  # the final parameters are then the last step's, not a restored copy
    whole = Trainer(config, tmp_path / "whole", progress=False)
    start = params_of(whole.model)
    whole.run()
    assert any(not torch.equal(start[k], v) for k, v in params_of(whole.model).items())

    def kill(info):  # step 6 of stage 1's second epoch: the last checkpoint was after its step 3
        if (info["stage"], info["epoch"], info["step"]) == (1, 1, 6):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "killed", progress=False, on_step=kill).run()
    state = ride.checkpoint.load_payload(tmp_path / "killed" / "state.pt")["extra"]["trainer"]
    assert state["position"]["stage"] == 1 and state["position"]["epoch"] == 1 and state["position"]["step"] == 4
    resumed = Trainer(None, tmp_path / "killed", resume=True, progress=False)
    resumed.run()
    expected, found = params_of(whole.model), params_of(resumed.model)
    assert expected.keys() == found.keys()
    for name in expected:
        assert torch.equal(expected[name], found[name]), name


def test_stop_request_checkpoints_at_once_and_resumes_exactly(image_dir, tmp_path):
    config = tiny_config(image_dir, max_steps_per_epoch=9, epochs_per_stage=2, rollback=False)
    whole = Trainer(config, tmp_path / "whole", progress=False)
    whole.run()
    seen = []

    def stop_after_step_5_of_stage_1():  # polled after every step, as the SIGTERM handler of `ride train` is
        seen.append(1)
        return len(seen) == 2 * 9 + 6

    summary = Trainer(config, tmp_path / "stopped", progress=False, should_stop=stop_after_step_5_of_stage_1).run()
    assert summary["status"] == "stopped (signal)"
    state = ride.checkpoint.load_payload(tmp_path / "stopped" / "state.pt")["extra"]["trainer"]
    # no step lost: the checkpoint is written when the stop is seen (checkpoint_every_s is 1e9 here)
    assert (state["position"]["stage"], state["position"]["epoch"], state["position"]["step"]) == (1, 0, 6)
    resumed = Trainer(None, tmp_path / "stopped", resume=True, progress=False)
    resumed.run()
    expected, found = params_of(whole.model), params_of(resumed.model)
    for name in expected:
        assert torch.equal(expected[name], found[name]), name


def test_ride_train_stops_cleanly_on_sigterm(image_dir, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ride", "train", "--data", "images", "--images", str(image_dir),
                             "--val-fraction", "0.125", "--num-hiddens", "6", "--num-components", "3",
                             "--num-features", "4", "--nb-size", "3", "--patch-sizes", "8", "--optimizer", "adam",
                             "--learning-rates", "0.003", "--batch-size", "8", "--epochs-per-stage", "1000",
                             "--finetune-iter", "0", "--val-tile", "20", "--finetune-tile", "20",
                             "--tensorboard", "false", "--precondition-pairs", "5000", "--checkpoint-every-s", "1e9",
                             "--out", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    log = out / "log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (
            log.exists() and log.read_text().count(",train,") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "stopped (signal)" in stdout and "SIGTERM" in stderr and "Traceback" not in stderr
    state = ride.checkpoint.load_payload(out / "state.pt")["extra"]["trainer"]
    assert state["position"]["global_step"] > 0


def test_add_layer_keeps_the_lower_layer(image_dir, tmp_path):
    Trainer(tiny_config(image_dir, max_steps_per_epoch=5, patch_sizes=(8,)), tmp_path / "one", progress=False).run()
    base = ride.load(tmp_path / "one" / "model.pt")
    two = Trainer(tiny_config(image_dir, init=str(tmp_path / "one" / "model.pt"), add_layer=True,
                              max_steps_per_epoch=5, patch_sizes=(8,)), tmp_path / "two", progress=False)
    assert len(two.model.layers) == 2 and two.model.config.num_layers == 2
    for name, value in base.layers[0].state_dict().items():
        assert torch.equal(two.model.layers[0].state_dict()[name], value), name
    assert torch.equal(two.model.preconditioner.whiten_out, base.preconditioner.whiten_out)
    two.run()
    assert ride.load(tmp_path / "two" / "model.pt").config.num_layers == 2


def test_widen_to_starts_from_the_same_density(image_dir, tmp_path):
    Trainer(tiny_config(image_dir, max_steps_per_epoch=5, patch_sizes=(8,)), tmp_path / "one", progress=False).run()
    base = ride.load(tmp_path / "one" / "model.pt")
    config = tiny_config(image_dir, init=str(tmp_path / "one" / "model.pt"), widen_to=10, init_mcgsm=False,
                         max_steps_per_epoch=5, patch_sizes=(8,))
    wide = Trainer(config, tmp_path / "wide", progress=False)
    assert wide.model.config.num_hiddens == 10
    x = wide.task.val[0][None].to(torch.float64)
    torch.testing.assert_close(wide.model.double().log_prob_pixels(x), base.double().log_prob_pixels(x))
    wide.model.float()
    history = wide.run()["history"]
    same = Trainer(replace_checked(config, {"widen_to": 0}), tmp_path / "same", progress=False).run()["history"]
    assert history[0]["val_bits_per_dim"] == pytest.approx(same[0]["val_bits_per_dim"], abs=1e-5)
    assert ride.load(tmp_path / "wide" / "model.pt").config.num_hiddens == 10
    with pytest.raises(ValueError, match="widen_to needs init"):
        tiny_config(image_dir, widen_to=10)


def test_cell_clip_of_a_fresh_model_and_of_init(image_dir, tmp_path):
    """`cell_clip` sets RIDEConfig.cell_clip: on a fresh model, or on `init`'s (whose weights are kept); saved."""
    fresh = Trainer(tiny_config(image_dir, cell_clip=5.0, max_steps_per_epoch=3, patch_sizes=(8,)), tmp_path / "one",
                    progress=False)
    assert fresh.model.config.cell_clip == 5.0 and [la.cell_clip for la in fresh.model.layers] == [5.0]
    fresh.run()
    base = ride.load(tmp_path / "one" / "model.pt")
    assert base.config.cell_clip == 5.0
    config = tiny_config(image_dir, init=str(tmp_path / "one" / "model.pt"), cell_clip=0.5, init_mcgsm=False,
                         max_steps_per_epoch=3, patch_sizes=(8,))
    tighter = Trainer(config, tmp_path / "tight", progress=False)
    assert tighter.model.config.cell_clip == 0.5
    for name, value in base.state_dict().items():
        assert torch.equal(tighter.model.state_dict()[name], value), name
    kept = Trainer(replace_checked(config, {"cell_clip": None}), tmp_path / "kept", progress=False)
    assert kept.model.config.cell_clip == 5.0
    for bad, message in (({"cell_clip": 0.0}, "cell_clip must be > 0"),
                         ({"cell_clip": 10.0, "colour": True, "model": "colour", "finetune_iter": 0,
                           "init_mcgsm": False}, "for RIDE and lossless colour models")):
        with pytest.raises(ValueError, match=message):
            tiny_config(image_dir, **bad)
    colour = tiny_config(image_dir, cell_clip=2.0, colour=True, model="colour_lossless", finetune_iter=0,
                         init_mcgsm=False)
    model = Trainer(colour, tmp_path / "colour", progress=False).model
    assert model.config.cell_clip == 2.0 and [la.cell_clip for la in model.layers] == [2.0]


def test_top_layer_only_stages_leave_the_lower_layer_unchanged(image_dir, tmp_path):
    Trainer(tiny_config(image_dir, max_steps_per_epoch=5, patch_sizes=(8,)), tmp_path / "one", progress=False).run()
    base = {k: v.clone() for k, v in ride.load(tmp_path / "one" / "model.pt").layers[0].state_dict().items()}
    seen = []

    def lower_moved(info):
        layers = trainer.model.layers
        moved = max(float((layers[0].state_dict()[k] - v).abs().max()) for k, v in base.items())
        seen.append((info["stage"], moved))

    config = tiny_config(image_dir, init=str(tmp_path / "one" / "model.pt"), add_layer=True, max_steps_per_epoch=6,
                         optimizer="sgd", learning_rates=(0.05,), rollback=False, top_layer_only_stages=1)
    trainer = Trainer(config, tmp_path / "two", progress=False, on_step=lower_moved)
    top_before = params_of(trainer.model.layers[1])
    trainer.run()
    assert [m for stage, m in seen if stage == 0] == [0.0] * 6  # stage 1: the lower layer is not touched
    assert max(m for stage, m in seen if stage == 1) > 1e-4  # stage 2 trains the whole model
    top_after = params_of(trainer.model.layers[1])
    assert max(float((top_before[k] - top_after[k]).abs().max()) for k in top_before) > 1e-4
    assert all(p.requires_grad for p in trainer.model.parameters())  # the freeze ends with its stages


def test_top_layer_only_stages_need_two_layers(image_dir, tmp_path):
    with pytest.raises(ValueError, match="2 or more spatial LSTM layers"):
        Trainer(tiny_config(image_dir, top_layer_only_stages=1), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="top_layer_only_stages must be in 0..2"):
        tiny_config(image_dir, top_layer_only_stages=3)


def test_lbfgs_finetuning_does_not_worsen_validation(image_dir, tmp_path):
    trainer = Trainer(tiny_config(image_dir, max_steps_per_epoch=10, finetune_iter=15), tmp_path / "ft",
                      progress=False)
    history = trainer.run()["history"]
    stages = [h for h in history if h["stage"] >= 0]
    assert len(stages) == 2
    for record in stages:
        assert record["finetune_iterations"] >= 1
        assert record["val_bits_per_dim"] >= record["val_bits_per_dim_before_finetune"]
    # the recorded figure is the model's: validate the final (best) model again
    again = trainer.task.validate(ride.load(tmp_path / "ft" / "model.pt"))
    assert again["val_bits_per_dim"] == pytest.approx(trainer.best["val_bits_per_dim"], abs=1e-6)


def test_rollback_restores_the_best_model_when_a_stage_hurts(image_dir, tmp_path):
    # a huge SGD step ruins stage 2; rollback must hand back stage 1's parameters
    config = tiny_config(image_dir, max_steps_per_epoch=5, optimizer="sgd", learning_rates=(1e-3, 50.0),
                         grad_clip=1e3)
    trainer = Trainer(config, tmp_path / "rb", progress=False)
    try:
        summary = trainer.run()
    except FloatingPointError:
        pytest.skip("the large step overflowed before validation (the error path is tested elsewhere)")
    last = summary["history"][-1]
    assert last["outcome"] == "rolled back"
    best = trainer.best["model"]["model"]
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, best[name]), name


def test_min_improvement_ends_the_run_on_a_small_gain_but_keeps_the_better_model(image_dir, tmp_path):
    # every stage of this run improves validation (the plain run shows it); a threshold larger than any gain makes
    # the first stage's gain "small": the run stops there on patience 1, with that stage's model as the best
    config = tiny_config(image_dir, max_steps_per_epoch=10, patch_sizes=(8, 8, 8), patience=1)
    plain = Trainer(config, tmp_path / "plain", progress=False).run()
    assert [r["outcome"] for r in plain["history"]] == ["initial", "improved", "improved", "improved"]
    strict = Trainer(replace_checked(config, {"min_improvement": 10.0}), tmp_path / "strict", progress=False).run()
    assert [r["outcome"] for r in strict["history"]] == ["initial", "improved (below min_improvement)"]
    assert strict["status"] == "early stop: 1 stages without improvement"
    assert strict["best_stage"] == 0
    assert strict["best_val_bits_per_dim"] == pytest.approx(plain["history"][1]["val_bits_per_dim"], abs=1e-9)
    with pytest.raises(ValueError, match="min_improvement"):
        replace_checked(config, {"min_improvement": -0.1})


def test_two_process_gloo_ddp_matches_one_process(image_dir, tmp_path):
    args = ["train", "--data", "images", "--images", str(image_dir), "--val-fraction", "0.125", "--num-hiddens", "6",
            "--num-components", "3", "--num-features", "4", "--nb-size", "3", "--patch-sizes", "8",
            "--learning-rates", "0.05", "--optimizer", "sgd", "--batch-size", "8", "--precondition-pairs", "5000",
            "--finetune-iter", "0", "--val-tile", "20", "--finetune-tile", "20", "--tensorboard", "false",
            "--max-steps-per-epoch", "6", "--device", "cpu", "--threads", "1", "--rollback", "false"]
    # no rollback: the compared parameters are the trained ones, not a restored starting point
    # SGD: the update is linear in the gradient, so the float rounding of DDP's averaging stays at rounding level
    # (Adam divides by sqrt(v): a parameter with a near-zero gradient would turn rounding noise into a full step)
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    codes, outputs = run_two_ranks([*args, "--out", str(tmp_path / "ddp")], timeout=180)
    assert codes == [0, 0], [o[1][-2000:] for o in outputs]
    single = ride.checkpoint.load_payload(tmp_path / "single" / "state.pt")
    ddp = ride.checkpoint.load_payload(tmp_path / "ddp" / "state.pt")
    assert ddp["extra"]["trainer"]["position"] == single["extra"]["trainer"]["position"]
    for name, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    initial = ride.checkpoint.load_payload(tmp_path / "single" / "model.pt")["extra"]["history"][0]
    assert initial["outcome"] == "initial"


def test_training_moves_the_parameters_that_ddp_compares(image_dir, tmp_path):
    # guards the DDP test against comparing two untrained models
    config = tiny_config(image_dir, patch_sizes=(8,), max_steps_per_epoch=6, optimizer="sgd", learning_rates=(0.05,),
                         rollback=False)
    trainer = Trainer(config, tmp_path / "t", progress=False)
    before = params_of(trainer.model)
    trainer.run()
    after = params_of(trainer.model)
    # far more than the DDP test's tolerance (atol 1e-6)
    assert max(float((before[k] - after[k]).abs().max()) for k in before if "layers" in k) > 1e-3


# ---------------------------------------------------------------------------------------------- errors and config


def test_unknown_config_key_is_an_error(image_dir, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('data = "images"\nnum_hidden = 8\n')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    assert "unknown key 'num_hidden'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown key"):
        replace_checked(TrainConfig(), {"learning_rate": 1.0})
    with pytest.raises(ValueError, match="must be an integer"):
        replace_checked(TrainConfig(), {"batch_size": "many"})


def test_config_file_and_flags_combine(image_dir, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": "images", "images": str(image_dir), "patch_sizes": [8, 10]}))
    config = replace_checked(TrainConfig(), {**read_config_file(path), "learning_rates": ["0.1"]})
    assert config.patch_sizes == (8, 10) and config.learning_rates == (0.1,)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_data_set_too_small_for_the_patch_size(image_dir, tmp_path):
    with pytest.raises(ValueError, match="too small for the patch size"):
        Trainer(tiny_config(image_dir, patch_sizes=(48,)), tmp_path / "small", progress=False)
    with pytest.raises(ValueError, match="too small for the patch size"):
        Trainer(tiny_config(image_dir, patch_sizes=(20,), batch_size=100), tmp_path / "few", progress=False).run()


def test_resume_of_a_corrupted_checkpoint_is_a_clear_error(image_dir, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny_config(image_dir, max_steps_per_epoch=3, patch_sizes=(8,)), run, progress=False).run()
    data = (run / "state.pt").read_bytes()
    (run / "state.pt").write_bytes(data[: len(data) // 2])
    assert main(["train", "--out", str(run), "--resume"]) == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err
    ride.save(ride.RIDE(num_hiddens=4), run / "state.pt")  # a model file, not a trainer checkpoint
    assert main(["train", "--out", str(run), "--resume"]) == 2
    assert "not a trainer checkpoint" in capsys.readouterr().err


def test_resume_may_change_run_settings_only(image_dir, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny_config(image_dir, max_steps_per_epoch=3, patch_sizes=(8,)), run, progress=False).run()
    assert main(["train", "--out", str(run), "--resume", "--num-hiddens", "9"]) == 2
    assert "only" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--max-seconds", "100"]) == 0


def test_resume_keeps_the_runs_thread_count_unless_overridden(image_dir, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(image_dir, max_steps_per_epoch=2, patch_sizes=(8,), threads=2), run, progress=False).run()
    torch.set_num_threads(1)  # conftest restores the count after the test
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert torch.get_num_threads() == 2
    assert main(["train", "--out", str(run), "--resume", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1


def test_an_existing_run_folder_needs_resume(image_dir, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(image_dir, max_steps_per_epoch=2, patch_sizes=(8,)), run, progress=False).run()
    with pytest.raises(ValueError, match="--resume"):
        Trainer(tiny_config(image_dir), run, progress=False)


def test_colour_model_trains_through_the_same_trainer(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    grey = ride.dead_leaves_images(6, 32, seed=5).astype(np.float64)
    for k, img in enumerate(grey):
        rgb = np.stack([img, 0.6 * img + 60, 255 - 0.8 * img], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{k}.png")
    config = tiny_config(folder, colour=True, model="colour", init_mcgsm=False, val_fraction=0.2,
                         max_steps_per_epoch=15, patch_sizes=(8, 12), val_tile=16, batch_size=6)
    trainer = Trainer(config, tmp_path / "c", progress=False)
    summary = trainer.run()
    assert isinstance(ride.load(tmp_path / "c" / "model.pt"), ride.ColourRIDE)
    assert summary["best_val_bits_per_dim"] > summary["history"][0]["val_bits_per_dim"]
    with pytest.raises(ValueError, match="finetune_iter = 0"):
        tiny_config(folder, colour=True, model="colour", finetune_iter=5)


def test_lossless_colour_model_trains_through_the_same_trainer(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    grey = ride.dead_leaves_images(6, 32, seed=5).astype(np.float64)
    for k, img in enumerate(grey):
        rgb = np.stack([img, 0.6 * img + 60, 255 - 0.8 * img], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{k}.png")
    config = tiny_config(folder, colour=True, model="colour_lossless", colour_transform="rct", init_mcgsm=False,
                         val_fraction=0.2, max_steps_per_epoch=15, patch_sizes=(8, 12), val_tile=16, batch_size=6)
    summary = Trainer(config, tmp_path / "c", progress=False).run()
    model = ride.load(tmp_path / "c" / "model.pt")
    assert isinstance(model, ride.LosslessColourRIDE) and model.config.transform == "rct"
    assert summary["best_val_bits_per_dim"] > summary["history"][0]["val_bits_per_dim"]
    for bad, message in (({"finetune_iter": 5}, "finetune_iter = 0"), ({"colour": False}, "colour=true"),
                         ({"colour_transform": "xyz"}, "colour_transform must be one of")):
        with pytest.raises(ValueError, match=message):
            tiny_config(folder, **{"colour": True, "model": "colour_lossless", "init_mcgsm": False, **bad})


def test_tensorboard_event_files_when_installed(image_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install "
                                              "'ride[tensorboard]')")
    Trainer(tiny_config(image_dir, max_steps_per_epoch=3, patch_sizes=(8,), tensorboard=True, log_every=1),
            tmp_path / "tb", progress=False).run()
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_photos_data_trains_on_both_sets_and_validates_each(tmp_path):
    """data="photos": BSDS300 train + the Wikimedia training images; validation weighs the two sets equally."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    ids = [str(100 + k) for k in range(25)]
    for part, part_ids in (("train", ids[:22]), ("test", ids[22:])):
        folder = root / "bsds300" / "images" / part
        folder.mkdir(parents=True)
        for i in part_ids:
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
        (root / "bsds300" / f"iids_{part}.txt").write_text("\n".join(part_ids))
    wiki = root / "wikipedia_photos"
    wiki.mkdir()
    for k, img in enumerate(ride.dead_leaves_images(49, 32, seed=5), start=1):
        Image.fromarray(np.asarray(img, dtype=np.uint8).reshape(32, 32)).save(wiki / f"{k:03d}.png")
    config = tiny_config(None, data="photos", data_root=str(root), images=None, max_steps_per_epoch=2,
                         val_tile=24)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert len(trainer.task.train) == 2 + 39 and list(trainer.task.val_sets) == ["bsds300", "wikipedia_photos"]
    val = trainer.task.validate(trainer.model)
    parts = val["val_bsds300_bits_per_dim"], val["val_wikipedia_photos_bits_per_dim"]
    assert val["val_bits_per_dim"] == pytest.approx(sum(parts) / 2)
    assert abs(parts[0] - parts[1]) > 0.1  # noise JPEGs and dead leaves: the sets' rates differ
    with pytest.raises(ValueError, match="aerials=true needs data='photos' or 'wikipedia_photos'"):
        tiny_config(image_dir=None, images="x", aerials=True)
    # never-JPEG only: the Wikimedia training images, validated on the Wikimedia val images alone
    config = tiny_config(None, data="wikipedia_photos", data_root=str(root), images=None, max_steps_per_epoch=2,
                         val_tile=24)
    wiki_trainer = Trainer(config, tmp_path / "run_wiki", progress=False)
    assert len(wiki_trainer.task.train) == 39 and list(wiki_trainer.task.val_sets) == ["wikipedia_photos"]
    assert wiki_trainer.task.validate(trainer.model)["val_bits_per_dim"] == pytest.approx(parts[1])


def test_init_takes_a_shipped_model_name(image_dir, tmp_path):
    """`init = "bsds300_mcgsm"` starts from the shipped model, as `--checkpoint NAME` does for the other commands."""
    trainer = Trainer(tiny_config(image_dir, init="bsds300_mcgsm", init_mcgsm=False, max_steps_per_epoch=1,
                                  patch_sizes=(12,)), tmp_path / "run", progress=False)
    shipped = ride.pretrained("bsds300_mcgsm")
    assert trainer.model.state_dict().keys() == shipped.state_dict().keys()
    assert all(torch.equal(v.cpu(), shipped.state_dict()[k]) for k, v in trainer.model.state_dict().items())
