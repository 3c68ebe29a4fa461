"""A file that rows are appended to: opened with O_APPEND (0600), so several processes' writes
never interleave; reopened at its path when it was moved (log rotation) or a write failed."""

from __future__ import annotations

import os
from pathlib import Path


class AppendFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: int | None = None

    def open(self) -> None:
        """(Re)open the file at its path, and end a line torn by a crash or a full disk."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the service's own user alone: rows hold hashed caller ids and the admins' actions
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._inode = os.fstat(self._fd).st_ino
        if not _ends_with_newline(self.path):
            os.write(self._fd, b"\n")

    def write(self, data: bytes) -> tuple[int, OSError | None]:
        """How many bytes reached the file, and the error that stopped the rest (the file is
        then closed: the next write reopens it, after a remount or on a new disk)."""
        if not data:
            return 0, None
        done = 0
        try:
            if self._fd is None or self._moved():
                self.open()
            assert self._fd is not None
            while done < len(data):  # a regular file takes it in one write; this is for the odd
                done += os.write(self._fd, data[done:])  # short write of a disk that fills
        except OSError as exc:
            self.close()
            return done, exc
        return done, None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _moved(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return True


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
