"""Two gloo processes (spawned here, no torchrun) sync declared metric state; used by tests/test_metric_state.py.

Usage: ``python metric_state_script.py DATA.pt [DATA.pt ...] OUT`` writes OUT.<rank>.json. Rank 0 gets
the first ``split`` samples of each DATA.pt, rank 1 the rest (uneven shards; rank 1 may get none).
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import epochwise as ew


class Extremes(ew.metrics.Metric):
    """Every reduction kind at once: the sum, the largest and the smallest value, and all values seen."""

    def __init__(self, name: str = "extremes") -> None:
        super().__init__(name)
        self.scale = 2.0  # a setting: never reduced, never in the state
        self.add_state("total", torch.zeros(()), "sum")
        self.add_state("seen", 0, "sum")
        self.add_state("high", torch.full((), -float("inf")), "max")
        self.add_state("low", torch.full((), float("inf")), "min")
        self.add_state("values", [], "cat")

    def update_state(self, y_true, y_pred, sample_weight=None):
        v = y_pred.detach().reshape(-1) * self.scale
        self.state_on("total", v.device).add_(v.sum())
        self.seen += v.numel()
        self.high = torch.maximum(self.high.to(v.device), v.max())
        self.low = torch.minimum(self.low.to(v.device), v.min())
        self.values.append(v)

    def result(self):
        return self.total / max(self.seen, 1)


class Counted(ew.metrics.Metric):
    """The old way: state in a plain attribute and an own reset_state."""

    def __init__(self) -> None:
        super().__init__("counted")
        self.n = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.n += len(y_true)

    def result(self):
        return torch.tensor(float(self.n))

    def reset_state(self):
        self.n = 0


def metrics() -> dict[str, ew.metrics.Metric]:
    import torchmetrics

    return {
        "auc": ew.metrics.AUC(),
        "precision": ew.metrics.Precision(thresholds=0.3),
        "top2": ew.metrics.SparseTopKCategoricalAccuracy(k=2),
        "mean": ew.metrics.Mean(),
        "extremes": Extremes(),
        "acc": ew.metrics.get("accuracy"),  # resolved only where a batch was seen
        "tm": ew.metrics.TorchmetricsMetric(torchmetrics.classification.MulticlassAccuracy(num_classes=3)),
    }


def update(ms: dict[str, ew.metrics.Metric], d: dict[str, torch.Tensor], part: slice) -> None:
    y, p, w = d["y"][part], d["p"][part], d["w"][part]
    labels, scores = d["labels"][part], d["scores"][part]
    if len(y) == 0:
        return
    ms["auc"].update_state(y, p)
    ms["precision"].update_state(y, p, w)
    ms["top2"].update_state(labels, scores)
    ms["mean"].update_state(p.reshape(-1), w)
    ms["extremes"].update_state(y, p)
    ms["acc"].update_state(labels, scores)
    ms["tm"].update_state(labels, scores)


def run(d: dict[str, torch.Tensor], rank: int) -> dict:
    split = int(d["split"])
    part = slice(0, split) if rank == 0 else slice(split, len(d["y"]))
    ms = metrics()
    update(ms, d, part)
    local = {k: float(m.result()) for k, m in ms.items() if k != "tm"}
    synced = {}
    for k, m in ms.items():
        with m.sync():
            synced[k] = float(m.result())
            if k == "extremes":
                synced["values"] = m.values[0].tolist()
                synced["high"], synced["low"], synced["seen"] = float(m.high), float(m.low), m.seen
    after = {k: float(m.result()) for k, m in ms.items() if k != "tm"}
    settings = {"thresholds": ms["precision"].thresholds, "k": ms["top2"].fn_kwargs["k"],
                "scale": ms["extremes"].scale, "precision_state": sorted(ms["precision"].state_dict())}
    return {"local": local, "synced": synced, "after": after, "settings": settings}


def worker(rank: int, data_paths: list[str], out: str, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    runs = [run(torch.load(path), rank) for path in data_paths]
    # a metric keeping its state the old way is refused before any training step
    model = ew.Model(nn.Linear(3, 1), device="cpu", seed=0)
    model.compile(optimizer="sgd", loss="mse", metrics=[Counted()])
    batches = []
    count = ew.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: batches.append(batch))
    try:
        model.fit(torch.zeros(4, 3), torch.zeros(4, 1), epochs=1, verbose=0, callbacks=[count])
        refused = ""
    except ValueError as e:
        refused = str(e)
    with open(f"{out}.{rank}.json", "w") as fh:
        json.dump({"runs": runs, "refused": refused,
                   "trained": len(batches)}, fh)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    *data_paths, out = sys.argv[1:]
    mp.spawn(worker, args=(data_paths, out, f"{out}.store"), nprocs=2, join=True)
