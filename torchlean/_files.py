"""Files, shared by every layer that reads an input or saves something (checkpoints, graphs,
proof artifacts, certificates, results).

Writes are atomic: a reader never sees half a file, and an interrupted write leaves the old file in
place. The temporary file is ``.NAME.PID.XXXX.tmp`` beside the target (a rename is atomic only
within one file system); it is removed on every exit path Python sees (exceptions, SIGTERM via
``KeyboardInterrupt``-style unwinding, interpreter exit), and a temp whose writer died without
cleaning up (``kill -9``) is swept by the next atomic write into that folder, since its PID no
longer runs. Folders meant to be committed (``proofs/``) also get a ``.gitignore`` for them.

Reads of user inputs (``read_input``) open regular files only, without blocking (a FIFO, a
directory or a device is refused, never waited on), up to a size limit, and decode strict UTF-8
with the byte offset of the first bad byte in the error.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

#: the largest input file ``read_input`` reads unless told otherwise (bytes)
MAX_INPUT_BYTES = 64 * 1024 * 1024
#: the largest VNN-LIB file read (bytes). Both readers run on every property (about 2.5 s/MB for
#: the checker's, 8.5 s/MB for the lark one on this machine), so 2 MiB keeps reading under ~25 s;
#: VNN-COMP 2021's largest property is 338 KB
MAX_VNNLIB_BYTES = 2 * 1024 * 1024

_LIVE: set[str] = set()  # temps this process is writing right now
_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


class InputFileError(ValueError):
    """An input file that cannot be used: missing, not a regular file, too big, not UTF-8."""


@atexit.register
def _cleanup() -> None:
    for tmp in list(_LIVE):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def sweep_temps(folder: str | os.PathLike[str]) -> int:
    """Remove ``.NAME.PID.XXXX.tmp`` files in ``folder`` whose writer no longer runs; returns how
    many were removed."""
    n = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        m = _TEMP.match(name)
        if m and not _alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(folder, name))
                n += 1
            except OSError:
                pass
    return n


def ignore_temps(folder: str | os.PathLike[str]) -> None:
    """Give a folder meant to be committed a ``.gitignore`` for this module's temps (once)."""
    p = Path(folder) / ".gitignore"
    if not p.exists():
        try:
            p.write_text("# temporaries of torchlean's atomic writes\n.*.tmp\n")
        except OSError:
            pass


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> Path:
    """Run ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    _LIVE.add(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _LIVE.discard(tmp)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Sorted keys and a trailing newline: equal payloads give byte-identical files."""
    return atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def read_input_bytes(
    path: str | os.PathLike[str], max_bytes: int = MAX_INPUT_BYTES, what: str = "file"
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; InputFileError (one line, naming the
    file and the limit) otherwise. Never blocks on a FIFO or a device."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except OSError as e:
        raise InputFileError(f"{path}: cannot open ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise InputFileError(f"{path}: {kind}; only regular files are read (as {what})")
        if st.st_size > max_bytes:
            raise InputFileError(
                f"{path}: {st.st_size} bytes, over the {what} size limit of {max_bytes} bytes"
            )
        chunks, total = [], 0
        while True:
            try:
                b = os.read(fd, 1 << 20)
            except OSError as e:
                raise InputFileError(f"{path}: cannot read ({e.strerror})") from None
            if not b:
                break
            total += len(b)
            if total > max_bytes:  # (grew while we read)
                raise InputFileError(f"{path}: over the {what} size limit of {max_bytes} bytes")
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_input(path: str | os.PathLike[str], max_bytes: int = MAX_INPUT_BYTES, what: str = "file",
               encoding: str = "utf-8") -> str:
    """``read_input_bytes`` decoded as strict UTF-8 (a leading BOM dropped); the error names the
    byte offset of the first invalid byte."""
    data = read_input_bytes(path, max_bytes, what)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1]
        raise InputFileError(f"{path}: not valid UTF-8 (byte {e.start}: {bad!r})") from None
    return text[1:] if text.startswith("\ufeff") else text
