"""epochwise against a hand-written loop, Keras 3, Lightning and poutyne: one command, one table.

    python benchmarks/bench.py                  # the full table -> benchmarks/RESULTS.md (about 25 min, 2 cores)
    python benchmarks/bench.py --quick          # tiny data, one epoch, seconds: checks that it all runs
    python benchmarks/bench.py --device cuda    # the same table on a GPU

Two methods, both built so that the machine's drift and other processes' load hit both sides of a
ratio alike: epochwise against the floor runs in ONE process, an epochwise epoch and a floor epoch (and
evaluate / predict calls) alternating, each on its own copy of the model (``runners_torch.run_pair``);
every runner (the peers, and epochwise and the floor again for memory) runs in a fresh process
(``worker.py``, output to a log file), in short interleaved rounds with a floor run next to each, and
is judged by the median of its paired ratios. Denormals are flushed in every runner, and every runner
whose library takes a data order gets the floor's. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Pair, Result, Spec, environment_threads  # noqa: E402
from report import render  # noqa: E402
from runners_peers import PACKAGES  # noqa: E402

ALL_RUNNERS = ["floor", "epochwise", "dataloader", "keras", "lightning", "lightning-nobar", "poutyne"]


@dataclass
class Row:
    """One (runner, batch size): its result, or why there is none; and the machine's other load."""

    runner: str
    batch_size: int
    results: list[Result]  # one per round
    ratios: list[float] = field(default_factory=list)  # per round: s/epoch over the floor run next to it
    other_load: float | None = None  # share of the machine's CPU that other processes used meanwhile
    missing: str | None = None  # "not installed" or the error

    def to_json(self) -> dict:
        data = asdict(self)
        data["results"] = [r.to_json() for r in self.results]
        return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny data, batch sizes 32 and 250, one epoch")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where every runner trains")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in every runner")
    p.add_argument("--runners", nargs="+", default=ALL_RUNNERS, choices=ALL_RUNNERS, metavar="RUNNER",
                   help=f"which runners, in this order (default: all of {' '.join(ALL_RUNNERS)}; floor always runs)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 5000])
    p.add_argument("--counted", nargs="+", type=int, default=[1, 5],
                   help="counted epochs of each runner process per round (after the warm-up), in --batch-sizes order")
    p.add_argument("--warmup", type=int, default=1, help="epochs run first and not counted (both methods)")
    p.add_argument("--rounds", type=int, default=4,
                   help="interleaved rounds of runner processes, each runner next to a floor run")
    p.add_argument("--pair-epochs", nargs="+", type=int, default=[6, 30],
                   help="counted (epochwise, floor) epoch pairs of the in-process runner, in --batch-sizes order")
    p.add_argument("--eval-pairs", nargs="+", type=int, default=[15, 25],
                   help="(epochwise, floor) evaluate and predict call pairs, in --batch-sizes order")
    p.add_argument("--n-train", type=int, default=55_000)
    p.add_argument("--n-val", type=int, default=5_000)
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed to one runner process")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="the Markdown table")
    p.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    p.add_argument("--logs", type=Path, default=None, help="keep each runner's progress output in this folder")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_val, args.rounds = min(args.n_train, 2_000), min(args.n_val, 400), 1
        args.batch_sizes, args.counted, args.warmup = [32, 250], [1, 1], 0
        args.pair_epochs, args.eval_pairs = [1, 1], [1, 1]
    for name in ("counted", "pair_epochs", "eval_pairs"):
        values = getattr(args, name)
        if len(values) == 1:
            setattr(args, name, values * len(args.batch_sizes))
        elif len(values) != len(args.batch_sizes):
            p.error(f"--{name.replace('_', '-')} needs one number per batch size ({len(args.batch_sizes)}), "
                    f"got {values}")
    if (min(args.batch_sizes) < 1 or min(args.counted + args.pair_epochs + args.eval_pairs) < 1 or args.warmup < 0
            or args.rounds < 1):
        p.error("batch sizes, counted epochs, pairs and rounds must be positive, --warmup at least 0")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda, but torch sees no GPU here; run without it (cpu)")
    args.runners = ["floor"] + [r for r in args.runners if r != "floor"]
    return args


def round_order(runners: list[str], rnd: int) -> list[tuple[str, int | None]]:
    """One round: (runner, index in this list of the floor run it is paired with). A floor runs before
    every two runners and after them, so each runner is next to one: F A B F C D F ... The order
    reverses every other round, so no runner always runs first after a floor."""
    others = [r for r in runners if r != "floor"]
    if rnd % 2:
        others.reverse()
    seq: list[tuple[str, int | None]] = [("floor", None)]
    for k in range(0, len(others), 2):
        before = len(seq) - 1
        seq.append((others[k], before))
        if k + 1 < len(others):
            seq.append((others[k + 1], len(seq) + 1))  # the floor right after it
            seq.append(("floor", None))
    return seq


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat (Linux only)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(spec: Spec, log_path: Path, timeout: float) -> tuple[Any, float | None, str | None]:
    """One runner in a fresh process; returns (result, other processes' CPU share, error)."""
    before, own_before = _cpu_jiffies(), _children_cpu()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "worker.py"), json.dumps(asdict(spec))],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment_threads(spec.threads),
            cwd=HERE.parent,
        )
        start = time.monotonic()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None, None, f"timed out after {timeout:.0f} s"
        wall = time.monotonic() - start
    after = _cpu_jiffies()
    own = _children_cpu() - own_before
    if proc.returncode != 0 or not Path(spec.result_path).exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return None, None, f"exit {proc.returncode}: " + " / ".join(tail)
    data = json.loads(Path(spec.result_path).read_text())
    result = Pair(**{k: v for k, v in data.items()}) if spec.runner == "pair" else Result(**data)
    other = None
    if before and after and wall > 0:
        hz = os.sysconf("SC_CLK_TCK")
        busy = (after[0] - before[0]) / hz
        other = max(0.0, (busy - own) / (wall * (os.cpu_count() or 1)))
    return result, other, None


def machine(device: str) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": str(os.cpu_count()), "os": f"{platform.system()} {platform.release()}"}
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "epochwise", "keras", "lightning", "poutyne"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, check=True).stdout.strip()
        out["epochwise"] += f" (commit {commit}{', with uncommitted changes' if dirty else ''})"
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def main(argv: list[str] | None = None) -> tuple[list[Row], list[Pair]]:
    args = parse_args(argv)
    began = time.monotonic()
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="epochwise-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[str, int], Row] = {}
    pairs: list[Pair] = []
    pair_errors: dict[int, str] = {}

    def spec(runner: str, batch_size: int, epochs: int, tag: str, eval_pairs: int = 0) -> Spec:
        return Spec(runner=runner, batch_size=batch_size, epochs=epochs, warmup=args.warmup, n_train=args.n_train,
                    n_val=args.n_val, device=args.device, threads=args.threads, eval_repeats=0,
                    result_path=str(log_dir / f"{tag}.json"), pairs=eval_pairs)

    def progress(tag: str) -> None:
        print(f"[{time.monotonic() - began:6.0f}s] {tag} ...", end=" ", flush=True)

    for batch_size, counted, pair_epochs, eval_pairs in zip(args.batch_sizes, args.counted, args.pair_epochs,
                                                             args.eval_pairs):
        if "epochwise" in args.runners:  # method 1: epochwise and the floor alternating in one process
            tag = f"pair-b{batch_size}"
            progress(tag)
            pair, _, error = run_one(spec("pair", batch_size, args.warmup + pair_epochs, tag, eval_pairs),
                                     log_dir / f"{tag}.log", args.timeout)
            if pair is None:
                pair_errors[batch_size] = error or "failed"
                print(error, flush=True)
            else:
                pairs.append(pair)
                print(f"{len(pair.fit_seconds)} epoch pairs, {len(pair.evaluate_seconds)} call pairs", flush=True)
        for rnd in range(args.rounds):  # method 2: every runner in its own process, next to a floor run
            done: list[Result | None] = []
            for runner, _paired in round_order(args.runners, rnd):
                row = rows.setdefault((runner, batch_size), Row(runner, batch_size, []))
                package = PACKAGES.get(runner)
                if package and importlib.util.find_spec(package) is None:
                    row.missing = "not installed (pip install -e '.[bench]')"
                    done.append(None)
                    continue
                tag = f"{runner}-b{batch_size}-r{rnd}-{len(done)}"
                progress(tag)
                result, other, error = run_one(spec(runner, batch_size, args.warmup + counted, tag),
                                               log_dir / f"{tag}.log", args.timeout)
                done.append(result)
                if result is None:
                    row.missing = error
                    print(error, flush=True)
                    continue
                row.results.append(result)
                if other is not None:
                    row.other_load = max(row.other_load or 0.0, other)
                print(f"{result.seconds_per_epoch:.3f} s/epoch", flush=True)
            for (runner, paired_with), result in zip(round_order(args.runners, rnd), done):
                if result is None:
                    continue
                row = rows[runner, batch_size]
                floor = result if paired_with is None else done[paired_with]
                if floor is not None:
                    row.ratios.append(result.seconds_per_epoch / floor.seconds_per_epoch)
    minutes = (time.monotonic() - began) / 60
    command = "python benchmarks/bench.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    settings = {
        "n_train": args.n_train, "n_val": args.n_val, "warmup": args.warmup, "rounds": args.rounds,
        "epochs": dict(zip(args.batch_sizes, args.counted)), "threads": args.threads, "device": args.device,
        "pair_epochs": dict(zip(args.batch_sizes, args.pair_epochs)),
        "eval_pairs": dict(zip(args.batch_sizes, args.eval_pairs)), "pair_errors": pair_errors,
    }
    row_list = list(rows.values())
    text = render(row_list, pairs, command=command, date=dt.date.today().isoformat(), minutes=minutes,
                  machine=machine(args.device), versions=versions(), settings=settings)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.json:
        raw = {"rows": [r.to_json() for r in row_list], "pairs": [p.to_json() for p in pairs],
               "settings": {k: v for k, v in settings.items()}, "machine": machine(args.device), "versions": versions(),
               "minutes": minutes}
        args.json.write_text(json.dumps(raw, indent=1))
    print(text)
    print(f"wrote {args.output} ({minutes:.1f} min); progress output of each runner in {log_dir}")
    return row_list, pairs


if __name__ == "__main__":
    main()
