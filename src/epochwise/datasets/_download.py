"""Download a file once into the cache: SHA-256 verified, written atomically, resumed after an interruption.

Only the standard library is used (``urllib``). A download goes to ``<name>.part`` next to its final
place; a ``.part`` left by an interrupted run is continued with an HTTP ``Range`` request, and the file
is renamed into place (``os.replace``) only after its SHA-256 matches, so the cache never holds a
half-written or unverified file under its real name.

Example::

    path = fetch("t10k-labels-idx1-ubyte.gz", sha256="f7ae60f9...", mirrors=["https://.../mnist/"],
                 folder=cache_dir() / "mnist")
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DownloadError", "cache_dir", "fetch", "sha256_of"]

ENV_VAR = "EPOCHWISE_DATA_DIR"
_CHUNK = 1 << 16
_ATTEMPTS_PER_MIRROR = 3  # a truncated transfer is resumed up to this many times per mirror


class DownloadError(OSError):
    """No mirror delivered the file with the expected SHA-256; the message says what to do instead."""


class _Truncated(Exception):
    """The server closed the connection before sending Content-Length bytes (the .part is kept)."""


def cache_dir() -> Path:
    """``$EPOCHWISE_DATA_DIR`` if set, else ``~/.cache/epochwise``. Example: ``cache_dir() / "mnist"``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "epochwise"


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in chunks. Example: ``sha256_of("t10k-labels-idx1-ubyte.gz")``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _transfer(url: str, part: Path, timeout: float, verbose: bool) -> None:
    """Append the rest of ``url`` to ``part``; restart from zero when the server ignores ``Range``."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "epochwise"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) mirrors only
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part is already as long as the file (or longer): start over
            part.unlink()
            raise _Truncated() from err
        raise
    with response:
        resumed = bool(have) and response.status == 206
        if have and not resumed:  # the server sent the whole file: drop what we had
            have = 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None and length.isdigit() else None
        if verbose:
            total = f" ({(have + expected) / 1e6:.1f} MB)" if expected is not None else ""
            what = f"Resuming at {have:,} bytes: {url}" if resumed else f"Downloading {url}"
            print(f"{what}{total}", file=sys.stderr, flush=True)
        received = 0
        with open(part, "ab" if resumed else "wb") as out:
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
            except (OSError, http.client.HTTPException) as err:  # reset, timeout mid-transfer: resume later
                raise _Truncated() from err
    if expected is not None and received < expected:
        raise _Truncated()


def fetch(
    filename: str,
    *,
    sha256: str,
    mirrors: Sequence[str],
    folder: str | os.PathLike,
    timeout: float = 30.0,
    verbose: bool = True,
    offline_hint: str = "",
) -> Path:
    """``folder/filename``, downloaded from the first mirror that delivers it with the right SHA-256.

    A cached file is used when its checksum matches (a mismatching one is downloaded again).
    ``mirrors`` are base URLs ending in ``/``. A transfer cut short is resumed with ``Range`` up to
    three times per mirror; a file with the wrong checksum is deleted and the next mirror is tried.
    Raises :class:`DownloadError` naming every mirror's failure, followed by ``offline_hint``.

    Example: ``fetch("t10k-labels-idx1-ubyte.gz", sha256=..., mirrors=MIRRORS, folder=cache_dir() / "mnist")``
    """
    folder = Path(folder)
    dest = folder / filename
    expected = sha256.lower()
    if dest.exists():
        if sha256_of(dest) == expected:
            return dest
        if verbose and mirrors:
            print(f"{dest} does not match its SHA-256; downloading it again", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / (filename + ".part")
    failures: list[str] = []
    for base in mirrors:
        url = base + filename
        failure = f"{url}: the transfer was cut short {_ATTEMPTS_PER_MIRROR} times"
        for _ in range(_ATTEMPTS_PER_MIRROR):
            started_from = part.stat().st_size if part.exists() else 0
            try:
                _transfer(url, part, timeout, verbose)
            except _Truncated:
                continue  # the .part keeps what arrived; the next attempt asks for the rest
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
                failure = f"{url}: {getattr(err, 'reason', None) or err}"
                break
            got = sha256_of(part)
            if got == expected:
                os.replace(part, dest)  # atomic on the same file system
                return dest
            part.unlink()
            failure = f"{url}: SHA-256 {got} does not match the expected {expected}"
            if not started_from:
                break
            # the mismatch may come from an old .part (e.g. another mirror's): once more from scratch
        failures.append(failure)
    tried = "\n".join(f"  - {line}" for line in failures) or "  (no mirror to try: downloading is off)"
    raise DownloadError(f"could not download {filename!r} into {folder}:\n{tried}\n{offline_hint}".rstrip())
