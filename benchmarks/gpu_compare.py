"""Compare two runs of ``tests/distributed/ddp_script.py`` (used by ``gpu_list.sh``): one plain process and
one torchrun process on the same GPU, which must agree (NCCL with one rank reduces nothing)."""

from __future__ import annotations

import json
import sys
from typing import Any


def flat(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [v for key in sorted(value) for v in flat(value[key])]
    if isinstance(value, list):
        return [v for item in value for v in flat(item)]
    return [float(value)]


def main(single_path: str, torchrun_path: str) -> int:
    try:
        with open(single_path) as f:
            single = json.load(f)
        with open(torchrun_path) as f:
            run = json.load(f)
    except OSError as err:
        print(f"a run wrote no result: {err}")
        return 1
    print(f"one process on {single['device']}; torchrun on {run['device']}, backend {run['backend']}, "
          f"world {run['world']}")
    worst = 0.0
    for part in ("history", "weights", "prediction"):
        a, b = flat(single[part]), flat(run[part])
        if len(a) != len(b):
            print(f"{part}: {len(a)} values against {len(b)}")
            return 1
        diff = max(abs(x - y) for x, y in zip(a, b))
        worst = max(worst, diff)
        print(f"{part}: {len(a)} values, largest difference from one process {diff:.2e}")
    return 0 if worst <= 1e-6 and run["backend"] in ("nccl", "gloo") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
