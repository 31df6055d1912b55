"""Run the 2-process torchrun scripts many times on a loaded machine and count the aborts (not a test).

Usage: ``python tests/distributed/stress.py [--runs 50] [--load N] [--src DIR] [--cores DIR]``

Each run is one of the 2-process ``ddp_script.py`` configurations the tests use (the exit paths that
aborted: an evaluation in which one rank has no batch, validation shards of unequal length, FSDP), with
``--load`` busy-loop processes (default: one per core) running alongside. A run that ends with SIGABRT
(exit code -6 / 134, or "terminate called" in its output) is an abort; any other non-zero exit is
counted apart. ``--src`` puts another copy of the package first on PYTHONPATH (to measure older code);
``--cores`` keeps the core file of each aborted process there (for ``gdb python3 core``). Ends with the
line ``N runs, K aborts, F other failures``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
SCRIPT = HERE / "ddp_script.py"
CONFIGS = [
    ["--batch-size", "8", "--tiny-eval", "--strategy", "ddp"],
    ["--batch-size", "8", "--eval-first", "--val-batch", "5"],
    ["--batch-size", "8", "--tiny-eval", "--strategy", "fsdp", "--net", "blocks"],
]


def _spin() -> None:
    while True:
        pass


def _allow_cores() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def run_once(i: int, args: argparse.Namespace, work: Path) -> tuple[str, str]:
    """('ok' | 'abort' | 'fail', output tail) for run ``i``."""
    folder = work / f"run{i}"
    folder.mkdir()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(SCRIPT),
           "--out", str(folder / "r"), *CONFIGS[i % len(CONFIGS)]]
    try:
        result = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=args.timeout,
                                preexec_fn=_allow_cores if args.cores else None)
    except subprocess.TimeoutExpired:
        return "fail", f"timed out after {args.timeout} s"
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return "ok", ""
    aborted = "SIGABRT" in output or "terminate called" in output or "exitcode  : -6" in output
    if aborted and args.cores:
        for core in folder.glob("core*"):
            core.rename(Path(args.cores) / f"run{i}.{core.name}")
    return ("abort" if aborted else "fail"), output[-2000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy-loop processes alongside")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per run")
    parser.add_argument("--src", default="", help="a folder to put first on PYTHONPATH (older code)")
    parser.add_argument("--cores", default="", help="keep aborted processes' core files in this folder")
    args = parser.parse_args()
    if args.cores:
        Path(args.cores).mkdir(parents=True, exist_ok=True)
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    counts = {"ok": 0, "abort": 0, "fail": 0}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.runs):
                outcome, tail = run_once(i, args, Path(tmp))
                counts[outcome] += 1
                if outcome != "ok":
                    print(f"run {i} ({' '.join(CONFIGS[i % len(CONFIGS)])}): {outcome}\n{tail}\n", flush=True)
                elif (i + 1) % 10 == 0:
                    print(f"{i + 1} runs done", flush=True)
    finally:
        for p in spinners:
            p.terminate()
            p.join()
    print(f"{args.runs} runs, {counts['abort']} aborts, {counts['fail']} other failures")


if __name__ == "__main__":
    main()
