import subprocess
import sys

import pytest

import app

from serving import REPO


def run_cli(*argv, capsys):
    code = app.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [[], ["serve"], ["ask"], ["runs"], ["import"], ["export"],
                                     ["train"], ["export-model"], ["compare"], ["bench"],
                                     ["cancel"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        app.main(command + ["--help"])
    assert exit_.value.code == 0
    assert "--home" in capsys.readouterr().out


def test_flags_reach_settings():
    args = app.build_parser().parse_args(["--home", "/x", "serve", "--port", "8001"])
    settings = app.settings_from(args)
    assert (str(settings.home), settings.port, settings.host) == ("/x", 8001, "127.0.0.1")
    assert settings.trust_remote_code is False


def test_home_defaults_to_the_environment(isolated_home):
    assert app.settings_from(app.build_parser().parse_args(["runs"])).home == isolated_home


def test_runs_on_a_new_home(capsys):
    assert run_cli("runs", capsys=capsys)[:2] == (0, "No training runs yet.\n")


def test_ask_prints_only_the_reply(tiny_model_dir, capsys):
    code, out, _ = run_cli("ask", "What is the capital of France?", "--model",
                           str(tiny_model_dir), capsys=capsys)
    assert (code, out) == (0, "The capital of France is Paris.\n")


def test_errors_go_to_stderr_with_a_nonzero_exit(tmp_path, tiny_model_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run_cli("runs", "--home", str(blocker / "home"), capsys=capsys)
    assert code == 1 and out == "" and str(blocker / "home") in err
    code, _, err = run_cli("ask", "hi", "--model", str(tmp_path / "missing.gguf"),
                           capsys=capsys)
    assert code == 1 and "missing.gguf" in err
    code, _, err = run_cli("ask", "hi", "--adapter", "nope", "--model",
                           str(tiny_model_dir), capsys=capsys)
    assert code == 1 and "No model named 'nope'" in err


@pytest.mark.integration
def test_ask_the_embedded_model_from_a_fresh_shell(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "app", "ask", "What is the capital of France?",
         "--home", str(tmp_path / "home")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout and len(result.stdout.strip().splitlines()) == 1


def test_import_then_export_from_the_command_line(tmp_path, capsys):
    from helpers import SAMPLE_FILES, SAMPLES

    source = SAMPLES / SAMPLE_FILES["sharegpt"]
    assert run_cli("import", str(source), capsys=capsys)[:2] == (
        0, f"✓ Imported 6 examples from {source.name}.\n")
    code, out, _ = run_cli("import", str(source), "--format", "sharegpt", capsys=capsys)
    assert out == f"✓ Imported 0 examples from {source.name} (6 already present, skipped).\n"
    target = tmp_path / "out.jsonl"
    assert run_cli("export", str(target), capsys=capsys)[1] == "✓ Wrote 6 examples to out.jsonl.\n"
    assert target.read_bytes() == (SAMPLES / SAMPLE_FILES["openai"]).read_bytes()
    code, out, err = run_cli("export", str(tmp_path / "p.jsonl"), "--format", "preference",
                             capsys=capsys)
    assert out == "✓ Wrote 0 pairs to p.jsonl.\n"


def test_a_bad_import_exits_nonzero_with_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "x"}]}\n{"messages": [')
    code, out, err = run_cli("import", str(bad), capsys=capsys)
    assert code == 1 and out == "" and "line 1, field messages" in err
    assert run_cli("export", str(tmp_path / "o.jsonl"), capsys=capsys)[1].startswith("✓ Wrote 0")
