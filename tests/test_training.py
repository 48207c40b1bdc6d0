"""Training on the tiny model: weights, reload, cancel, kill -9, auto-start, failures."""

import json
import os
import signal
import threading
import time

import pytest
import torch

from services import training
from services.context import Context
from storage import examples, runs
from storage.placement import choose_held_out, held_out_count
from storage.runs import RunExample
from supervision.jobs import Jobs
from trainer.common import SanityError, check_examples, last_complete_checkpoint
from trainer.config import ConfigError, TrainConfig
from trainer.dataset import RunData
from trainer.sft import run_sft

from helpers import Recorder, assert_requests_get_their_own_adapter, fill, voice_examples


def test_lora_moves_adapter_weights_not_base_weights(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = TrainConfig(epochs=2, batch_size=4, learning_rate=5e-3)
    result = run_sft(config, RunData.split(voice_examples(24)), tiny_model_dir,
                     tmp_path / "adapter", tmp_path / "work", Recorder())
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                      result.adapter_dir)
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # B starts at zero
    merged = tuned.get_base_model().state_dict()
    for name, value in before.items():
        key = name.replace(".weight", ".base_layer.weight")
        assert torch.equal(merged.get(key, merged.get(name)), value), name
    assert result.metrics["eval_loss_after"] < result.metrics["eval_loss_before"]
    assert (result.adapter_dir / "tunechat.json").is_file()
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_replay_mixes_in_the_bases_own_answers_written_once(tiny_model_dir, tmp_path,
                                                            monkeypatch):
    """Replay adds the base's greedy answers to everyday prompts beside the user's
    examples (a share of them), on the top layers only when asked; the answers are kept
    and the next run reuses them."""
    from core.paths import model_cache_dir
    from trainer import replay

    monkeypatch.setenv("TUNECHAT_CACHE", str(tmp_path / "cache"))
    config = TrainConfig(epochs=1, batch_size=4, replay=0.25, upper_layers=0.5)
    data = RunData.split(voice_examples(16))
    recorder = Recorder()
    result = run_sft(config, data, tiny_model_dir, tmp_path / "a", tmp_path / "work", recorder)
    assert result.metrics["replay_examples"] == 4 and result.metrics["train_examples"] == 16
    assert recorder.total == -(-20 // 4)  # one epoch over 16 examples and 4 replayed
    cache = replay.cache_file(model_cache_dir(), tiny_model_dir)
    kept = json.loads(cache.read_text())
    assert list(kept) == replay.PROMPTS[:4] and all(isinstance(a, str) for a in kept.values())
    adapter = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert adapter["layers_to_transform"] == [1]  # the tiny model's last of 2 blocks
    cache.write_text(json.dumps({p: f"Kept answer {i}." for i, p in enumerate(kept)}))
    again = replay.examples(None, None, 4, cache)  # no model needed: all kept
    assert again[0][-1]["content"] == "Kept answer 0."


def test_adapter_reloads_with_the_same_output(tiny_model_dir, tmp_path, isolated_home):
    from assistant.bases import load_model
    from assistant.engine import ChatEngine

    out = isolated_home / "adapters" / "voice"
    run_sft(TrainConfig(epochs=8, batch_size=8, learning_rate=1e-2), RunData(voice_examples(16)),
            tiny_model_dir, out, tmp_path / "work", Recorder())
    question = [{"role": "user", "content": "Say hello number 3."}]
    first = ChatEngine(load_model(str(tiny_model_dir)), adapters_dir=out.parent)
    second = ChatEngine(load_model(str(tiny_model_dir)), adapters_dir=out.parent)
    assert first.adapters() == ["base", "voice"]
    tuned = first.reply(question, "voice")
    assert tuned == second.reply(question, "voice")
    assert first.reply(question, "base") == second.reply(question, "base") != tuned


def test_cancel_stops_at_the_next_step_and_saves_no_adapter(tiny_model_dir, tmp_path):
    recorder = Recorder(cancel_at=2)
    run_sft(TrainConfig(epochs=5, batch_size=2), RunData(voice_examples(16)), tiny_model_dir,
            tmp_path / "adapter", tmp_path / "work", recorder)
    assert max(recorder.steps) < recorder.total
    assert not (tmp_path / "adapter").exists()


def test_sanity_checks_refuse_bad_runs(tiny_engine):
    tokenizer = tiny_engine.tokenizer
    with pytest.raises(SanityError, match="Only 3 examples"):
        check_examples(TrainConfig(), voice_examples(3), tokenizer)
    long = voice_examples(12)
    long[5][0]["content"] = "word " * 400
    with pytest.raises(SanityError, match="Example 6 .* tokens, longer than the limit"):
        check_examples(TrainConfig(), long, tokenizer)


def test_a_template_that_never_ends_a_turn_is_refused(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + "
                               "'\\n' }}{% endfor %}")
    with pytest.raises(SanityError, match="never stop talking"):
        check_examples(TrainConfig(), voice_examples(12), tokenizer)


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="method"):
        TrainConfig(method="full")
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig(learning_rate=5)
    # Default epochs follow the answers' length: the walkthroughs' training sets
    assert TrainConfig().epochs_for(2981) == 2  # 38 answers of two sentences
    assert TrainConfig().epochs_for(1618) == 3  # 31 orders as JSON
    assert TrainConfig().epochs_for(321) == 4  # 41 one-word labels
    assert TrainConfig().epochs_for(10**6) == 2 and TrainConfig(epochs=3).epochs_for(321) == 3


def test_held_out_size_follows_the_data():
    assert [held_out_count(n) for n in (10, 19, 20, 45, 100, 200, 1000)] == \
        [0, 0, 5, 7, 15, 30, 30]


def test_held_out_examples_stay_held_out_and_never_come_from_the_parent():
    rows = [RunExample(i, "train", "kept", m) for i, m in enumerate(voice_examples(60))]
    held = choose_held_out(rows, set(), set())
    assert len(held) == 9
    more = rows + [RunExample(i, "train", "kept", m)
                   for i, m in enumerate(voice_examples(80)[60:], start=60)]
    assert held <= choose_held_out(more, set(), held)  # the same ones, whatever was added
    parent = [r for r in rows if r.example_id not in held]
    child = choose_held_out(more, parent, held)
    assert not child & {r.example_id for r in parent} and len(child) == held_out_count(80)


# The trainer as a process, driven like the app drives it.

def test_run_in_its_own_process_records_everything(store, tiny_model_dir):
    fill(store, 24)
    jobs = Jobs(store, tiny_model_dir)
    run = jobs.wait(jobs.start(TrainConfig(epochs=2, batch_size=4)))
    assert run["status"] == "succeeded", run["error"]
    assert run["adapter"] == f"run-{run['id']}" and run["example_count"] == 24
    lineage = training.lineage(Context(store), run["id"])
    assert (len(lineage.train), len(lineage.held_out)) == (19, 5)
    assert run["metrics"]["eval_examples"] == 5 and run["code_version"].startswith("tunechat")
    assert run["step"] == run["total_steps"] > 0 and run["losses"]
    assert {"eval_loss_before", "eval_loss_after", "tokens_per_second"} <= set(run["metrics"])
    assert (store.home / "adapters" / run["adapter"] / "tunechat.json").is_file()
    assert runs.latest_adapter(store) == run["adapter"]


def test_a_run_starts_in_the_trainer_kept_ready_and_the_next_waits_after_it(
        store, tiny_model_dir):
    fill(store, 24)
    jobs = Jobs(store, tiny_model_dir, standby=True)
    jobs.prepare_standby()
    ready = jobs._standby
    assert ready is not None
    try:
        run = jobs.wait(jobs.start(TrainConfig(epochs=1, batch_size=4)))
        assert run["status"] == "succeeded", run["error"]
        assert run["pid"] == ready.pid  # the waiting process trained it
        deadline = time.monotonic() + 30  # the next one starts once the run is over
        while jobs._standby in (None, ready) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert jobs._standby not in (None, ready) and jobs._standby.poll() is None
        jobs._standby.kill()  # a standby that died is passed over: a fresh process trains
        jobs._standby.wait()
        run = jobs.wait(jobs.start(TrainConfig(epochs=1, batch_size=4)))
        assert run["status"] == "succeeded", run["error"]
    finally:
        if jobs._standby is not None:
            jobs._standby.kill()


def test_only_one_run_at_a_time(store, tiny_model_dir):
    fill(store, 24)
    jobs = Jobs(store, tiny_model_dir)
    first = jobs.start(TrainConfig(epochs=1, batch_size=4))
    with pytest.raises(runs.RunActive, match=f"#{first}"):
        jobs.start(TrainConfig())
    jobs.wait(first)


def test_kill_9_marks_the_run_failed_and_resume_finishes_it(store, tiny_model_dir):
    fill(store, 40)
    before = [e.messages for e in examples.list_examples(store)]
    jobs = Jobs(store, tiny_model_dir)
    run_id = jobs.start(TrainConfig(epochs=30, batch_size=2, save_every=5))
    deadline = time.monotonic() + 120
    while runs.get_run(store, run_id)["step"] < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    killed_at = time.monotonic()
    os.kill(runs.get_run(store, run_id)["pid"], signal.SIGKILL)
    while runs.get_run(store, run_id)["status"] == "running":
        time.sleep(0.05)
    assert time.monotonic() - killed_at < 5
    run = runs.get_run(store, run_id)
    assert run["status"] == "failed" and "SIGKILL" in run["error"]
    assert [e.messages for e in examples.list_examples(store)] == before
    checkpoint = last_complete_checkpoint(store.home / "runs" / str(run_id))
    assert checkpoint is not None
    jobs.resume(run_id)
    run = jobs.wait(run_id)
    assert run["status"] == "succeeded", run["error"]
    # The resumed process records losses only from the checkpoint's step onward.
    assert run["losses"][0]["step"] > int(checkpoint.rsplit("-", 1)[1]) - 1 > 0


def test_cancel_through_jobs(store, tiny_model_dir):
    fill(store, 24)
    jobs = Jobs(store, tiny_model_dir)
    run_id = jobs.start(TrainConfig(epochs=6, batch_size=2))
    while runs.get_run(store, run_id)["step"] < 2:
        time.sleep(0.1)
    jobs.cancel(run_id)
    run = jobs.wait(run_id)
    assert run["status"] == "cancelled" and run["adapter"] is None
    resume_when_stopped(jobs, run_id)
    run = jobs.wait(run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["adapter"] == f"run-{run_id}"


def resume_when_stopped(jobs, run_id):
    """Resume at once: refused only while the old process is still exiting."""
    from supervision.jobs import StillStopping

    while True:
        try:
            return jobs.resume(run_id)
        except StillStopping:
            time.sleep(0.1)


def test_dead_runs_are_failed_on_restart(store):
    run_id = runs.create_run(store, {}, [])
    runs.update_run(store, run_id, status="running", pid=2**22 + 12345)
    assert runs.settle_dead_runs(store) == [run_id]
    assert runs.get_run(store, run_id)["status"] == "failed"


def test_autostart_fires_once_when_two_sessions_cross_the_threshold(store, tiny_model_dir):
    runs.set_setting(store, "auto_train_threshold", 20)
    fill(store, 19)
    sessions = [Context(store, jobs=Jobs(store, tiny_model_dir)) for _ in range(2)]
    assert training.after_examples_added(sessions[0]) is None
    examples.add_example(store, voice_examples(21)[20], "kept")
    started, barrier = [], threading.Barrier(2)

    def cross(session):
        barrier.wait()
        started.append(training.after_examples_added(session))

    threads = [threading.Thread(target=cross, args=(session,)) for session in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [run_id] = [r for r in started if r is not None]
    assert len(runs.list_runs(store)) == 1
    sessions[0].jobs.wait(run_id)
    assert training.after_examples_added(sessions[0]) is None  # nothing new since that run


def test_an_old_process_ending_late_does_not_fail_the_resumed_run(store):
    run_id = runs.create_run(store, {}, [])
    runs.update_run(store, run_id, status="running", pid=111)
    runs.finish_run(store, run_id, "failed", error="late watcher", pid=222)
    assert runs.get_run(store, run_id)["status"] == "running"
    runs.finish_run(store, run_id, "succeeded", adapter="run-1", pid=111)
    assert runs.get_run(store, run_id)["status"] == "succeeded"


def test_qlora_trains_a_4bit_base_on_the_cpu(tiny_model_dir, tmp_path):
    result = run_sft(TrainConfig(method="qlora", epochs=2, batch_size=4, learning_rate=5e-3),
                     RunData.split(voice_examples(24)), tiny_model_dir, tmp_path / "adapter",
                     tmp_path / "work", Recorder())
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert result.metrics["eval_loss_after"] < result.metrics["eval_loss_before"]


# Hot-swap: adapters join the live engine beside the base weights.

def test_swap_keeps_the_base_weights_in_place(make_engine, two_adapters):
    engine = make_engine(two_adapters)
    base_params = {name: (p.data_ptr(), p.detach().clone())
                   for name, p in engine.model.named_parameters()}
    question = [{"role": "user", "content": "Say hello number 3."}]
    before = engine.reply(question)
    engine.reply(question, "brewster")
    after = dict(engine.model.named_parameters())
    for name, (pointer, value) in base_params.items():
        moved = after[name] if name in after else after[name.replace(".weight",
                                                                      ".base_layer.weight")]
        assert moved.data_ptr() == pointer and torch.equal(moved, value)
    assert engine.reply(question, "base") == before


def test_concurrent_requests_get_their_own_adapter(make_engine, two_adapters):
    assert_requests_get_their_own_adapter(make_engine(two_adapters),
                                          ["base", "brewster", "lumen"], range(3, 7))


def test_least_used_adapter_is_unloaded_and_reloaded_on_demand(make_engine, two_adapters):
    engine = make_engine(two_adapters, max_loaded_adapters=1)
    question = [{"role": "user", "content": "Say hello number 4."}]
    first = engine.reply(question, "brewster")
    engine.reply(question, "lumen")
    assert engine.loaded_adapters() == ["lumen"]
    assert engine.reply(question, "brewster") == first  # reloaded from disk, same answer
    assert engine.loaded_adapters() == ["brewster"]


def test_adapter_that_does_not_fit_the_slot_gets_a_new_one(make_engine, two_adapters,
                                                           tiny_model_dir, tmp_path):
    """Refilling a slot needs the same LoRA layout; another layout (here: a lower rank on
    the attention projections only) is loaded into fresh layers instead."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "adapters"
    shutil.copytree(two_adapters, folder)
    torch.manual_seed(0)
    odd = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                         LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, weight in odd.named_parameters():
        if "lora_B" in name:
            weight.data.normal_(0, 0.5)
    odd.save_pretrained(folder / "odd")
    question = [{"role": "user", "content": "Say hello number 4."}]
    expected_odd = make_engine(folder).reply(question, "odd")
    engine = make_engine(folder, max_loaded_adapters=1)
    brewster = engine.reply(question, "brewster")
    assert engine.reply(question, "odd") == expected_odd != brewster
    assert engine.reply(question, "brewster") == brewster
    assert engine.loaded_adapters() == ["brewster"]


def test_auto_method_picks_qlora_only_when_memory_is_short(tiny_model_dir, monkeypatch):
    from trainer import common

    weights = common._fp32_bytes(tiny_model_dir)
    monkeypatch.setattr(common, "_free_memory_bytes", lambda: 3 * weights)
    assert common.chosen_method("auto", tiny_model_dir) == "lora"
    monkeypatch.setattr(common, "_free_memory_bytes", lambda: weights)
    assert common.chosen_method("auto", tiny_model_dir) == "qlora"
    assert common.chosen_method("lora", tiny_model_dir) == "lora"
    # Exactly at the line the bench's scaling table reports (bench/scaling.py).
    monkeypatch.setattr(common, "_free_memory_bytes", lambda: 2 * weights)
    assert common.chosen_method("auto", tiny_model_dir) == "lora"
    monkeypatch.setattr(common, "_free_memory_bytes", lambda: 2 * weights - 1)
    assert common.chosen_method("auto", tiny_model_dir) == "qlora"


def test_a_late_watcher_does_not_fail_a_run_queued_again(store, tiny_model_dir, monkeypatch):
    """Resume queues the run before the new process has a pid; the old process's watcher
    recording its exit in that window must not touch it."""
    run_id = runs.create_run(store, {"base_model": str(tiny_model_dir)}, [])
    runs.update_run(store, run_id, pid=999_999_999)
    runs.finish_run(store, run_id, "cancelled")
    jobs = Jobs(store, tiny_model_dir)
    monkeypatch.setattr(jobs, "_launch", lambda run_id: None)  # the window, held open
    jobs.resume(run_id)
    runs.finish_run(store, run_id, "failed", error="late watcher", pid=999_999_999)
    assert runs.get_run(store, run_id)["status"] == "queued"


# Defects found in review.

def test_a_template_that_trims_answers_is_checked_not_crashed(tiny_model_dir):
    """Before: Llama-3 style templates that trim the content raised a bare ValueError."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "message['content']", "message['content'] | trim")
    data = [[m[0], {"role": "assistant", "content": m[1]["content"] + "  \n"}]
            for m in voice_examples(12)]
    assert check_examples(TrainConfig(), data, tokenizer) > 0
    tokenizer.chat_template = tokenizer.chat_template.replace("| trim", "| upper")
    with pytest.raises(SanityError, match="rewrites the answers"):
        check_examples(TrainConfig(), data, tokenizer)


def test_a_run_that_saved_its_adapter_but_died_before_recording_it_resumes(store,
                                                                         tiny_model_dir):
    """Before: the resumed attempt failed at the final rename (the folder existed)."""
    fill(store, 12)
    jobs = Jobs(store, tiny_model_dir)
    run_id = jobs.start(TrainConfig(epochs=1, batch_size=4))
    assert jobs.wait(run_id)["status"] == "succeeded"
    runs.update_run(store, run_id, status="failed", adapter=None, error="died")
    resume_when_stopped(jobs, run_id)
    run = jobs.wait(run_id)
    assert run["status"] == "succeeded", run["error"]
    assert (store.home / "adapters" / f"run-{run_id}" / "adapter_model.safetensors").is_file()
    assert not list((store.home / "adapters").glob(".*"))  # no scratch or stale folder left


def test_a_run_whose_process_cannot_start_does_not_block_the_next(store, tiny_model_dir,
                                                                 monkeypatch):
    """Before: it stayed queued with no pid, and every later start was refused."""

    from supervision import jobs as jobs_module

    fill(store, 12)
    jobs = Jobs(store, tiny_model_dir)
    with monkeypatch.context() as patch:
        patch.setattr(jobs_module.subprocess, "Popen",
                      lambda *a, **k: (_ for _ in ()).throw(OSError("no such interpreter")))
        with pytest.raises(jobs_module.LaunchFailed, match="could not be started"):
            jobs.start(TrainConfig(epochs=1))
    [failed] = runs.list_runs(store)
    assert failed["status"] == "failed" and "no such interpreter" in failed["error"]
    assert jobs.wait(jobs.start(TrainConfig(epochs=1, batch_size=4)))["status"] == "succeeded"


def test_editing_examples_after_a_run_changes_nothing_about_it(ctx, store):
    """A run keeps what it trained on: later edits and deletes do not reach it, resume
    trains on the snapshot, and export --run writes exactly that."""
    import json

    fill(store, 22)
    run_id = training.start(ctx, TrainConfig(epochs=1, batch_size=4))
    before = training.lineage(ctx, run_id)
    edited = before.train[0].example_id
    examples.update_example(store, edited, voice_examples(1, "Changed.")[0])
    examples.delete_example(store, before.held_out[0].example_id)
    assert ctx.jobs.wait(run_id)["status"] == "succeeded"
    after = training.lineage(ctx, run_id)
    assert after.examples == before.examples
    out = ctx.store.home / "trained.jsonl"
    from services import examples as example_actions

    assert example_actions.export_file(ctx, out, "openai", run_id).written == len(before.train)
    written = [json.loads(line)["messages"] for line in out.read_text().splitlines()]
    assert written == [e.messages for e in before.train]
    assert "Changed." not in out.read_text()


def test_a_model_saved_in_bf16_trains_in_fp32_where_bf16_is_slow(tiny_model_dir, tmp_path,
                                                                  monkeypatch):
    """Most hub models are saved in bf16; loaded as saved, a CPU without bf16 kernels
    trained them on emulated bf16, a hundred times slower."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from trainer import common

    saved = tmp_path / "bf16"
    shutil.copytree(tiny_model_dir, saved)
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16) \
        .save_pretrained(saved)
    for fast, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        monkeypatch.setattr(common, "bf16_ok", lambda fast=fast: fast)
        model, _ = common.load_for_training(TrainConfig(method="lora"), saved, None, 64)
        assert model.dtype == dtype


def test_the_cpu_loss_applies_the_head_to_answers_only_with_the_models_own_loss(
        tiny_model_dir, tmp_path, monkeypatch):
    """The trainer's CPU loss skips the LM head on prompt and padding tokens: the loss
    and the LoRA gradients must be the model's own, and training must take that path."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer import common

    def lora_model():
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                               LoraConfig(r=4, target_modules="all-linear"))
        for name, param in model.named_parameters():
            if "lora_B" in name:  # B starts at zero; make the adapter matter
                torch.nn.init.normal_(param, std=0.1)
        return model

    ids = torch.randint(3, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = mask[2, 5:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100  # the prompts
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    for num_items in (None, torch.tensor(40)):
        own, answers = lora_model(), lora_model()
        expected = own(**inputs, num_items_in_batch=num_items).loss
        got = common.answer_tokens_loss(answers.get_base_model(), inputs, num_items)
        torch.testing.assert_close(got, expected)
        expected.backward()
        got.backward()
        for (name, a), (_, b) in zip(own.named_parameters(), answers.named_parameters()):
            if a.requires_grad:
                torch.testing.assert_close(b.grad, a.grad, msg=name)

    calls = []
    real = common.answer_tokens_loss
    monkeypatch.setattr(common, "answer_tokens_loss",
                        lambda *args: calls.append(1) or real(*args))
    run_sft(TrainConfig(epochs=1, batch_size=4), RunData.split(voice_examples(12)),
            tiny_model_dir, tmp_path / "adapter", tmp_path / "work", Recorder())
    assert len(calls) == 4  # every training step (12 examples, none held out, 2 replayed)


def test_the_cpu_loss_runs_under_bf16_autocast_where_bf16_is_fast(tiny_model_dir, tmp_path,
                                                                  monkeypatch):
    """The answer-only loss calls the decoder itself, past the autocast that accelerate
    puts around the model's forward: it must open the same autocast."""
    from trainer import common, sft

    for module in (common, sft):
        monkeypatch.setattr(module, "bf16_ok", lambda: True)
    autocast = []
    real = common.answer_tokens_loss
    monkeypatch.setattr(common, "answer_tokens_loss", lambda *args: autocast.append(
        torch.is_autocast_enabled("cpu")) or real(*args))
    run_sft(TrainConfig(epochs=1, batch_size=4), RunData.split(voice_examples(24)),
            tiny_model_dir, tmp_path / "adapter", tmp_path / "work", Recorder())
    assert autocast and all(autocast)
