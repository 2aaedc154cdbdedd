"""`Trainer`: the training recipe of design §6 with checkpoints, exact resume, logs and data parallelism.

One stage per patch size (8, 10, ..., 22 by default), `epochs_per_stage` epochs each, SGD with momentum or Adam
at the stage's learning rate; after each stage the MCGSM alone is fine-tuned with L-BFGS on frozen hidden states,
the model is validated on held-out images and, when the stage made validation worse, rolled back to the best
model so far. Files in the run folder:
    state.pt     the latest checkpoint (a `ride.save` file: `ride.load` reads the model; `extra["trainer"]` holds
                 the config, position, optimizer state, best model and history for `--resume`)
    model.pt     the best validated model (also copied to `model_out` when given)
    log.csv      the learning curve (one row every `log_every` steps and one per stage end; steps redone after
                 a resume appear again)
    tensorboard/ event files (when the tensorboard package is installed)
Exact resume: the data order, dequantisation noise and flips of step s of epoch e of stage k come from generators
seeded by (seed, k, e, s), and checkpoints hold the parameters and optimizer state, so a killed and resumed run
computes what an uninterrupted one does. Under torchrun every rank builds the same global batch and trains on its
slice (DistributedDataParallel averages the gradients); rank 0 writes the files.
"""

from __future__ import annotations

import copy
import csv
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..checkpoint import load, load_payload, save
from ..growth import add_layer, widen, with_cell_clip
from ..model import RIDE
from ..model_zoo import resolve_checkpoint
from ..patch_ride import PatchRIDE
from .config import TrainConfig, replace_checked
from .tasks import LN2, ImageTask, PatchTask, make_task, step_generator

TRAINER_FORMAT_VERSION = 1
# Settings of the run, not of the computation: a resumed run may change them.
RESUME_OVERRIDABLE = {"max_seconds", "device", "threads", "checkpoint_every_s", "log_every", "tensorboard"}


def stages_without_improvement(history: list[dict[str, Any]]) -> int:
    """How many of a run's last history records (its stages, and the initial check) are not an "improved" stage:
    what `patience` is compared with. A gain of at most `min_improvement`, a worse or a rolled-back stage counts."""
    count = 0
    for record in reversed(history):
        if record["outcome"] == "improved":
            break
        count += 1
    return count


def _report(label: str, val: dict[str, Any], outcome: str) -> None:
    """One line on stderr: the validation rate, and each validation set's own where there are several."""
    sets = "".join(f", {k[4:-13]} {v:.4f}" for k, v in val.items()
                   if k.endswith("_bits_per_dim") and k != "val_bits_per_dim")
    print(f"{label}: validation {val['val_bits_per_dim']:.4f} ± {val['val_stderr']:.4f} bit/dim{sets} ({outcome})",
          file=sys.stderr)


def build_model(config: TrainConfig) -> nn.Module:
    """A fresh model for `config` (RIDE, or PatchRIDE in patches63 mode, or a colour model)."""
    fields = {"num_hiddens": config.num_hiddens, "num_layers": config.num_layers,
              "num_components": config.num_components, "num_scales": config.num_scales,
              "num_features": config.num_features, "nb_size": config.nb_size}
    clip = {} if config.cell_clip is None else {"cell_clip": config.cell_clip}
    if config.mode == "patches63":
        return PatchRIDE(**fields, **clip)
    if config.model == "colour":
        from ..colour import ColourRIDE

        return ColourRIDE(**fields)
    if config.model == "colour_lossless":
        from ..colour_lossless import LosslessColourRIDE

        return LosslessColourRIDE(config.colour_transform, **fields, **clip)
    return RIDE(**fields, **clip)


class _MeanNLL(nn.Module):
    """The objective as a module, so that DistributedDataParallel can hook its backward."""

    def __init__(self, model: nn.Module, task: ImageTask | PatchTask) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: Tensor) -> Tensor:
        return self.task.nll(self.model, batch)


def _mcgsm(model: nn.Module) -> nn.Module:
    return model.ride.mcgsm if isinstance(model, PatchRIDE) else model.mcgsm


class Trainer:
    """Runs (or resumes) one training run into `out_dir`; `run()` returns a summary dict."""

    def __init__(self, config: TrainConfig | None, out_dir: str | os.PathLike, resume: bool = False,
                 model_out: str | os.PathLike | None = None, command: str = "",
                 resume_overrides: dict[str, Any] | None = None,
                 on_step: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.out_dir = Path(out_dir)
        # polled after every step: True ends the run at once, checkpointed and resumable (e.g. on SIGTERM)
        self.should_stop = should_stop
        self.state_path, self.model_path = self.out_dir / "state.pt", self.out_dir / "model.pt"
        self.model_out = Path(model_out) if model_out else None
        self.command, self.on_step, self.show_progress = command, on_step, progress
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        saved = None
        if resume:
            if not self.state_path.exists():
                raise ValueError(f"--resume: no checkpoint {str(self.state_path)!r} to resume from")
            saved = self._read_state()
            config = TrainConfig.from_dict(saved["config"])
            changed = sorted(set(resume_overrides or {}) - RESUME_OVERRIDABLE)
            if changed:
                raise ValueError(f"--resume continues the stored config; only {sorted(RESUME_OVERRIDABLE)} may be "
                                 f"changed, found {changed}")
            config = replace_checked(config, resume_overrides or {})
        elif config is None:
            raise ValueError("a config is needed unless resuming")
        elif self.state_path.exists():
            raise ValueError(f"{str(self.state_path)!r} exists: pass --resume to continue it, or choose another "
                             "output folder")
        if config.batch_size % self.world:
            raise ValueError(f"batch_size {config.batch_size} must be divisible by the {self.world} processes")
        self.config = config
        self.device = self._device()
        self.task = make_task(config)
        self.model = self._initial_model(saved)
        self.task.check_model(self.model)
        if config.top_layer_only_stages and len(getattr(self.model, "layers", ())) < 2:
            raise ValueError("config: top_layer_only_stages needs a model with 2 or more spatial LSTM layers (e.g. "
                             "init with add_layer)")
        self.optimizer = self._optimizer()
        self.position = {"stage": 0, "epoch": 0, "step": 0, "global_step": 0}
        self.writer = None
        self.best: dict[str, Any] = {"val_bits_per_dim": None, "stage": None, "model": None}
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        if saved is not None:
            self.position = dict(saved["position"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.best = {**saved["best"]}
            self.history = list(saved["history"])
            self.elapsed = float(saved["elapsed_s"])
        self.objective = _MeanNLL(self.model, self.task)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)

    # ---------------------------------------------------------------- set-up

    def _device(self) -> torch.device:
        from ..runtime import resolve_device

        device = resolve_device(self.config.device)
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        return device

    def _read_state(self) -> dict[str, Any]:
        try:
            payload = load_payload(self.state_path)
        except ValueError as err:
            raise ValueError(f"--resume: cannot read the checkpoint: {err}") from err
        state = payload["extra"].get("trainer")
        if not isinstance(state, dict) or state.get("version") != TRAINER_FORMAT_VERSION:
            raise ValueError(f"--resume: {str(self.state_path)!r} is not a trainer checkpoint of version "
                             f"{TRAINER_FORMAT_VERSION}")
        return state

    def _initial_model(self, saved: dict[str, Any] | None) -> nn.Module:
        cfg = self.config
        if saved is not None:
            model = load(self.state_path)
            return model.to(self.device).train()
        gen = step_generator(cfg.seed, 0)
        with torch.random.fork_rng(devices=[]):  # the constructors draw initial weights from the global RNG
            torch.manual_seed(cfg.seed)
            if cfg.init:
                model = load(resolve_checkpoint(cfg.init))  # a file, or a shipped model's name
                if cfg.widen_to:
                    model = widen(model, cfg.widen_to)
                if cfg.add_layer:
                    model = add_layer(model)
                if cfg.cell_clip is not None:
                    model = with_cell_clip(model, cfg.cell_clip)
            else:
                model = build_model(cfg)
        model = model.to(self.device).train()
        if not cfg.init:
            self.task.fit_preconditioner(model, gen)
        if cfg.init_mcgsm and (not cfg.init or cfg.add_layer):
            h, y = self.task.hidden_pairs(model, min(cfg.finetune_pixels, 200_000), gen)
            _mcgsm(model).initialize(h, y, generator=gen)
        return model

    def _frozen_parameters(self, stage: int) -> list[nn.Parameter]:
        """The parameters that stage `stage` leaves unchanged: those of every layer below the top one while
        `top_layer_only_stages` lasts (their gradients are not computed where one process trains), else none."""
        frozen = []
        if stage < self.config.top_layer_only_stages:
            frozen = [p for layer in self.model.layers[:-1] for p in layer.parameters()]
        if self.world == 1:  # under DistributedDataParallel every parameter keeps requires_grad (its hooks expect it)
            for layer in getattr(self.model, "layers", [])[:-1]:
                layer.requires_grad_(not frozen)
        return frozen

    def _optimizer(self) -> torch.optim.Optimizer:
        params = list(self.model.parameters())
        lr = self.config.learning_rate(0)
        if self.config.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr)
        return torch.optim.SGD(params, lr=lr, momentum=self.config.momentum)

    # ---------------------------------------------------------------- checkpoints and logs

    def _snapshot(self) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def _save_state(self, status: str) -> None:
        if self.rank != 0:
            return
        state = {"version": TRAINER_FORMAT_VERSION, "config": self.config.to_dict(), "position": dict(self.position),
                 "optimizer": self.optimizer.state_dict(), "best": self.best, "history": self.history,
                 "elapsed_s": self.elapsed, "status": status}
        save(self.model, self.state_path, extra={"trainer": state, "command": self.command})

    def _save_best(self) -> None:
        if self.rank != 0 or self.best["model"] is None:
            return
        model = copy.deepcopy(self.model).cpu()
        model.load_state_dict(self.best["model"]["model"])
        extra = {"command": self.command, "config": self.config.to_dict(), "history": self.history,
                 "training_seconds": self.elapsed, "best_stage": self.best["stage"],
                 "val_bits_per_dim": self.best["val_bits_per_dim"], "device": str(self.device),
                 "world_size": self.world, **self.task.model_extra()}
        for path in (self.model_path, self.model_out):
            if path is not None:
                save(model, path, extra=extra)

    def _log(self, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        columns = ["elapsed_s", "stage", "patch_size", "epoch", "step", "event", "learning_rate",
                   "train_bits_per_dim", "val_bits_per_dim", "val_nats_per_patch"]
        path = self.out_dir / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self.writer is not None:
            step = self.position["global_step"]
            for key in ("train_bits_per_dim", "val_bits_per_dim", "val_nats_per_patch", "learning_rate"):
                if row.get(key) not in (None, ""):
                    self.writer.add_scalar(f"{row['event']}/{key}", float(row[key]), step)

    def _open_tensorboard(self) -> None:
        self.writer = None
        if self.rank != 0 or not self.config.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is an optional extra
            print("ride train: tensorboard is not installed (pip install 'ride[tensorboard]'); writing only "
                  "log.csv", file=sys.stderr)
            return
        self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    # ---------------------------------------------------------------- the loop

    def _reduce(self, sums: Tensor) -> Tensor:
        if self.world == 1:
            return sums
        moved = sums.to(self.device)
        dist.all_reduce(moved)
        return moved.cpu()

    def _validate(self) -> dict[str, Any]:
        self.model.eval()
        result = self.task.validate(self.model, shard=(self.rank, self.world), reduce=self._reduce)
        self.model.train()
        return result

    def _finetune(self, stage: int) -> dict[str, Any]:
        """L-BFGS on the MCGSM alone over frozen hidden states (identical on every rank: same data, same seed)."""
        cfg = self.config
        gen = step_generator(cfg.seed, 3, stage)
        self.model.eval()
        h, y = self.task.hidden_pairs(self.model, cfg.finetune_pixels, gen, "train")
        vh, vy = self.task.hidden_pairs(self.model, cfg.finetune_val_pixels, gen, "val")
        self.model.train()
        with torch.enable_grad():
            result = _mcgsm(self.model).fit(h, y, vh, vy, max_iter=cfg.finetune_iter, val_every=10, patience=5,
                                            init=False, generator=gen)
        return {"finetune_iterations": result["iterations"], "finetune_stop": result["stop_reason"]}

    def run(self) -> dict[str, Any]:
        """Train from the current position to the end of the schedule (or the time budget)."""
        cfg = self.config
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._open_tensorboard()
        start = time.monotonic()
        base_elapsed = self.elapsed
        last_save = time.monotonic()
        status = "done"
        num_stages = len(cfg.patch_sizes)
        stopped = False
        if self.best["val_bits_per_dim"] is None and self.position["global_step"] == 0:
            val = self._validate()  # the starting point of the learning curve (and the first rollback target)
            self.best = {"val_bits_per_dim": val["val_bits_per_dim"], "stage": -1, "model": self._snapshot()}
            self.history.append({"stage": -1, "patch_size": None, "steps": 0, "outcome": "initial", **val})
            self._log({"elapsed_s": 0.0, "stage": -1, "event": "val", "val_bits_per_dim": val["val_bits_per_dim"],
                       "val_nats_per_patch": val.get("val_nats_per_patch")})
            if self.rank == 0:
                _report("start", val, "initial")
        while self.position["stage"] < num_stages and not stopped:
            stage = self.position["stage"]
            lr = cfg.learning_rate(stage)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            frozen = self._frozen_parameters(stage)
            stage_steps = 0
            while self.position["epoch"] < cfg.epochs_per_stage and not stopped:
                epoch = self.position["epoch"]
                steps = self.task.num_steps(stage, epoch)
                bar = None
                if self.show_progress and self.rank == 0:
                    from tqdm import tqdm

                    bar = tqdm(total=steps, initial=self.position["step"], unit="step", file=sys.stderr,
                               desc=f"stage {stage + 1}/{num_stages} (patch {cfg.patch_sizes[stage]}) "
                                    f"epoch {epoch + 1}/{cfg.epochs_per_stage}")
                running = None
                while self.position["step"] < steps:
                    step = self.position["step"]
                    batch = self.task.batch(stage, epoch, step)
                    local = batch[self.rank :: self.world].to(self.device)
                    loss = self.objective(local)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    for param in frozen:  # no gradient: neither SGD (momentum) nor Adam touches it
                        param.grad = None
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the training NLL became {float(loss)} at stage {stage}, epoch "
                                                 f"{epoch}, step {step}; lower the learning rate or set grad_clip")
                    self.optimizer.step()
                    value = float(loss.detach()) / LN2
                    running = value if running is None else 0.98 * running + 0.02 * value
                    self.position["step"] = step + 1
                    self.position["global_step"] += 1
                    stage_steps += 1
                    self.elapsed = base_elapsed + time.monotonic() - start
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(f"log-lik {-running:.4f} bit/dim (moving average)", refresh=False)
                    if step % cfg.log_every == 0:
                        self._log({"elapsed_s": self.elapsed, "stage": stage, "patch_size": cfg.patch_sizes[stage],
                                   "epoch": epoch, "step": step, "event": "train", "learning_rate": lr,
                                   "train_bits_per_dim": -value})
                    every = cfg.checkpoint_every_steps
                    if time.monotonic() - last_save > cfg.checkpoint_every_s or (every and (step + 1) % every == 0):
                        self._save_state("training")
                        last_save = time.monotonic()
                    if self.on_step is not None:
                        self.on_step({"stage": stage, "epoch": epoch, "step": step, "nll_bits_per_dim": value})
                    if cfg.max_seconds and self.elapsed > cfg.max_seconds:
                        stopped = True
                        break
                    if self.should_stop is not None and self.should_stop():
                        stopped = status = "stopped (signal)"
                        break
                if bar is not None:
                    bar.close()
                if not stopped:
                    self.position["epoch"] += 1
                    self.position["step"] = 0
            if stopped:
                status = stopped if isinstance(stopped, str) else "stopped (time budget)"
                break
            self._end_stage(stage, stage_steps)
            if cfg.patience and stages_without_improvement(self.history) >= cfg.patience:
                status = f"early stop: {cfg.patience} stages without improvement"
                break
        self.elapsed = base_elapsed + time.monotonic() - start
        self._save_state(status)
        self._save_best()
        if self.writer is not None:
            self.writer.close()
        return {"status": status, "best_val_bits_per_dim": self.best["val_bits_per_dim"],
                "best_stage": self.best["stage"], "elapsed_s": self.elapsed, "history": self.history}

    def _end_stage(self, stage: int, steps: int) -> None:
        cfg = self.config
        record: dict[str, Any] = {"stage": stage, "patch_size": cfg.patch_sizes[stage], "steps": steps}
        if cfg.finetune_iter > 0:
            before = self._snapshot()
            val_before = self._validate()
            record.update(self._finetune(stage))
            val = self._validate()
            if val["val_bits_per_dim"] < val_before["val_bits_per_dim"]:  # fine-tuning never makes things worse
                self.model.load_state_dict(before["model"])
                val = val_before
                record["finetune_kept"] = False
            else:
                record["finetune_kept"] = True
            record["val_bits_per_dim_before_finetune"] = val_before["val_bits_per_dim"]
        else:
            val = self._validate()
        record.update(val)
        best = self.best["val_bits_per_dim"]
        if best is None or val["val_bits_per_dim"] > best:
            self.best = {"val_bits_per_dim": val["val_bits_per_dim"], "stage": stage, "model": self._snapshot()}
            small = best is not None and val["val_bits_per_dim"] <= best + cfg.min_improvement
            record["outcome"] = "improved (below min_improvement)" if small else "improved"
        elif cfg.rollback:
            self.model.load_state_dict(self.best["model"]["model"])
            self.optimizer.load_state_dict(self.best["model"]["optimizer"])
            record["outcome"] = "rolled back"
        else:
            record["outcome"] = "worse (kept)"
        record["elapsed_s"] = self.elapsed
        self.history.append(record)
        self.position.update(stage=stage + 1, epoch=0, step=0)
        self._log({"elapsed_s": self.elapsed, "stage": stage, "patch_size": cfg.patch_sizes[stage], "event": "val",
                   "val_bits_per_dim": val["val_bits_per_dim"], "val_nats_per_patch": val.get("val_nats_per_patch")})
        if self.rank == 0:
            _report(f"stage {stage + 1}", val, record["outcome"])
        self._save_state("training")
        self._save_best()

