"""Files that appear whole or not at all: write a temporary file beside the target, ``fsync`` it,
rename it over the target, ``fsync`` the folder. A reader (or a crash at any instant) sees the old
file or the new one, never a mix; a writer killed before the rename leaves only its temporary
file, which the next write to the same target removes once that writer's process is gone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
"""Read once, at import: ``os.umask`` can only be read by setting it, which is not thread-safe."""


def _writer_alive(temporary: Path) -> bool:
    """Whether the process whose id is in the temporary file's name still runs."""
    try:
        pid = int(temporary.name.rsplit(".", 3)[-3])
    except (ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows): the rename is what we have
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporaries(target: Path) -> list[Path]:
    """The temporary files ``.NAME.PID.XXXX.tmp`` of writes to ``target``, finished or not."""
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def write_atomic(target: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temporary file, then put it in place as ``target`` (whose folder
    must exist); the file gets the permissions of any new file (``0o666`` less the umask)."""
    target = Path(target)
    for stale in temporaries(target):  # left by writers killed before their rename
        if not _writer_alive(stale):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)
    return target


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    """:func:`write_atomic` of ``text`` encoded as UTF-8."""
    return write_atomic(target, lambda handle: handle.write(text.encode()))
