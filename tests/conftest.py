from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests' own helpers (tiny, serving)

from helpers import Recorder  # noqa: E402
from tiny import build_tiny_model  # noqa: E402

# The tests never reach a hub; a lookup that tried would fail slowly instead of at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


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
    from assistant.bases import load_model
    from assistant.engine import ChatEngine

    return ChatEngine(load_model(str(tiny_model_dir)))


@pytest.fixture(scope="session")
def real_engine():
    """The embedded SmolLM2-135M-Instruct (converted once into the model cache)."""
    from assistant.bases import load_model
    from assistant.engine import ChatEngine

    return ChatEngine(load_model(None))


@pytest.fixture
def store(isolated_home):
    from storage.db import open_store

    return open_store(isolated_home)


@pytest.fixture
def ctx(store, tiny_model_dir):
    """The services over a fresh home: the tiny model (adapters from the home), and
    training runs of the tiny model."""
    from assistant.bases import load_model
    from assistant.engine import ChatEngine
    from services.context import Context
    from supervision.jobs import Jobs

    engine = ChatEngine(load_model(str(tiny_model_dir)), adapters_dir=store.home / "adapters")
    return Context(store, engine, Jobs(store, tiny_model_dir))


@pytest.fixture
def make_engine(tiny_model_dir):
    """A fresh engine of the tiny model over an adapters folder."""
    def make(adapters_dir, **kwargs):
        from assistant.bases import load_model
        from assistant.engine import ChatEngine

        return ChatEngine(load_model(str(tiny_model_dir)), adapters_dir=adapters_dir, **kwargs)

    return make


@pytest.fixture(scope="session")
def two_adapters(tiny_model_dir, tmp_path_factory):
    """Two adapters that answer "Say hello number 3." differently from the base."""
    from trainer.config import TrainConfig
    from trainer.dataset import RunData
    from trainer.sft import run_sft

    from helpers import voice_examples

    folder = tmp_path_factory.mktemp("adapters")
    for name, voice in [("brewster", "Cheers, Brewster."), ("lumen", "Ride on, Lumen.")]:
        run_sft(TrainConfig(epochs=10, batch_size=8, learning_rate=1e-2),
                RunData(voice_examples(16, voice)), tiny_model_dir, folder / name,
                tmp_path_factory.mktemp("work"), Recorder())
    return folder


@pytest.fixture
def page(tmp_path):
    """A headless Chromium page (Debian's chromium; make test installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


@pytest.fixture
def screenshot_on_failure(request, page, tmp_path):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'failure.png'}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Let fixtures see whether the test passed (for screenshots on failure)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
