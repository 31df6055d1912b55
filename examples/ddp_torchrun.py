"""The tutorial's MLP with torchrun: `torchrun --nproc-per-node 2 examples/ddp_torchrun.py --quick`.

Nothing in it is specific to distributed training: `model.fit` sees torchrun's environment.
Without torchrun (`python examples/ddp_torchrun.py --quick`) it runs in one process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import epochwise as ew
from epochwise.cli import build_demo_module, load_digits_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few epochs, for a smoke test")
    parser.add_argument("--output", default="example-output", help="folder for the weights")
    args = parser.parse_args()
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_digits_split(seed=1234)
    model = ew.Model(build_demo_module(), seed=0)  # device="auto": cuda:LOCAL_RANK under torchrun
    model.compile(optimizer=ew.optimizers.Adam(learning_rate=0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=2 if args.quick else 30, validation_data=(x_val, y_val),
              callbacks=[ew.callbacks.EarlyStopping(patience=3, restore_best_weights=True)], verbose=2)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    if ew.distributed.is_main_process():  # your own prints run on every rank
        print(f"test accuracy {accuracy:.4f}")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    model.save_weights(Path(args.output) / "ddp-weights.safetensors")  # written by rank 0 only


if __name__ == "__main__":
    main()
