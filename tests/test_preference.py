"""Learning from every signal, on the tiny model: corrections as DPO pairs, thumbs-down
and rejected sides as KTO's undesirable answers, votes as new pairs; each stage moves
only LoRA weights, records its measures, and cancels and resumes like SFT."""

import json

import pytest
import torch

from services import compare, training
from services.compare import Pair as ComparedPair
from storage import examples, runs
from storage.runs import RunExample
from trainer.common import SanityError
from trainer.config import ConfigError, TrainConfig
from trainer.dataset import Pair, RunData
from trainer.objectives import OBJECTIVES
from trainer.sft import sft_steps

from helpers import Recorder, voice_examples

FAST = dict(epochs=2, batch_size=4, preference_learning_rate=5e-3, preference_epochs=2,
            save_every=2)


def corrections(n: int) -> list[Pair]:
    """The voice as the user's fix of a bland first answer."""
    return [Pair(m, f"Number {i}.") for i, m in enumerate(voice_examples(n))]


def lora_state(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_sft_then_dpo_raises_the_margin_and_saves_only_the_tuned_adapter(tiny_model_dir,
                                                                         tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = RunData(voice_examples(16), pairs=corrections(16))
    recorder = Recorder()
    config = TrainConfig(**FAST, objective="sft+dpo")
    result = OBJECTIVES["sft+dpo"].recipe()(config, data, tiny_model_dir, tmp_path / "adapter",
                                            tmp_path / "work", recorder)
    sft, dpo = result.metrics["stages"]
    assert sft["stage"] == "sft" and dpo["stage"] == "dpo" and dpo["rows"] == 16
    assert dpo["after"]["rewards/margins"] > dpo["before"]["rewards/margins"]
    assert "logps/chosen" in dpo["before"] and "logps/chosen" in dpo["after"]
    # One bar over both stages: the steps only go up, to the planned total.
    assert recorder.steps == sorted(recorder.steps) and recorder.steps[-1] == recorder.total
    assert recorder.total == sft_steps(config, data) + 2 * 4
    saved = lora_state(tmp_path / "adapter")
    assert saved and not any(".ref." in key for key in saved)  # TRL's reference copy stays out
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, tmp_path / "adapter").get_base_model().state_dict()
    for name, value in before.items():
        key = name.replace(".weight", ".base_layer.weight")
        assert torch.equal(tuned.get(key, tuned.get(name)), value), name


def test_kto_alone_tunes_an_adapter_with_the_thumbs_down(tiny_model_dir, tmp_path):
    sft = OBJECTIVES["sft"].recipe()(TrainConfig(**FAST), RunData(voice_examples(16)),
                                     tiny_model_dir, tmp_path / "sft", tmp_path / "w1",
                                     Recorder())
    disliked = [m[:-1] + [{"role": "assistant", "content": "Go away."}]
                for m in voice_examples(8)]
    data = RunData(voice_examples(16), disliked=disliked)
    result = OBJECTIVES["kto"].recipe()(TrainConfig(**FAST, objective="kto",
                                                    continue_from="sft"),
                                        data, tiny_model_dir, tmp_path / "kto",
                                        tmp_path / "w2", Recorder(), sft.adapter_dir)
    assert result.metrics["stage"] == "kto" and result.metrics["rows"] == 24
    start, tuned = lora_state(sft.adapter_dir), lora_state(tmp_path / "kto")
    assert start.keys() == tuned.keys()
    assert any(not torch.equal(start[k], tuned[k]) for k in start)


def test_thumbs_down_reach_the_preference_stages_and_never_sft():
    kept = voice_examples(3)
    bad = kept[0][:-1] + [{"role": "assistant", "content": "Go away."}]
    rows = [RunExample(1, "train", "kept", kept[1]),
            RunExample(2, "train", "corrected", kept[2], "Number 2."),
            RunExample(3, "train", "disliked", bad, "Go away."),
            RunExample(4, "train", "vote", kept[0], "Number 0."),
            RunExample(5, "held_out", "corrected", kept[0], "Hm.")]
    data = RunData.from_run(rows)
    assert data.train == [kept[1], kept[2]]  # SFT: kept and corrected, no thumbs-down or vote
    assert [p.rejected for p in data.pairs] == ["Number 2.", "Number 0."]
    assert bad in data.undesirable and len(data.undesirable) == 3
    assert [p.rejected for p in data.held_out_pairs] == ["Hm."]


def test_a_vote_makes_exactly_one_pair(ctx, store):
    pair = ComparedPair("base", "run-1", "Hello.", "Hello 3! Cheers, Brewster.")
    _, made = compare.vote(ctx, pair, "right", "Say hello number 3.", "Be brief.")
    [stored] = examples.list_examples(store, sources=("vote",))
    assert stored.id == made and stored.rejected == "Hello."
    assert stored.messages[-1]["content"] == "Hello 3! Cheers, Brewster."
    assert stored.messages[0] == {"role": "system", "content": "Be brief."}
    assert compare.vote(ctx, pair, "right", "Say hello number 3.", "Be brief.")[1] is None
    assert compare.vote(ctx, pair, "tie", "Say hello number 3.")[1] is None
    same = ComparedPair("base", "run-1", "Same.", "Same.")
    assert compare.vote(ctx, same, "left", "Say hello number 4.")[1] is None
    assert examples.counts(store)["vote"] == 1 and examples.counts(store)["trainable"] == 0
    assert runs.examples_since_last_run(store) == 0  # a vote does not start a run


def test_cancel_then_resume_in_the_preference_stage(tiny_model_dir, tmp_path):
    data = RunData(voice_examples(16), pairs=corrections(16))
    config = TrainConfig(**FAST, objective="sft+dpo")
    recipe = OBJECTIVES["sft+dpo"].recipe()
    first_stage = sft_steps(config, data)
    stopped = Recorder(cancel_at=first_stage + 3)
    recipe(config, data, tiny_model_dir, tmp_path / "adapter", tmp_path / "work", stopped)
    assert not (tmp_path / "adapter").exists() and max(stopped.steps) < stopped.total
    resumed = Recorder()
    result = recipe(config, data, tiny_model_dir, tmp_path / "adapter", tmp_path / "work",
                    resumed)
    # The SFT stage is not trained again; DPO goes on from its checkpoint at step 2.
    trained = [step for step in resumed.steps if step > first_stage]
    assert min(resumed.steps) >= first_stage and trained[0] > first_stage + 2
    assert resumed.steps[-1] == resumed.total
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert result.metrics["stages"][1]["after"]


def test_objectives_refuse_what_they_cannot_learn_from(ctx, store):
    with pytest.raises(ConfigError, match="dpo alone tunes an adapter you already have"):
        TrainConfig(objective="dpo")
    examples.add_many(store, voice_examples(12), "kept")
    with pytest.raises(training.NothingToDo, match="no.*pairs|none yet"):
        training.start(ctx, TrainConfig(objective="sft+dpo"))
    with pytest.raises(training.NothingToDo, match="nothing to avoid"):
        training.start(ctx, TrainConfig(objective="sft+kto"))
    assert "12 kept, corrected, added or imported answers, 0 corrections" in \
        training.signals_line(ctx)
    for i, messages in enumerate(voice_examples(14)[12:]):
        examples.add_example(store, messages, "corrected", rejected=f"Number {i}.")
    with pytest.raises(SanityError, match="Only 2 preference pairs to train on"):
        training.start(ctx, TrainConfig(objective="sft+dpo"))  # refused before SFT trains
    assert runs.list_runs(store) == []


def test_a_staged_run_in_its_own_process(ctx, store):
    """sft+dpo through the trainer process: the snapshot holds the thumbs-down and
    votes, the losses carry their stage, the lineage shows both stages."""
    for i, messages in enumerate(voice_examples(24)):
        examples.add_example(store, messages, "corrected", rejected=f"Number {i}.")
    examples.add_example(store, [{"role": "user", "content": "Say bye."},
                                 {"role": "assistant", "content": "No."}], "disliked",
                         rejected="No.")
    run_id = training.start(ctx, TrainConfig(**FAST, objective="sft+dpo"))
    run = ctx.jobs.wait(run_id)
    assert run["status"] == "succeeded", run["error"]
    sources = {e.source for e in runs.run_examples(store, run_id, "train")}
    assert sources == {"corrected", "disliked"}
    assert {p.get("stage") for p in run["losses"]} == {"sft", "dpo"}
    sft_steps_done = max(p["step"] for p in run["losses"] if p["stage"] == "sft")
    assert all(p["step"] <= sft_steps_done for p in run["eval_losses"])  # SFT's held out only
    assert run["metrics"]["train_seconds"] == pytest.approx(
        sum(s["train_seconds"] for s in run["metrics"]["stages"]), abs=0.2)
    lines = dict(training.lineage(ctx, run_id).summary())
    assert lines["objective"] == "sft+dpo" and lines["stage"].startswith("dpo: ")
    metadata = json.loads((store.home / "adapters" / run["adapter"] / "tunechat.json")
                          .read_text())
    assert metadata["metrics"]["stage"] == "dpo"


def test_a_preference_stage_runs_a_few_pairs_at_a_time(tmp_path):
    """A step still learns from batch_size pairs, added up from passes of
    preference_micro_batch pairs: the activations of the whole batch at once held most
    of the stage's memory (bench/dpo_memory.py)."""
    from trl import DPOConfig

    from trainer.stages import stage_args

    args = stage_args(DPOConfig, TrainConfig(batch_size=8), 40, tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 4)
    whole = stage_args(DPOConfig, TrainConfig(batch_size=8, preference_micro_batch=None),
                       40, tmp_path)
    assert (whole.per_device_train_batch_size, whole.gradient_accumulation_steps) == (8, 1)
    small = stage_args(DPOConfig, TrainConfig(batch_size=1), 40, tmp_path)
    assert (small.per_device_train_batch_size, small.gradient_accumulation_steps) == (1, 1)
    with pytest.raises(ConfigError, match="preference_micro_batch must be 1 or more"):
        TrainConfig(preference_micro_batch=0)
