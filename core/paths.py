"""Where tunechat keeps what every data home shares."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def model_cache_dir() -> Path:
    """$TUNECHAT_CACHE, else ~/.cache/tunechat: base models converted once, and what is
    worked out once per base model (the replay answers), shared by every data home."""
    configured = os.environ.get("TUNECHAT_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tunechat"


def weights_written(folder: Path) -> int:
    """When a model folder's weights were last written (ns): what is worked out once per
    base model is worked out again after its weights change."""
    return max((w.stat().st_mtime_ns for w in Path(folder).glob("*.safetensors")), default=0)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(scratch)` writes the file beside `path`, then it takes `path`'s place: a
    crash leaves the old file or the new one (or none), never half of one. The folder
    must exist: a mistyped export path is an error, not a new folder."""
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                       dir=path.parent)
    os.close(handle)
    try:
        write(Path(scratch))
        os.replace(scratch, path)
    finally:
        Path(scratch).unlink(missing_ok=True)
