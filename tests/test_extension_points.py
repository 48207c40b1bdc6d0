"""Each extension point is one place (docs/architecture.md): a dummy one added there
reaches every edge that lists its kind, with no other edit."""

import json

import gradio as gr
import pytest

import app
from files import formats
from storage import examples
from trainer import objectives
from trainer.config import TrainConfig
from web import app as web_app
from web import examples as examples_tab


def _from_qa(record: dict) -> list[dict]:
    return examples.validate_messages([{"role": "user", "content": record["q"]},
                                       {"role": "assistant", "content": record["a"]}])


def _to_qa(example) -> dict:
    return {"q": example.messages[-2]["content"], "a": example.messages[-1]["content"]}


def test_a_data_format_is_one_entry_in_formats(monkeypatch, store, tmp_path, capsys):
    monkeypatch.setitem(formats.FORMATS, "qa", formats.Format(
        "qa", "question and answer JSONL", "q", _from_qa, _to_qa, signature=("q",)))
    source = tmp_path / "faq.jsonl"
    source.write_text(json.dumps({"q": "Open on Sundays?", "a": "No, closed."}) + "\n")
    home = ["--home", str(store.home)]
    assert app.main(["import", str(source), "--format", "qa", "--threshold", "0"] + home) == 0
    assert app.main(["import", str(source)] + home) == 0  # auto-detected: already there
    assert "1 already present" in capsys.readouterr().out
    [stored] = examples.list_examples(store)
    assert stored.answer == "No, closed."
    out = tmp_path / "back.jsonl"
    assert app.main(["export", str(out), "--format", "qa"] + home) == 0
    assert json.loads(out.read_text()) == {"q": "Open on Sundays?", "a": "No, closed."}
    assert ("question and answer JSONL", "qa") in examples_tab.export_choices()


def run_echo(*args, **kwargs):
    """A dummy recipe: the registry finds it by name."""


def test_a_training_objective_is_one_entry_in_objectives(monkeypatch, ctx, capsys):
    monkeypatch.setitem(objectives.OBJECTIVES, "echo", objectives.Objective(
        "echo", "learns nothing (a test)", "test_extension_points:run_echo"))
    assert TrainConfig(objective="echo").objective == "echo"  # validated against the list
    assert objectives.OBJECTIVES["echo"].recipe() is run_echo
    with pytest.raises(SystemExit):
        app.main(["train", "--help"])
    assert "echo: learns nothing (a test)" in capsys.readouterr().out
    built = web_app.build_app(ctx)
    [offered] = [b for b in built.blocks.values() if getattr(b, "elem_id", None) == "objective"]
    assert "echo" in [value for _, value in offered.choices]  # the Train tab offers it


def test_a_tab_is_one_entry_in_tabs(monkeypatch, ctx):
    def build(ui):
        gr.Markdown("Hello from a new tab", elem_id="dummy-tab-text")
        ui.model_list("Model", elem_id="dummy-model")

    monkeypatch.setattr(web_app, "TABS", web_app.TABS + [("Dummy", "dummy", build)])
    built = web_app.build_app(ctx)
    tabs = [b for b in built.blocks.values() if isinstance(b, gr.Tab)]
    assert "Dummy" in [t.label for t in tabs]
    ids = {getattr(b, "elem_id", None) for b in built.blocks.values()}
    assert {"dummy-tab-text", "dummy-model"} <= ids


def test_a_baseline_is_one_entry_in_baselines(monkeypatch, ctx):
    """A way of answering without training: a model name everywhere, measured by every
    report card, counted by the verdict as an option without training, coloured."""
    from services import contenders, models, names, report
    from web import cards

    pirate = contenders.Baseline(
        "base+pirate", lambda ctx: contenders.Contender("base+pirate", "base",
                                                        system="Talk like a pirate."),
        lambda ctx: "", label="The plain model as a pirate",
        details="the base model told to talk like a pirate", colour="#123456")
    monkeypatch.setitem(contenders.BASELINES, "base+pirate", pirate)
    assert "base+pirate" in models.model_names(ctx)  # every model list
    assert models.contender(ctx, "base+pirate").system == "Talk like a pirate."
    assert names.label(ctx, "base+pirate") == "The plain model as a pirate"
    assert names.details(ctx, "base+pirate") == "the base model told to talk like a pirate"
    lineup, _ = report.lineup(ctx, "run-1", None)
    assert "base+pirate" in lineup
    card = {"rows": [{"answers": {n: {"score": 1.0} for n in ("base", "base+pirate",
                                                              "run-1")}}],
            "contenders": [{"name": n} for n in ("base", "base+pirate", "run-1")]}
    assert report._scored(card)[2] == ["base", "base+pirate"]  # the verdict's baselines
    assert cards.bar_color("base+pirate") == "#123456"
    unready = contenders.Baseline("base+parrot", pirate.answers,
                                  lambda ctx: "set up the parrot first", "", "", "#000000")
    monkeypatch.setitem(contenders.BASELINES, "base+parrot", unready)
    assert "base+parrot" not in models.model_names(ctx)
    assert {"name": "base+parrot", "why": "set up the parrot first"} in \
        report.lineup(ctx, "run-1", None)[1]
