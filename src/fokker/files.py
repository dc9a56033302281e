"""Writing files so that nothing is lost or half-written: every write goes to a temporary sibling first, is
flushed to disk and then renamed over its target (`atomic_write`), so a kill (or a power cut) leaves the
old file or the new one, never a mix. Outputs made of several files (a picture and its .npz, a report and
its metrics) are written as a `FileSet`: all new or all old. Also: SHA-256 of a file, the run folder's
lock (one writer at a time), and checking that a path can be written before anything is."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO

from fokker.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock, and run folders are not locked
    fcntl = None


def sync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, so that a rename after it survives a power cut."""
    if path.is_dir() and os.name != "posix":
        return  # folders cannot be opened for fsync on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary(path: Path) -> Path:
    """The hidden temporary sibling a file is written to before it is renamed into place: .NAME.tmp."""
    return path.with_name(f".{path.name}.tmp")


def atomic_write(path: Path, write: Callable[[Path], object], tmp: Path | None = None) -> None:
    """Call `write(tmp)` to write a temporary sibling of `path` (default `temporary(path)`; a file, or a
    folder whose files `write` flushed itself), flush it, rename it over `path` and flush the folder.
    A kill at any moment leaves `path` old or new; a temporary it leaves behind is overwritten next time."""
    path = Path(path)
    tmp = temporary(path) if tmp is None else tmp
    write(tmp)
    sync(tmp)
    if tmp.is_dir() and path.exists():
        shutil.rmtree(path)  # os.replace renames a folder only onto an empty one
    os.replace(tmp, path)
    sync(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """`text` written to `path` atomically (`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def sha256(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: Path, folder: bool, flag: str = "--out") -> None:
    """A UserError unless `path` can be written as a folder (folder=True) or a file, creating nothing: it
    must not be a file where a folder is meant (or the reverse), and its nearest existing part must be a
    folder this process may write in."""
    path = Path(path)
    if path.exists() and folder != path.is_dir():
        problem = "it is a file, not a folder" if folder else "it is a folder"
    else:
        existing = path if folder and path.exists() else next(p for p in path.parents if p.exists())
        if not existing.is_dir():
            problem = f"{existing} is a file, not a folder"
        elif not os.access(existing, os.W_OK | os.X_OK):
            problem = f"{existing} is not writable"
        else:
            return
    raise UserError(f"cannot write {flag} {path}: {problem}")


def lock_run(run: Path) -> IO | None:
    """Take the run folder's lock, RUN/.lock (created with the folder if need be), for this process; a
    UserError naming the holder if another process has it. The lock is an flock, which the OS drops when
    its holder dies, however it dies: a stale lock never blocks. Taking it changes no file (`sign_lock`
    writes the holder's pid once it starts writing the run). Close the returned file to release it (None
    where there is no flock: Windows)."""
    run.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return None
    f = os.fdopen(os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644), "r+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = f.read().strip() or "unknown"
        f.close()
        raise UserError(f"{run} is in use by another fokker train (pid {holder}); wait for it or stop it") from None
    return f


def sign_lock(lock: IO | None) -> None:
    """Write this process's pid into the lock file it holds (for the message of a refused second writer)."""
    if lock is not None:
        lock.seek(0)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()


class FileSet:
    """Files written as one set, all new or all old: a picture and its .npz, a report and its metrics.

    Each file is written to a temporary beside its target (`path(name)`). On leaving the `with` block,
    `commit` removes the old marker (the file that says the set is complete: the .npz, metrics.json),
    renames the other files into place, then the marker. A kill before the commit leaves the old set
    whole; a kill within it (renames only: microseconds) leaves the set without its marker. So a marker
    only ever sits beside files of its own set. An exception discards the temporaries; temporaries a kill
    left behind are removed by the next set that writes the same names."""

    def __init__(self, folder: Path, marker: str) -> None:
        self.folder, self.marker = Path(folder), marker
        self.temporaries: dict[str, Path] = {}

    def __enter__(self) -> FileSet:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def path(self, name: str) -> Path:
        """Where to write the file `name` of the set (a temporary with the same suffix)."""
        stem, suffix = Path(name).stem, Path(name).suffix
        for stale in self.folder.glob(f".{glob.escape(stem)}.*.tmp{glob.escape(suffix)}"):
            stale.unlink(missing_ok=True)
        self.temporaries[name] = self.folder / f".{stem}.{os.getpid()}.tmp{suffix}"
        return self.temporaries[name]

    def commit(self) -> None:
        """Put the set in place: the old marker out, the other files in, the new marker last."""
        (self.folder / self.marker).unlink(missing_ok=True)
        for name in sorted(self.temporaries, key=lambda n: n == self.marker):
            if self.temporaries[name].exists():  # a file asked for but not written (no loss curve) is no part
                os.replace(self.temporaries[name], self.folder / name)

    def discard(self) -> None:
        for tmp in self.temporaries.values():
            tmp.unlink(missing_ok=True)

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self.commit()
        finally:
            self.discard()
