"""Run under torchrun by tests/test_optuna.py: rank 0 holds an Optuna trial whose pruner prunes at the
second report, rank 1 holds None; each rank writes the epochs it ran and what its callback saw to
--out.<rank>.json."""

from __future__ import annotations

import argparse
import json

import numpy as np
import optuna
import torch
from torch import nn

import epochwise as ew
from epochwise import distributed
from epochwise.callbacks import OptunaPruning


class PruneAtSecondReport(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return len(trial.intermediate_values) >= 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    torch.manual_seed(0)
    model = ew.Model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    study = trial = None
    if distributed.rank() == 0:
        study = optuna.create_study(pruner=PruneAtSecondReport())
        trial = study.ask()
    pruning = OptunaPruning(trial)
    history = model.fit(x, y, epochs=8, batch_size=16, validation_split=0.25, callbacks=[pruning], verbose=0,
                        seed=0)
    found = {
        "epoch": history.epoch,
        "val_loss": history.history["val_loss"],
        "pruned": pruning.pruned,
        "pruned_epoch": pruning.pruned_epoch,
        "reported": None if study is None else {str(k): v for k, v in study.trials[0].intermediate_values.items()},
    }
    with open(f"{args.out}.{distributed.rank()}.json", "w", encoding="utf-8") as f:
        json.dump(found, f)


if __name__ == "__main__":
    main()
