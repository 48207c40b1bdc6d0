"""Which code a run was trained with, recorded on the run for its lineage."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def code_version() -> str:
    """"tunechat 0.1.0", plus the git commit (and "+changes") when run from a checkout."""
    try:
        version = f"tunechat {metadata.version('tunechat')}"
    except metadata.PackageNotFoundError:
        version = "tunechat (not installed)"
    if not (SOURCE / ".git").exists():
        return version
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=SOURCE,
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=SOURCE, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} (git {commit}{'+changes' if dirty.strip() else ''})" if commit else version
