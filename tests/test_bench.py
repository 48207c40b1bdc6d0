"""The benchmark runs end to end and writes every key docs/benchmarks.md promises (on the tiny
model: numbers here mean nothing, the shape does)."""

import json

import app

KEYS = {
    "train": {"tunechat_tokens_per_s", "trl_tokens_per_s", "speedup", "tunechat_eval_loss",
              "trl_eval_loss", "tunechat_peak_rss_mb", "trl_peak_rss_mb"},
    "swap": {"p50_ms", "p95_ms", "reload_ms"},
    "generate": {"ttft_ms", "tokens_per_s", "baseline_tokens_per_s"},
    "limit": {"bf16_gflops", "fp32_gflops", "fraction_of_peak"},
    "chat_while_training": {"idle_reply_s", "training_reply_s",
                            "training_same_priority_reply_s"},
    "time_to_adapter": {"time_to_adapter_s", "launch_s", "first_step_s", "trained_s",
                        "answer_s", "train_seconds", "peak_gflops", "training_tflops",
                        "compute_floor_s"},
    "time_to_effect": {"time_to_effect_s", "correct_s", "reply_s", "overhead_s"},
}
PROBE = {"load_s", "step_s", "train_tokens_per_s", "peak_rss_mb", "decode_tokens_per_s",
         "time_to_adapter_45_s_estimated"}


def test_bench_writes_every_key(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = app.main(["bench", "--model", str(tiny_model_dir), "--epochs", "1",
                     "--repeats", "2", "--shapes", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for section, keys in KEYS.items():
        assert keys <= set(report[section]), section
        assert all(isinstance(report[section][k], (int, float)) for k in keys)
    assert 0 < report["cold_start_s"] <= report["model_ready_s"]
    assert report["train"]["speedup"] > 0
    [model] = report["scaling"]["models"].values()  # --shapes with none: the model alone
    for method in ("lora", "qlora"):
        assert PROBE <= set(model[method]), method
    assert model["auto_picks_qlora_below_mb"] > 0
    assert set(report["scaling"]["data"]) == {"45", "450", "4500"}
    assert all(row["steps"] > 0 for row in report["scaling"]["data"].values())
    table = capsys.readouterr().out
    assert "training tokens/s" in table and "cold start" in table
    assert "time to effect" in table and "floor" in table


def test_a_reply_carries_the_correction_by_its_distinctive_phrase():
    from bench.time_to_effect import carries

    assert carries("Sorry, our studio is PETS FREE.")
    assert carries("Dogs can’t join class.")  # a curly apostrophe is punctuation too
    assert carries("Dogs can't  join   class, I'm afraid!")
    assert not carries("Of course, bring your dog! We love pets.")
