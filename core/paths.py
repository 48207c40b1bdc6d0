"""Where tunechat keeps what every data home shares."""

from __future__ import annotations

import os
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
