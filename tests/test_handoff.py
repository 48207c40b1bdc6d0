"""Handing work to other engines: training in several processes (DDP under torchrun),
and the base with an adapter merged in, loaded by plain transformers."""

import json
import shutil
import subprocess
import sys

import app
from storage import examples, runs
from supervision.jobs import Jobs
from trainer.config import TrainConfig

from helpers import VOICE, voice_examples
from serving import REPO

PROMPTS = [[{"role": "user", "content": f"Say hello number {i}."}] for i in (2, 5, 9)]


def test_two_processes_train_an_adapter_that_answers_like_one(store, tiny_model_dir,
                                                            make_engine):
    examples.add_many(store, voice_examples(16), "kept")  # below 20: none held out
    jobs = Jobs(store, tiny_model_dir)
    settings = dict(epochs=90, learning_rate=1e-2)
    one = jobs.wait(jobs.start(TrainConfig(batch_size=8, **settings)))
    # Two processes of 4 examples each: the same 8 examples per optimizer step.
    two = jobs.wait(jobs.start(TrainConfig(batch_size=4, nproc=2, **settings)))
    assert (one["status"], two["status"]) == ("succeeded", "succeeded"), two["error"]
    assert (one["metrics"]["processes"], two["metrics"]["processes"]) == (1, 2)
    assert two["metrics"]["train_loss"] < 1.5 * one["metrics"]["train_loss"] + 0.05
    engine = make_engine(store.home / "adapters")
    for prompt in PROMPTS:
        assert VOICE in engine.reply(prompt, one["adapter"])
        assert VOICE in engine.reply(prompt, two["adapter"])


LOAD_WITH_TRANSFORMERS_ONLY = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, prompts = sys.argv[1], json.loads(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
answers = []
for messages in prompts:
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
    answers.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:],
                                    skip_special_tokens=True).strip())
print(json.dumps(answers))
"""


def test_merged_export_answers_like_the_adapter_without_tunechat(tiny_model_dir, two_adapters,
                                                                 make_engine, isolated_home,
                                                                 tmp_path, capsys):
    shutil.copytree(two_adapters, isolated_home / "adapters")
    out = tmp_path / "merged"
    assert app.main(["export-model", "--adapter", "brewster", "--merged", str(out),
                     "--model", str(tiny_model_dir)]) == 0
    assert str(out) in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert "chat_template" in (out / "tokenizer_config.json").read_text() or \
        (out / "chat_template.jinja").is_file()
    expected = [make_engine(two_adapters).reply(p, "brewster")
                for p in PROMPTS]
    loaded = subprocess.run([sys.executable, "-c", LOAD_WITH_TRANSFORMERS_ONLY, str(out),
                             json.dumps(PROMPTS)], cwd=tmp_path, capture_output=True,
                            text=True, check=True)
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == expected


def test_export_errors_are_clear_and_write_nothing(tiny_model_dir, two_adapters,
                                                   isolated_home, tmp_path, capsys):
    shutil.copytree(two_adapters, isolated_home / "adapters")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    model = ["--model", str(tiny_model_dir)]
    assert app.main(["export-model", "--adapter", "nope", "--merged", str(tmp_path / "m")]
                    + model) == 1
    assert "No adapter named 'nope' to export. Choose one of: brewster, lumen" in \
        capsys.readouterr().err
    assert app.main(["export-model", "--adapter", "brewster", "--merged", str(taken)]
                    + model) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_prepared_run_is_left_to_the_users_launcher(store, tiny_model_dir, capsys):
    examples.add_many(store, voice_examples(12), "kept")
    assert app.main(["train", "--prepare-only", "--model", str(tiny_model_dir),
                     "--epochs", "1"]) == 0
    run_id = int(capsys.readouterr().out.strip())
    assert runs.get_run(store, run_id)["status"] == "queued"
    subprocess.run([sys.executable, "-m", "trainer", str(run_id), "--home", str(store.home)],
                   check=True, capture_output=True)
    assert runs.get_run(store, run_id)["status"] == "succeeded"
    other = app.main(["train", "--prepare-only", "--model", str(tiny_model_dir)])
    assert other == 0
    prepared = int(capsys.readouterr().out.strip())
    # Before: a prepared run never launched blocked every later run, with no way out.
    assert app.main(["train", "--model", str(tiny_model_dir)]) == 1
    assert f"tunechat cancel {prepared}" in capsys.readouterr().err
    assert app.main(["cancel", "--model", str(tiny_model_dir)]) == 0
    assert runs.list_runs(store, 1)[0]["status"] == "cancelled"


def test_a_walkthrough_runs_end_to_end(tiny_model_dir, tmp_path):
    """The script path only (the tiny model learns nothing here); the real numbers are
    in docs/serving-and-export.md."""
    result = subprocess.run([sys.executable, "examples/walkthrough.py", "tickets",
                             "--model", str(tiny_model_dir), "--epochs", "1",
                             "--home", str(tmp_path / "home"),
                             "--json", str(tmp_path / "tickets.json")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Imported 48 examples" in result.stdout
    assert "base: " in result.stdout and "run-1: " in result.stdout
    written = json.loads((tmp_path / "tickets.json").read_text())
    assert written["card"]["general"]["n"] == 100 and written["card_s"] > 0
