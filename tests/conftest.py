from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests' own helpers (tiny, serving)

from tiny import build_tiny_model  # noqa: E402

# The tests never reach a hub; a lookup that tried would fail slowly instead of at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own data home; the model cache stays shared (as in real use)."""
    home = tmp_path / "home"
    monkeypatch.setenv("TUNECHAT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from assistant.engine import ChatEngine
    from assistant.models import load_model

    return ChatEngine(load_model(str(tiny_model_dir)))


@pytest.fixture(scope="session")
def real_engine():
    """The embedded SmolLM2-135M-Instruct (converted once into the model cache)."""
    from assistant.engine import ChatEngine
    from assistant.models import load_model

    return ChatEngine(load_model(None))


@pytest.fixture
def store(isolated_home):
    from storage.db import open_store

    return open_store(isolated_home)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Let fixtures see whether the test passed (for screenshots on failure)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
