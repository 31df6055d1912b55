"""Run under torchrun (or alone) by tests/test_distributed.py and tests/test_fsdp.py; writes what it saw to
--out.<rank>.json."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
from torch import nn

import epochwise as ew
from epochwise import distributed
from epochwise.io import files as _io


class StopOnRank(ew.callbacks.Callback):
    """Only one rank decides to stop: every rank must stop with it, and none may hang."""

    def __init__(self, rank, epoch, batch):
        super().__init__()
        self.at, self.epoch = (rank, epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (distributed.rank(), self.epoch, batch) == self.at:
            self.model.stop_training = True


class Blocks(nn.Module):
    """A ModuleList of blocks and a head: FSDP makes each block a unit (rows 16 and 3: uneven shards)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(5, 16), nn.ReLU()), nn.Sequential(nn.Linear(16, 16), nn.Tanh())])
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class Crash(ew.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            os._exit(3)  # like a kill: no cleanup at all


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mode", default="plain", choices=["plain", "stop", "files", "resume", "loader"])
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--stop-rank", type=int, default=1, help="stop mode: the one rank that asks to stop")
    parser.add_argument("--folder", default="")
    parser.add_argument("--save-freq", default="1", help="resume mode: BackupAndRestore's save_freq ('epoch' or N)")
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--clipnorm", type=float, default=None)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--net", default="mlp", choices=["mlp", "blocks"])
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam", "torch"])
    parser.add_argument("--roundtrip", action="store_true", help="files mode: reload the saved files on every rank")
    parser.add_argument("--val-batch", type=int, default=None, help="5: 3 validation batches on rank 0, 2 on rank 1")
    parser.add_argument("--eval-first", action="store_true", help="evaluate 3 samples one by one before fit")
    parser.add_argument("--device", default="cpu", help="cuda: on the GPU (NCCL under torchrun)")
    parser.add_argument("--init-group", action="store_true",
                        help="open the process group here (NCCL on a GPU), as a script may, even for one process")
    parser.add_argument("--tiny-eval", action="store_true", help="after fit, evaluate and predict 1 sample (a rank gets none)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.init_group and "RANK" in os.environ:
        torch.distributed.init_process_group(backend="nccl" if args.device.startswith("cuda") else "gloo")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)) if args.net == "mlp" else Blocks()
    model = ew.Model(net, device=args.device, seed=4)
    clip = {"global_clipnorm": args.clip, "clipnorm": args.clipnorm}
    optimizer = {"sgd": lambda: ew.optimizers.SGD(learning_rate=0.1, **clip),
                 "momentum": lambda: ew.optimizers.SGD(learning_rate=0.1, momentum=0.9, **clip),
                 "adam": lambda: ew.optimizers.Adam(learning_rate=0.01, **clip),
                 "torch": lambda: ew.optimizers.Optimizer.wrap(torch.optim.SGD(  # built before compile, 2 groups
                     [{"params": list(net.parameters())[:2], "lr": 0.05}, {"params": list(net.parameters())[2:]}],
                     lr=0.1, momentum=0.9), **clip)}[args.optimizer]()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  accumulate_steps=args.accumulate, strategy=args.strategy)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, 64)
    xv = rng.normal(size=(21, 5)).astype("float32")  # 21: uneven validation shards (11 + 10)
    yv = rng.integers(0, 3, 21)
    callbacks = []
    writes = []
    real_write = _io.atomic_write

    def spy(path, write):
        if distributed.is_main_process():
            writes.append(str(path))
        real_write(path, write)

    _io.atomic_write = spy
    if args.mode == "stop":
        callbacks.append(StopOnRank(rank=args.stop_rank, epoch=1, batch=1))
    if args.mode == "files":
        callbacks += [ew.callbacks.ModelCheckpoint(os.path.join(args.folder, "best.pt"), save_best_only=True),
                      ew.callbacks.CSVLogger(os.path.join(args.folder, "log.csv"))]
    if args.mode == "resume":
        save_freq = args.save_freq if args.save_freq == "epoch" else int(args.save_freq)
        callbacks.append(ew.callbacks.BackupAndRestore(args.folder, save_freq=save_freq))
        if args.crash_at:
            callbacks.append(Crash(args.crash_at))
    extra = {}
    if args.eval_first:  # before any training step; rank 0 has 2 batches, rank 1 has 1
        extra["evaluate_first"] = evaluate_dict(model.evaluate(xv[:3], yv[:3], batch_size=1, return_dict=True, verbose=0))
    barriers = [0]
    real_barrier = torch.distributed.barrier

    def counting_barrier(*a, **k):  # the barriers fit runs (setup's barrier calls dist.barrier by name)
        barriers[0] += 1
        return real_barrier(*a, **k)

    torch.distributed.barrier = counting_barrier
    data = (x, y)
    if args.mode == "loader":
        gen = torch.Generator().manual_seed(0)
        data = (torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                            batch_size=args.batch_size, shuffle=True, generator=gen),)
        history = model.fit(*data, epochs=3, validation_data=(xv, yv), callbacks=callbacks, verbose=0)
    else:
        history = model.fit(x, y, batch_size=args.batch_size, epochs=3, validation_data=(xv, yv),
                            validation_batch_size=args.val_batch,
                            callbacks=callbacks, verbose=0)
    torch.distributed.barrier = real_barrier
    extra["fit_barriers"] = barriers[0]
    evaluation = model.evaluate(xv, yv, batch_size=4, return_dict=True, verbose=0)
    prediction = model.predict(xv, batch_size=4, verbose=0)
    if args.folder and args.mode == "files":
        model.save_weights(os.path.join(args.folder, "final.pt"))
        if args.roundtrip:  # every rank reads the full files back into its shards
            rt = os.path.join(args.folder, "rt")
            model.save(os.path.join(rt, "full.pt"))
            distributed.barrier()  # rank 0 wrote them
            model.load_weights(os.path.join(args.folder, "final.pt"))
            extra["reloaded_prediction"] = model.predict(xv, batch_size=4, verbose=0).tolist()
            model.load(os.path.join(rt, "full.pt"))
            model.save(os.path.join(rt, "again.pt"))
    if args.tiny_eval:  # fewer samples than processes: rank 1's shard is empty and must not hang rank 0
        extra["tiny_evaluate"] = evaluate_dict(model.evaluate(xv[:1], yv[:1], return_dict=True, verbose=0))
        extra["tiny_prediction"] = model.predict(xv[:1], verbose=0).tolist()
    weights = model.get_weights()
    record = {
        "rank": distributed.rank(), "world": distributed.world_size(), "history": history.history,
        "epoch": history.epoch, "evaluate": evaluate_dict(evaluation), "prediction": prediction.tolist(),
        "weights": {k: v.tolist() for k, v in weights.items()}, "writes": writes,
        "module_type": type(model.module).__name__, "keys": list(weights), "same_module": model.module is net,
        "sharded": distributed.is_sharded(model.module), "device": str(model.device),
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None, **extra,
    }
    with open(f"{args.out}.{distributed.rank()}.json", "w") as fh:
        json.dump(record, fh)
    if args.init_group and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def evaluate_dict(d):
    return {k: float(v) for k, v in d.items()}


if __name__ == "__main__":
    main()
