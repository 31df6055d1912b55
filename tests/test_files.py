"""Files on real faults: a full disk, a read-only folder, file modes, and files that are not checkpoints.

The full disk and the read-only folder are real tmpfs mounts (root only; skipped otherwise), not faked
exceptions.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from conftest import classifier, make_classification
from safetensors.torch import save_file
from torch import nn

import epochwise as ew


def _mount(folder, options):
    """Mount a tmpfs on ``folder`` (created) with ``options``; skip the test when that is impossible."""
    if getattr(os, "geteuid", lambda: 1)() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    return folder


def _unmount(folder):
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # busy: detach it anyway


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB file system."""
    folder = _mount(tmp_path / "disk", "size=64k")
    try:
        yield folder
    finally:
        _unmount(folder)


@pytest.fixture
def read_only(tmp_path):
    """A real read-only file system (chmod does not stop root)."""
    folder = _mount(tmp_path / "ro", "ro")
    try:
        yield folder
    finally:
        _unmount(folder)


def big_model() -> ew.Model:
    """About 80 KB of weights: more than the 64 KiB disk holds."""
    model = ew.Model(nn.Linear(100, 200), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    return model


SAVES = {
    "save_weights .pt": ("w.pt", lambda model, path: model.save_weights(path)),
    "save_weights .safetensors": ("w.safetensors", lambda model, path: model.save_weights(path)),
    "save": ("ckpt.pt", lambda model, path: model.save(path)),
}


# --- a full disk ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SAVES)
def test_full_disk_raises_an_oserror_naming_the_file_and_keeps_the_old_one(full_disk, kind):
    name, save = SAVES[kind]
    path = full_disk / name
    small = ew.Model(nn.Linear(2, 1), device="cpu")
    small.compile(optimizer="sgd", loss="mse")
    save(small, path)  # fits on the disk
    before, used = path.read_bytes(), shutil.disk_usage(full_disk).used
    with pytest.raises(OSError) as info:  # torch itself raises RuntimeError("... unexpected pos ...") here
        save(big_model(), path)
    assert info.value.errno == errno.ENOSPC
    assert "No space left on device" in str(info.value) and repr(str(path)) in str(info.value)
    assert ".tmp" not in str(info.value)
    assert path.read_bytes() == before  # the previous file is untouched
    assert sorted(os.listdir(full_disk)) == [name]  # no temporary file left
    assert shutil.disk_usage(full_disk).used == used  # nor one deleted but held open


# --- a read-only folder --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SAVES)
def test_read_only_folder_names_the_target_not_the_temporary_file(read_only, kind):
    name, save = SAVES[kind]
    target = read_only / "sub" / name  # the missing parent cannot be made either
    for path in (read_only / name, target):
        with pytest.raises(OSError) as info:
            save(classifier(), path)
        assert info.value.errno == errno.EROFS
        assert repr(str(path)) in str(info.value) and ".tmp" not in str(info.value), str(info.value)
        assert "writable" in str(info.value)  # what to do


# --- file modes ----------------------------------------------------------------------------------
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("kind", SAVES)
def test_new_file_gets_the_umask_mode_and_an_overwritten_one_keeps_its_mode(tmp_path, umask_027, kind):
    name, save = SAVES[kind]
    path = tmp_path / name
    reference = tmp_path / "reference"
    with open(reference, "w"):  # what open() gives a new file under this umask
        pass
    save(classifier(), path)
    assert oct(os.stat(path).st_mode & 0o7777) == oct(os.stat(reference).st_mode & 0o7777) == oct(0o640)
    os.chmod(path, 0o604)  # e.g. readable by a model server running as another user
    save(classifier(), path)
    assert oct(os.stat(path).st_mode & 0o7777) == oct(0o604)


def test_checkpoint_callback_files_get_the_umask_mode(tmp_path, umask_027):
    x, y = make_classification(16)
    classifier().fit(x, y, epochs=1, verbose=0, callbacks=[ew.callbacks.ModelCheckpoint(tmp_path / "m.pt")])
    assert oct(os.stat(tmp_path / "m.pt").st_mode & 0o7777) == oct(0o640)


# --- files that are not checkpoints --------------------------------------------------------------
class Settings:  # a plain Python object: pickling it stores a reference to this class
    lr = 0.1


def _weights_pt(path):
    torch.save(classifier().module.state_dict(), path)


def _cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _random(path):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert not data.startswith((b"PK", b"\x80")) and data[8:9] != b"{"  # neither zip, pickle nor safetensors
    path.write_bytes(data)


def _truncated_pt(path):
    _weights_pt(path)
    _cut(path)


def _truncated_safetensors(path):
    save_file({k: v.contiguous() for k, v in classifier().module.state_dict().items()}, str(path))
    _cut(path, 0.8)


def _zip(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
    path.write_bytes(buffer.getvalue())


# name, how to make it, what the error says the file is, what it says to do
BAD_FILES = [
    ("random.pt", _random, "is not a checkpoint", "model.save_weights()"),
    ("random.safetensors", _random, "is not a safetensors file", "model.save_weights()"),
    ("empty.pt", lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)", "Save it again"),
    ("empty.safetensors", lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)", "Save it again"),
    ("log.pt", lambda p: p.write_text("epoch,loss\n0,0.93\n"), "is a text file .*'epoch,loss'", "model.save()"),
    ("tensor.pt", lambda p: torch.save(torch.zeros(3, 4), p), r"a single tensor of shape \(3, 4\), not a state dict",
     "model.save_weights()"),
    ("truncated.pt", _truncated_pt, "is truncated", "save it again"),
    ("truncated.safetensors", _truncated_safetensors, "is truncated", "save it again"),
    ("archive.pt", _zip, "is a zip archive but not a PyTorch checkpoint", "ModelCheckpoint"),
    ("settings.pt", lambda p: p.write_bytes(pickle.dumps({"settings": Settings()})),
     "holds pickled Python objects", "only if you trust it"),
]


@pytest.mark.parametrize(("name", "make", "what", "todo"), BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, name, make, what, todo):
    path = tmp_path / name
    make(path)
    for load in (classifier().load_weights, classifier().load):
        with pytest.raises(ValueError, match=what) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(repr(str(path))), message
        assert todo in message, message
        if not name.startswith("settings"):
            assert "pickled" not in message  # random bytes are not a false "pickle" diagnosis


def test_resume_from_a_truncated_file_says_so(tmp_path):
    path = tmp_path / "last.pt"
    _truncated_pt(path)
    x, y = make_classification(16)
    with pytest.raises(ValueError, match=f"{path.name}' is truncated"):
        classifier().fit(x, y, epochs=1, verbose=0, resume_from=path)


def test_loading_a_directory_names_it(tmp_path):
    folder = tmp_path / "weights.pt"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        classifier().load_weights(folder)
