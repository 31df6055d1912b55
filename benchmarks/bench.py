"""epochwise against a hand-written loop, Keras 3, Lightning and poutyne: one command, one table.

    python benchmarks/bench.py                  # the full table -> benchmarks/RESULTS.md (about 11 min, 2 cores)
    python benchmarks/bench.py --quick          # tiny data, one epoch, seconds: checks that it all runs
    python benchmarks/bench.py --device cuda    # the same table on a GPU

Every (runner, batch size) runs in a fresh process (``worker.py``) with stdout and stderr sent to a
log file, so progress output is really written to a file, imports do not leak between runners and
the peak RSS is the runner's own. See ``benchmarks/README.md`` for what each runner is.
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
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Result, Spec, environment_threads  # noqa: E402
from report import render  # noqa: E402
from runners_peers import PACKAGES  # noqa: E402

ALL_RUNNERS = ["floor", "epochwise", "dataloader", "keras", "lightning", "lightning-nobar", "poutyne"]
THROUGHPUT_RUNNERS = {"floor", "epochwise"}  # evaluate / predict throughput is measured for these


@dataclass
class Row:
    """One (runner, batch size): its result, or why there is none; and the machine's other load."""

    runner: str
    batch_size: int
    results: list[Result]  # one per round
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
                   help=f"which runners, in this order (default: all of {' '.join(ALL_RUNNERS)})")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 5000])
    p.add_argument("--counted", nargs="+", type=int, default=[3, 10],
                   help="counted epochs per batch size (after the warm-up), in --batch-sizes order")
    p.add_argument("--warmup", type=int, default=1, help="epochs run first and not counted")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every runner this many times, interleaved; the median pools all rounds' epochs")
    p.add_argument("--n-train", type=int, default=55_000)
    p.add_argument("--n-val", type=int, default=5_000)
    p.add_argument("--eval-repeats", type=int, default=3, help="evaluate / predict calls timed (median)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed to one runner process")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="the Markdown table")
    p.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    p.add_argument("--logs", type=Path, default=None, help="keep each runner's progress output in this folder")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_val, args.eval_repeats = 2_000, 400, 1
        args.batch_sizes, args.counted, args.warmup = [32, 250], [1, 1], 0
    if len(args.counted) == 1:
        args.counted = args.counted * len(args.batch_sizes)
    if len(args.counted) != len(args.batch_sizes):
        p.error(f"--counted needs one number per batch size ({len(args.batch_sizes)}), got {args.counted}")
    if min(args.batch_sizes) < 1 or min(args.counted) < 1 or args.warmup < 0 or args.rounds < 1:
        p.error("batch sizes, counted epochs and rounds must be positive, --warmup at least 0")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda, but torch sees no GPU here; run without it (cpu)")
    return args


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


def run_one(spec: Spec, log_path: Path, timeout: float) -> tuple[Result | None, float | None, str | None]:
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
    result = Result(**data)
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


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    began = time.monotonic()
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="epochwise-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[str, int], Row] = {}
    for batch_size, counted in zip(args.batch_sizes, args.counted):
        for rnd in range(args.rounds):
            for runner in args.runners:
                row = rows.setdefault((runner, batch_size), Row(runner, batch_size, []))
                package = PACKAGES.get(runner)
                if package and importlib.util.find_spec(package) is None:
                    row.missing = "not installed (pip install -e '.[bench]')"
                    continue
                tag = f"{runner}-b{batch_size}-r{rnd}"
                spec = Spec(
                    runner=runner,
                    batch_size=batch_size,
                    epochs=args.warmup + counted,
                    warmup=args.warmup,
                    n_train=args.n_train,
                    n_val=args.n_val,
                    device=args.device,
                    threads=args.threads,
                    eval_repeats=args.eval_repeats if runner in THROUGHPUT_RUNNERS else 0,
                    result_path=str(log_dir / f"{tag}.json"),
                )
                print(f"[{time.monotonic() - began:6.0f}s] {tag} ...", end=" ", flush=True)
                result, other, error = run_one(spec, log_dir / f"{tag}.log", args.timeout)
                if result is None:
                    row.missing = error
                    print(error, flush=True)
                    continue
                row.results.append(result)
                if other is not None:
                    row.other_load = max(row.other_load or 0.0, other)
                print(f"{result.seconds_per_epoch:.3f} s/epoch", flush=True)
    minutes = (time.monotonic() - began) / 60
    command = "python benchmarks/bench.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    settings = {
        "n_train": args.n_train, "n_val": args.n_val, "warmup": args.warmup, "rounds": args.rounds,
        "epochs": dict(zip(args.batch_sizes, args.counted)), "threads": args.threads, "device": args.device,
        "eval_repeats": args.eval_repeats,
    }
    text = render(
        list(rows.values()),
        command=command,
        date=dt.date.today().isoformat(),
        minutes=minutes,
        machine=machine(args.device),
        versions=versions(),
        settings=settings,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in rows.values()], indent=1))
    print(text)
    print(f"wrote {args.output} ({minutes:.1f} min); progress output of each runner in {log_dir}")
    return list(rows.values())


if __name__ == "__main__":
    main()
