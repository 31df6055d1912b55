"""The notebooks in examples/notebooks run in a real Jupyter kernel; their saved outputs read right (B2-B6).

The notebooks are stored without outputs. Here each runs once per session in its own ipykernel on
this interpreter (a kernel spec written to a temporary folder, so no setup step is needed), all of
them at the same time; each test then reads the outputs nbclient saved, as a person opening the
.ipynb would see them. The expected numbers come from the data's size (scikit-learn's digits and
its train_test_split), not from a previous run. A last test drives ProgbarLogger's notebook path
without a kernel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import classifier, make_classification

from epochwise.callbacks import progbar_logger

NOTEBOOKS = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
TUTORIALS = ("mnist_mlp", "early_stopping")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
STEP = r"\d+(us|ms|s)/step"
VAL = r"\d\.\d{4}"


def read(name: str) -> dict:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


def joined(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)  # a saved .ipynb splits text into lines


def source(cell: dict) -> str:
    return joined(cell["source"])


# --- the stored files -----------------------------------------------------------------------
def test_every_tutorial_has_an_english_and_a_korean_notebook():
    assert NAMES == sorted(f"{stem}{lang}.ipynb" for stem in TUTORIALS for lang in ("", ".ko"))


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name):
    for cell in read(name)["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name}: clear {cell['id']}"


@pytest.mark.parametrize("stem", TUTORIALS)
def test_korean_notebook_has_the_same_code_and_korean_text(stem):
    english, korean = read(f"{stem}.ipynb")["cells"], read(f"{stem}.ko.ipynb")["cells"]
    assert [c["id"] for c in english] == [c["id"] for c in korean]
    for en, ko in zip(english, korean):
        if en["cell_type"] == "code":
            assert source(en) == source(ko), f"{stem}: code cell {en['id']} differs"
        else:
            assert HANGUL.search(source(ko)) and not HANGUL.search(source(en)), en["id"]


# --- running them -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """Each notebook run by nbclient in a fresh kernel: (the saved notebook, the folder it ran in)."""
    nbformat = pytest.importorskip(
        "nbformat", reason="running notebooks needs nbformat: pip install nbformat"
    )
    nbclient = pytest.importorskip(
        "nbclient", reason="running notebooks needs nbclient: pip install nbclient"
    )
    pytest.importorskip("ipykernel", reason="running notebooks needs a kernel: pip install ipykernel")
    pytest.importorskip(
        "sklearn", reason="the notebooks use scikit-learn's digits: pip install 'epochwise[demo]'"
    )
    pytest.importorskip("matplotlib", reason="the notebooks plot: pip install 'epochwise[demo]'")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    import epochwise

    root = tmp_path_factory.mktemp("notebooks")
    spec = root / "kernels" / "python3"  # this interpreter, whatever "python3" kernels the machine has
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    src = str(Path(epochwise.__file__).resolve().parents[1])  # this checkout's epochwise, installed or not
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's own inline backend
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", EPOCHWISE_DATA_DIR=str(root / "empty-cache"),
               PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))  # fmt: skip

    async def run(name: str) -> tuple[str, tuple[dict, Path]]:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        cwd = root / name.removesuffix(".ipynb")
        cwd.mkdir()
        km = AsyncKernelManager(
            kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)])
        )
        client = nbclient.NotebookClient(nb, km=km, timeout=300, allow_errors=True, shutdown_kernel="immediate",
                                         resources={"metadata": {"path": str(cwd)}})  # fmt: skip
        await client.async_execute(env=env)
        return name, (json.loads(nbformat.writes(nb)), cwd)  # what the saved .ipynb holds

    async def run_all() -> dict[str, tuple[dict, Path]]:
        return dict(await asyncio.gather(*(run(name) for name in NAMES)))

    return asyncio.run(run_all())


def cells(nb: dict) -> dict[str, dict]:
    return {c["id"]: c for c in nb["cells"]}


def text(output: dict) -> str:
    if output["output_type"] == "stream":
        return joined(output["text"])
    return joined(output.get("data", {}).get("text/plain", ""))


def streams(cell: dict) -> str:
    return "".join(text(o) for o in cell["outputs"] if o["output_type"] == "stream")


def bars(cell: dict) -> list[str]:
    """The progress bars a cell left: its display outputs (text form), in order."""
    return [text(o) for o in cell["outputs"] if o["output_type"] == "display_data"]


def setting(nb: dict, pattern: str) -> int:
    found = re.findall(pattern, "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "code"), re.M)
    assert len(found) == 1, pattern
    return int(found[0])


def digits_split(test_size: float) -> tuple[int, int]:
    """(train, test) sizes of scikit-learn's digits split as the notebooks split them."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    n = len(load_digits().target)
    train, test = train_test_split(list(range(n)), test_size=test_size)
    return len(train), len(test)


@pytest.mark.parametrize("name", NAMES)
def test_runs_clean_in_a_kernel(executed, name):  # B3: no control characters in what the notebook keeps
    nb, _ = executed[name]
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", (
                f"{cell['id']}: {output.get('ename')}: {output.get('evalue')}"
            )
            assert output.get("name") != "stderr", f"{cell['id']} wrote to stderr: {text(output)[:2000]}"
            assert "\x1b" not in text(output) and "\r" not in text(output), f"{cell['id']}: {text(output)!r}"
            if output["output_type"] == "display_data":  # a bar: rich's HTML and the plain line
                html = joined(output["data"]["text/html"])
                assert html.startswith("<pre") and "━" in html and "\x1b" not in html


@pytest.mark.parametrize("name", NAMES)
def test_history_plot_shows_one_image(executed, name):
    nb, _ = executed[name]
    images = [
        (c["id"], o) for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert [cell for cell, _ in images] == ["plot"], images  # once, from history.plot(), not twice
    png = base64.b64decode(joined(images[0][1]["data"]["image/png"]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert len(cells(nb)["plot"]["outputs"]) == 1


def bar_pattern(steps: int, metrics: str) -> str:
    return rf"^{steps}/{steps} ━{{20}} \d+s {STEP}{metrics}$"  # finished: 20 full cells, elapsed time


@pytest.mark.parametrize("name", ["mnist_mlp.ipynb", "mnist_mlp.ko.ipynb"])
def test_mnist_mlp_plan_and_one_bar_per_epoch(executed, name):  # B2, B3, B6, D1
    nb, _ = executed[name]
    by_id = cells(nb)
    trainval, n_test = digits_split(0.2)
    n_val = trainval // 5
    n_train = trainval - n_val
    batch = math.ceil(n_train / 11)  # the course's 11 iterations per epoch
    steps = math.ceil(n_train / batch)
    epochs = setting(nb, r"^EPOCHS = (\d+)")
    assert f"{n_train:,} training, {n_val:,} validation, {n_test:,} test images" in streams(by_id["data"])

    fit = by_id["fit"]
    out = streams(fit)
    assert out.count("Train on") == 1  # the run plan, once
    assert (f"Train on {n_train:,} samples, validate on {n_val:,} | batch {batch:,} -> {steps} iterations/epoch | "
            f"{epochs} epochs -> {steps * epochs:,} iterations | ") in out  # fmt: skip
    assert re.findall(r"^Epoch (\d+)/(\d+)$", out, re.M) == [
        (str(e), str(epochs)) for e in range(1, epochs + 1)
    ]
    lines = bars(fit)
    assert len(lines) == epochs  # one line per epoch, each redrawn in place while it ran
    metrics = rf" - accuracy: {VAL} - loss: {VAL} - val_accuracy: {VAL} - val_loss: {VAL}"
    for line in lines:
        assert re.match(bar_pattern(steps, metrics), line), line

    evaluate = by_id["evaluate"]
    (line,) = bars(evaluate)  # B5: evaluate's bar, no header
    test_steps = math.ceil(n_test / 32)
    match = re.match(bar_pattern(test_steps, rf" - accuracy: ({VAL}) - loss: ({VAL})"), line)
    assert match, line
    assert f"test: loss {match.group(3)} - accuracy {match.group(2)}" in streams(evaluate)

    small = by_id["small_batch"]  # B4: verbose=2 in a notebook is one plain line per epoch, as on a terminal
    small_epochs, small_steps = setting(nb, r"small\.fit\(.*epochs=(\d+)"), math.ceil(n_train / 32)
    out = streams(small)
    assert bars(small) == [] and out.count("Train on") == 1
    assert (
        f"batch 32 -> {small_steps} iterations/epoch | {small_epochs} epochs -> {small_steps * small_epochs} "
        in out
    )
    plain = re.findall(rf"^{small_steps}/{small_steps} - \d+s - {STEP}{metrics}$", out, re.M)
    assert len(plain) == small_epochs


@pytest.mark.parametrize("name", ["early_stopping.ipynb", "early_stopping.ko.ipynb"])
def test_early_stopping_bars_summary_and_saved_model(executed, name):  # ES4, ES6, MC, B6
    nb, cwd = executed[name]
    by_id = cells(nb)
    _, n_val = digits_split(0.3)
    n_train, batch = 300, 32
    steps = math.ceil(n_train / batch)
    epochs = setting(nb, r"^EPOCHS = (\d+)")
    patience = setting(nb, r"EarlyStopping\(.*patience=(\d+)")

    fit = by_id["fit"]
    out = streams(fit)
    assert out.count("Train on") == 1
    assert (f"Train on {n_train:,} samples, validate on {n_val:,} | batch {batch} -> {steps} iterations/epoch | "
            f"{epochs} epochs -> {steps * epochs:,} iterations") in out  # fmt: skip
    summary = re.findall(r"^stopped at epoch .*$", out, re.M)
    assert len(summary) == 1 and out.count("stopped at epoch") == 1, out  # the end-of-fit line, once
    stopped = re.match(rf"stopped at epoch (\d+) of {epochs} \(val_loss did not improve", summary[0])
    restored = re.search(r"weights restored from epoch (\d+) \(val_loss (\S+)\)", summary[0])
    saved = re.search(r"best model saved to (\S+) \(val_loss (\S+) at epoch (\d+)\)", summary[0])
    assert stopped and restored and saved, summary[0]
    ran, best = int(stopped.group(1)), int(restored.group(1))
    assert ran - best == patience  # Keras's rule: `patience` epochs without improvement after the best
    assert saved.group(2) == restored.group(2) and int(saved.group(3)) == best
    assert (cwd / saved.group(1)).is_file()

    headers = re.findall(r"^Epoch (\d+)/(\d+)$", out, re.M)
    assert headers == [(str(e), str(epochs)) for e in range(1, ran + 1)]
    lines = bars(fit)
    assert len(lines) == ran  # one finished bar per epoch that ran
    for line in lines:
        assert re.match(
            bar_pattern(steps, rf" - accuracy: {VAL} - loss: {VAL} - val_accuracy: {VAL} - val_loss: {VAL}"),
            line,
        ), line

    after = streams(by_id["after"])
    match = re.search(
        r"ran (\d+) of (\d+) epochs; stopped_epoch=(\d+), best_epoch=(\d+) \(0-based\), best val_loss (\S+)",
        after,
    )
    assert match, after
    assert (int(match.group(1)), int(match.group(3)), int(match.group(4))) == (ran, ran - 1, best - 1)

    reload = by_id["reload"]
    out = streams(reload)
    assert f"read back: {{'epoch': {best}}}" in out  # the file holds the best epoch
    values = re.search(
        r"val_loss: best epoch (\S+), model after fit (\S+), model read from the file (\S+)", out
    )
    assert values and values.group(1) == values.group(2) == values.group(3) == match.group(5), out  # ES6
    (line,) = bars(reload)  # the fresh model's evaluate; the verbose=0 one draws nothing
    assert re.match(bar_pattern(math.ceil(n_val / 32), rf" - accuracy: {VAL} - loss: {VAL}"), line), line


# --- the notebook path without a kernel -------------------------------------------------------
class FakeDisplay:
    """Stands in for IPython.display.display with a display_id: records each output and its updates."""

    def __init__(self) -> None:
        self.outputs: list[list[dict]] = []

    def __call__(self, bundle: dict, *, raw: bool = False, display_id: bool = False) -> Any:
        assert raw and display_id is True
        self.outputs.append([bundle])
        shown = self.outputs[-1]

        class Handle:
            def update(self, bundle: dict, *, raw: bool = False) -> None:
                assert raw
                shown.append(bundle)

        return Handle()


@pytest.fixture
def notebook(monkeypatch) -> FakeDisplay:
    display = pytest.importorskip(
        "IPython.display", reason="the notebook path draws with IPython: pip install ipykernel"
    )
    fake = FakeDisplay()
    monkeypatch.setattr(display, "display", fake)
    monkeypatch.setattr(progbar_logger, "_in_notebook", lambda: True)
    return fake


def test_notebook_bar_is_one_output_per_epoch_updated_in_place(notebook, capsys):  # B2, B3, B5
    x, y = make_classification(70)
    model = classifier()
    model.fit(x, y, epochs=2, batch_size=8, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out
    assert "━" not in out and "\x1b" not in out and "\r" not in out  # the bar never goes to stdout
    assert re.findall(r"^Epoch \d/2$", out, re.M) == ["Epoch 1/2", "Epoch 2/2"] and out.count("Train on") == 1
    steps = math.ceil(56 / 8)
    assert len(notebook.outputs) == 2
    metrics = rf" - accuracy: {VAL} - loss: {VAL} - val_accuracy: {VAL} - val_loss: {VAL}"
    for shown in notebook.outputs:
        final = shown[-1]
        assert re.match(bar_pattern(steps, metrics), final["text/plain"]), final["text/plain"]
        assert final["text/html"].startswith("<pre") and "━" in final["text/html"]
        assert all("\x1b" not in b["text/plain"] and "\n" not in b["text/plain"] for b in shown)
        counts = [int(re.match(r"\s*(\d+)/", b["text/plain"]).group(1)) for b in shown]
        assert counts == sorted(counts) and counts[-1] == steps  # redrawn forward, ends finished

    model.evaluate(x, y, batch_size=10)
    model.predict(x, batch_size=10)
    assert len(notebook.outputs) == 4
    assert re.match(
        bar_pattern(7, rf" - accuracy: {VAL} - loss: {VAL}"), notebook.outputs[2][-1]["text/plain"]
    )
    assert re.match(bar_pattern(7, ""), notebook.outputs[3][-1]["text/plain"])


def test_notebook_verbose_2_prints_plain_lines(notebook, capsys):  # B4
    x, y = make_classification(40)
    classifier().fit(x, y, epochs=2, batch_size=10, verbose=2)
    out = capsys.readouterr().out
    assert notebook.outputs == []
    assert len(re.findall(rf"^4/4 - \d+s - {STEP} - accuracy: {VAL} - loss: {VAL}$", out, re.M)) == 2


def test_not_in_a_notebook_here():
    assert progbar_logger._in_notebook() is False  # pytest is no kernel: the terminal or plain path applies
