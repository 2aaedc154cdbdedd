"""Training: `config` (the recipe as a dataclass, TOML files, flags), `tasks` (what one step sees: image crops or
63-dim patches, validation sets) and `trainer` (the curriculum of stages, L-BFGS fine-tuning, validation with
rollback, checkpoints and exact resume, data parallelism).

    from ride.train.config import TrainConfig
    from ride.train.trainer import Trainer
"""
