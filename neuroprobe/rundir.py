"""A run directory a user can trust: one writer, checksummed plain checkpoints, append-only metrics.

Layout::

    config.toml          the resolved experiment config (loads back to the same Experiment)
    config_history.toml  one entry per change made by ``--resume --set`` (what, from, to, when)
    metrics.csv          one row per report, appended and flushed as the run goes
    checkpoint.pt        the run's whole state as a plain state_dict (weights_only) with a SHA-256
    summary.json, recordings.npz, *.png
    .lock                held (flock) by the process writing the directory; names it

Safety:

* **one writer**: :meth:`RunDir.lock` takes an exclusive ``flock`` on ``.lock`` (released by the OS
  when the process dies, so a killed run never leaves a stale lock); a second ``run``/``--resume``
  into the directory is refused with one line naming the holder (pid, host, start time);
* **checkpoints** are written to a temporary file, fsynced and atomically renamed; the file holds
  the serialised state (plain tensors, numbers, strings, lists and dicts only) and its SHA-256, and
  is read with ``torch.load(weights_only=True)``: a file that fails the checksum or holds anything
  else (a pickle of live objects, which could run code) is refused with one line;
* **metrics** are truncated on resume to the checkpoint's last row *by content*: the checkpoint
  records the byte length and SHA-256 of metrics.csv up to its last row and that row's key
  (e.g. episode and seed); the prefix must match exactly, and everything after it (rows written
  after the checkpoint, a torn last line) is recomputed, so the finished file is byte-identical to
  an uninterrupted run's.
"""
from __future__ import annotations

import csv
import datetime as _dt
import errno
import fcntl
import hashlib
import io
import json
import os
import socket
import time
import stat
import warnings
from pathlib import Path
from typing import Any

import tomli_w
import torch

from .errors import ConfigError, NeuroprobeError

__all__ = ["RunDir", "MetricsWriter", "read_metrics", "CONFIG_NAME", "METRICS_NAME", "CHECKPOINT_NAME",
           "check_out_name"]

CONFIG_NAME = "config.toml"
HISTORY_NAME = "config_history.toml"
METRICS_NAME = "metrics.csv"
CHECKPOINT_NAME = "checkpoint.pt"
LOCK_NAME = ".lock"
CHECKPOINT_FORMAT = "neuroprobe-checkpoint-1"


def check_out_name(out: str, flag: str = "--out") -> Path:
    """``--out`` (or ``--resume``, named by ``flag``) as a path; refuses '', names with '..'
    components, and existing non-directories."""
    if not isinstance(out, str) or not out.strip():
        raise ConfigError(f"{flag} '': give a directory name, e.g. {flag} runs/my_run")
    if "\x00" in out:
        raise ConfigError(f"{flag} {out!r}: contains a NUL byte")
    p = Path(out)
    if ".." in p.parts:
        raise ConfigError(f"{flag} {out!r}: '..' is not allowed in run directory names")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {out!r}: exists and is not a directory")
    return p


class RunDir:
    """A run directory (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    metrics_path = property(lambda self: self.path / METRICS_NAME)
    checkpoint_path = property(lambda self: self.path / CHECKPOINT_NAME)
    config_path = property(lambda self: self.path / CONFIG_NAME)

    # ------------------------------------------------------------------ one writer
    def lock(self) -> None:
        """Hold the directory's lock for this process (ConfigError naming the holder if taken)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"run directory {str(self.path)!r} exists and is not a directory") from None
        except OSError as e:
            raise ConfigError(f"run directory {str(self.path)!r} cannot be created ({e.strerror})") from None
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except OSError as e:
            raise ConfigError(f"run directory {str(self.path)!r}: cannot open {LOCK_NAME} ({e.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"run directory {str(self.path)!r}: {LOCK_NAME} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"run directory {str(self.path)!r} is being written by {holder}; wait for it "
                                  f"or choose another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{_dt.datetime.now().isoformat(timespec='seconds')}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock; the file stays (harmless, names the last writer)
            self._lock_fd = None

    # ------------------------------------------------------------------ config
    def write_config(self, cfg: dict) -> None:
        atomic_write(self.config_path, tomli_w.dumps(cfg).encode())

    def append_history(self, entry: dict) -> None:
        """One ``[[change]]`` table in config_history.toml (kept, never rewritten)."""
        path = self.path / HISTORY_NAME
        # an array of tables: each append is a whole [[change]] table, so the file stays valid TOML
        # (tomli_w would write ``change = [...]``, which a second append would redefine)
        sep = "\n" if path.exists() and path.stat().st_size else ""
        with open(path, "a") as f:
            f.write(f"{sep}[[change]]\n{tomli_w.dumps(entry)}")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, state: dict) -> None:
        """Write ``state`` (a plain tree) atomically with its checksum."""
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
        outer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
                    "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}, outer)
        atomic_write(self.checkpoint_path, outer.getvalue())

    def load_checkpoint(self) -> dict | None:
        """The checkpoint's state, or None if there is none; one-line NeuroprobeError if it is refused."""
        path = self.checkpoint_path
        if not path.exists() and not path.is_symlink():
            return None
        return load_checkpoint_file(path)

    # ------------------------------------------------------------------ metrics
    def open_metrics(self, columns: list[str], key: list[str], resume: dict | None) -> "MetricsWriter":
        return MetricsWriter(self.metrics_path, columns, key, resume)


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it; the holder writes right after taking the lock,
    so an empty file means it is about to: wait a moment for the name."""
    for _ in range(50):
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
        if text.endswith(tuple("0123456789")):  # the line ends with the start time
            return text
        time.sleep(0.01)
    return text or "another process"


def load_checkpoint_file(path: Path) -> dict:
    """Read a checkpoint written by :meth:`RunDir.save_checkpoint` (weights_only, checksum verified)."""
    what = f"checkpoint {str(path)!r}"
    if not path.is_file():  # a FIFO or device would block the read forever
        raise NeuroprobeError(f"{what} refused: not a regular file")
    try:
        with warnings.catch_warnings():  # torch warns (on stderr) about foreign pickle protocols
            warnings.simplefilter("ignore")
            outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle of live objects, a torn or foreign file
        raise NeuroprobeError(f"{what} refused: {_load_failure(e)}") from None
    if not isinstance(outer, dict) or outer.get("format") != CHECKPOINT_FORMAT or "payload" not in outer:
        raise NeuroprobeError(f"{what} refused: not a neuroprobe checkpoint (format {CHECKPOINT_FORMAT})")
    payload = outer["payload"]
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise NeuroprobeError(f"{what} refused: malformed payload")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != outer.get("sha256"):
        raise NeuroprobeError(f"{what} refused: checksum mismatch (the file was changed or damaged)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise NeuroprobeError(f"{what} refused: its state {_load_failure(e)}") from None
    if not isinstance(state, dict):
        raise NeuroprobeError(f"{what} refused: its state is a {type(state).__name__}, not a table of the run's parts")
    return state


def _load_failure(e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a few words."""
    text = str(e)
    if "GLOBAL" in text or "Unsupported global" in text:
        return "holds Python objects, not plain tensors and numbers (refused: loading it could run code)"
    if isinstance(e, (EOFError, OSError)) or "zip archive" in text or "Unsupported operand" in text \
            or "weights_only" in text:
        return "unreadable (truncated, damaged or not written by neuroprobe)"
    first = text.splitlines()[0][:160] if text else ""
    return f"unreadable ({type(e).__name__}{': ' + first if first else ''})"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader (or a killed writer) never sees a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricsWriter:
    """Append-only CSV with a fixed header.

    ``resume`` (from a checkpoint: ``{"bytes": n, "sha256": h, "last_key": [...]}``) keeps exactly the
    first n bytes if their SHA-256 is h and the last row kept has the key ``last_key``; otherwise the
    file is refused (it was edited before the checkpoint's last row). Without ``resume`` the file
    starts with the header alone.
    """

    def __init__(self, path: Path, columns: list[str], key: list[str], resume: dict | None):
        self.path, self.columns, self.key = path, list(columns), list(key)
        header = (",".join(columns) + "\n").encode()
        if resume is None:
            atomic_write(path, header)
            self.rows, self._hash, self._bytes, self.last_key = 0, hashlib.sha256(header), len(header), None
        else:
            if path.exists() and not path.is_file():  # a FIFO or device would block the read forever
                raise NeuroprobeError(f"{str(path)!r} is not a regular file; cannot resume")
            data = path.read_bytes() if path.exists() else b""
            n = int(resume["bytes"])
            prefix = data[:n]
            if len(prefix) < n or hashlib.sha256(prefix).hexdigest() != resume["sha256"]:
                raise NeuroprobeError(f"{str(path)!r} does not match the checkpoint (its first {n} bytes were changed "
                                      f"or lost); cannot resume: start a new run")
            if not prefix.startswith(header):
                raise NeuroprobeError(f"{str(path)!r} has other columns than {columns}; cannot resume")
            lines = prefix.decode().splitlines()
            last = lines[-1].split(",") if len(lines) > 1 else None
            if last is not None and [last[columns.index(k)] for k in key] != list(resume["last_key"]):
                raise NeuroprobeError(f"{str(path)!r}: the row at the checkpoint has key {last} but the checkpoint "
                                      f"names {resume['last_key']}; cannot resume")
            with open(path, "r+b") as f:
                f.truncate(n)
            self.rows, self._hash, self._bytes = int(resume["rows"]), hashlib.sha256(prefix), n
            self.last_key = resume["last_key"]
        self._f = open(path, "ab")

    def write(self, row: dict) -> None:
        buf = io.StringIO()
        cells = [_fmt(row[c]) for c in self.columns]
        csv.writer(buf, lineterminator="\n").writerow(cells)
        data = buf.getvalue().encode()
        self._f.write(data)
        self._f.flush()
        self._hash.update(data)
        self._bytes += len(data)
        self.rows += 1
        self.last_key = [cells[self.columns.index(k)] for k in self.key]

    def position(self) -> dict:
        """What a checkpoint records to resume this file by content."""
        return {"bytes": self._bytes, "sha256": self._hash.hexdigest(), "rows": self.rows,
                "last_key": list(self.last_key) if self.last_key is not None else []}

    def close(self) -> None:
        self._f.close()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def read_metrics(path: str | Path) -> dict[str, list]:
    """Read a metrics.csv into columns of floats (or strings where not numeric); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols: dict[str, list] = {c: [] for c in reader.fieldnames or []}
            for row in reader:
                for c, v in row.items():
                    if c is None or c not in cols:
                        raise ConfigError(f"{str(path)!r}: row {reader.line_num} has more cells than the header")
                    if v is None:
                        raise ConfigError(f"{str(path)!r}: row {reader.line_num} has fewer cells than the header")
                    try:
                        cols[c].append(float(v))
                    except (TypeError, ValueError):
                        cols[c].append(v)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{str(path)!r} is not a readable CSV ({e})") from None
    return cols


def dump_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2).encode())
