"""Is a process alive, and where: what lets any tunechat process tell that the process
that owns some work (a training run, an import) is gone."""

from __future__ import annotations

import os
import socket


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def owner_gone(pid: int | None, host: str | None) -> bool:
    """The process `pid` on `host` has ended (known only on its own machine)."""
    return pid is not None and pid > 0 and host in (None, this_host()) and not pid_alive(pid)
