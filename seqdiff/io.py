"""Every file seqdiff writes goes through this module (a test checks it).

Outputs are atomic: written to a temporary file in the same directory, fsynced, then renamed over the target,
so a crash or error mid-write leaves the previous file (or none) in place, never a partial one. The one
exception is `log_file`, a plain file a subprocess streams its log into.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A file object for `path` that appears there only on `commit()`; `abort()` (or an error) discards it.

    For writers that stream many records and decide late whether the file is good (e.g. the genome cache);
    `atomic_write` is the context-manager form.
    """

    def __init__(self, path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        binary = "b" in mode
        self.file: IO = os.fdopen(fd, mode, encoding=None if binary else encoding,
                                  newline=None if binary else newline)

    def write(self, data: Any) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """`with atomic_write(path) as f: f.write(...)`: the file appears at `path` only if the block succeeds."""
    out = AtomicFile(path, mode, encoding, newline)
    try:
        yield out.file
    except BaseException:
        out.abort()
        raise
    out.commit()


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_report(prefix: str | Path, data: dict, markdown: str) -> None:
    """A benchmark's results as `<prefix>.json` (non-JSON values written with str) and `<prefix>.md`, then the
    markdown printed to stdout."""
    import json

    write_text(f"{prefix}.json", json.dumps(data, indent=2, default=str) + "\n")
    write_text(f"{prefix}.md", markdown + "\n")
    print(markdown)


def machine_info() -> dict:
    """CPU count, load average and platform: how a benchmark's timings were taken."""
    import platform

    return {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform()}


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_csv(frame: Any, path: str | Path, **to_csv: Any) -> None:
    """A pandas DataFrame as CSV (`to_csv` keyword arguments, e.g. index=False)."""
    with atomic_write(path, newline="") as f:
        frame.to_csv(f, **to_csv)


def write_array(path: str | Path, array: Any) -> None:
    """A numpy array's raw bytes (`ndarray.tofile`), e.g. a token cache read back with np.memmap."""
    with atomic_write(path, "wb") as f:
        array.tofile(f)


def write_npz(path: str | Path, **arrays: Any) -> None:
    """Named numpy arrays as an uncompressed `.npz` (`np.savez`), read back with `np.load(path)`."""
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def savefig(fig: Any, path: str | Path, **kwargs: Any) -> None:
    """A matplotlib figure; the format comes from the file suffix unless `format=` is given."""
    kwargs.setdefault("format", Path(path).suffix.lstrip(".") or None)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, **kwargs)


def save_torch(obj: Any, path: str | Path) -> None:
    """`torch.save` atomically, then fsync the directory so the rename itself survives a power loss."""
    import torch

    path = Path(path)
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    fsync_dir(path.parent)


def fsync_dir(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def log_file(path: str | Path) -> IO:
    """A plain (not atomic) text file for a log that a subprocess streams into; the caller closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w")
