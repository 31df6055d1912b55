"""One runner in its own process: ``python benchmarks/worker.py '<Spec as JSON>'``.

``bench.py`` starts one of these per (runner, batch size), with stdout and stderr sent to a log file
(so progress output really is printed to a file), and reads the result from ``spec.result_path``.
A process per runner keeps imports (Keras, Lightning) and allocator state from leaking into the
others' times, and makes the peak RSS that runner's own.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str]) -> None:
    from _common import Spec, harness_settings, make_data

    spec = Spec(**json.loads(argv[0]))
    if spec.runner == "keras":
        os.environ["KERAS_BACKEND"] = "torch"  # before anything imports keras
        if not spec.device.startswith("cuda"):
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # Keras's torch backend picks a GPU when it sees one
    flushed = harness_settings(spec.threads)  # first, before torch starts threads: the same for every runner
    data = make_data(spec.n_train, spec.n_val, spec.seed)
    if spec.runner in ("floor", "dataloader", "epochwise", "pair"):
        from runners_torch import RUNNERS
    else:
        from runners_peers import RUNNERS
    result = RUNNERS[spec.runner](spec, data)
    result.flush_denormal = flushed
    Path(spec.result_path).write_text(json.dumps(result.to_json()))


if __name__ == "__main__":
    main(sys.argv[1:])
