"""Inputs that block a decode worker in a system call, for the concurrency and signal tests.

- `SilentServer`: a TCP server that accepts and never answers. A worker opening
  `ftp://127.0.0.1:<port>/x.mp4` (fsspec's FTP filesystem, stdlib ftplib) blocks reading the
  greeting until ftplib's 30 s timeout; `accepted` tells the test that a worker is blocked now.
- `make_fifo`: a named pipe named like a video; opening it blocks until a writer appears (when
  the decoder opens it at all: a stat check may refuse it first).
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (closed by close())."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        self.accepted = threading.Event()
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, name: str = "blocked.mp4") -> str:
        return f"ftp://127.0.0.1:{self.port}/{name}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self._connections.append(connection)
            self.accepted.set()

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self.socket.close()


def make_fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def process_group_members(pgid: int) -> list[str]:
    """`pid command` of every live (non-zombie) process in process group `pgid` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(f"{entry} {cmdline.decode(errors='replace')[:120]}")
    return members
