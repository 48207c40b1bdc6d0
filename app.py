"""The tunechat command line: parse flags -> Settings -> serve | ask | import | export |
train | compare | runs.

Nothing heavy happens at import time; each command imports what it needs."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
ENGINES = ("auto", "llama.cpp", "pytorch")
"""--engine: what decodes the chat's replies (assistant/llama_engine.py says why)."""


@dataclass(frozen=True)
class Settings:
    """What the command line decided; passed down instead of globals."""

    home: Path
    """Data home: tunechat.db and adapters/ (--home, else $TUNECHAT_HOME, else ~/.tunechat)."""
    model: str | None = None
    """Base model: a hub id in the local HF cache, a folder, a .gguf file, or None for the
    embedded SmolLM2-135M-Instruct."""
    host: str = DEFAULT_HOST
    """Interface to bind; loopback unless the user asks for more."""
    port: int = DEFAULT_PORT
    trust_remote_code: bool = False
    """Run Python code shipped with a model folder; off unless asked for."""
    auth: tuple[str, str] | None = None
    """USER:PASS that every page and API route asks for (--auth, else $TUNECHAT_AUTH)."""

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise BadFlag(f"--port must be between 1 and 65535, not {self.port}.")


class BadFlag(UserError):
    pass


class TrainingFailed(UserError):
    pass


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, colon, password = value.partition(":")
    if not (colon and user and password):
        raise BadFlag("--auth (or $TUNECHAT_AUTH) must be USER:PASS, both parts non-empty.")
    return user, password


def build_parser() -> argparse.ArgumentParser:
    from files.formats import FORMATS, export_formats, import_formats
    from trainer.config import METHODS, TrainConfig
    from trainer.objectives import OBJECTIVES

    # SUPPRESS: these flags are accepted before and after the command; without it the
    # command's defaults would overwrite a value given before it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--home", help="data home (default: $TUNECHAT_HOME or ~/.tunechat)")
    common.add_argument("--model", help="base model: hub id (from the local Hugging Face "
                        "cache), folder, or .gguf file (default: embedded SmolLM2-135M)")
    common.add_argument("--trust-remote-code", action="store_true",
                        help="allow code shipped with the model folder to run")
    parser = argparse.ArgumentParser(
        prog="tunechat", parents=[common],
        description="Chat with a model, keep or correct its answers, fine-tune, compare.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="serve the web app (default)")
    _add_serve_flags(serve)
    _add_serve_flags(parser)  # so plain `tunechat --port 8000` works too

    ask = commands.add_parser("ask", parents=[common], help="print the greedy reply to PROMPT")
    ask.add_argument("prompt", metavar="PROMPT")
    ask.add_argument("--adapter", default="base", help="base, latest, or an adapter name")
    ask.add_argument("--system", default="", help="system prompt")

    importer = commands.add_parser("import", parents=[common],
                                   help="import examples, preference pairs and thumbs-down "
                                        "from a file or datasets folder")
    importer.add_argument("file", metavar="FILE",
                          help="JSONL, JSON, CSV, TSV, XLSX, Parquet, or a datasets folder")
    importer.add_argument("--format", default="auto", choices=["auto"] + import_formats(),
                          help="; ".join(f"{f.name}: {f.label}" for f in FORMATS.values()
                                         if f.read and f.write))
    importer.add_argument("--map", metavar="COLUMN=ROLE,...",
                          help="which spreadsheet columns are the user, assistant and system "
                               "messages, e.g. \"question=user,answer=assistant\" (default: "
                               "by common header names)")
    importer.add_argument("--skip-bad", action="store_true",
                          help="import the good rows and list each bad one in a report, "
                               "instead of refusing the file at its first bad row")
    importer.add_argument("--test", action="store_true",
                          help="keep these examples for testing only: never trained on, "
                               "never placed in a prompt")
    _add_threshold_flag(importer)

    exporter = commands.add_parser("export", parents=[common], help="export examples to FILE")
    exporter.add_argument("file", metavar="FILE")
    exporter.add_argument("--format", default="openai", choices=export_formats(),
                          help="; ".join(f"{name}: {FORMATS[name].label}"
                                         for name in export_formats()))
    exporter.add_argument("--run", type=int, metavar="N",
                          help="export exactly what run N trained on, as it was then")

    trainer = commands.add_parser("train", parents=[common],
                                  help="fine-tune an adapter on the examples (waits)")
    trainer.add_argument("--objective", choices=list(OBJECTIVES), default="auto",
                         help="what the run learns from: " + "; ".join(
                             f"{o.name}: {o.learns_from}" for o in OBJECTIVES.values()))
    trainer.add_argument("--method", choices=METHODS, default="auto",
                         help="auto: qlora (4-bit base) when memory is short, else lora")
    trainer.add_argument("--epochs", type=int,
                         help="passes over the data (default: by the answers' length)")
    trainer.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    trainer.add_argument("--rank", type=int, default=TrainConfig.rank, help="LoRA rank")
    trainer.add_argument("--continue-from", metavar="ADAPTER",
                         help="keep training this adapter instead of starting a new one")
    trainer.add_argument("--nproc", type=int, default=1,
                         help="training processes (PyTorch DDP under torchrun; default 1)")
    trainer.add_argument("--prepare-only", action="store_true",
                         help="queue the run and print its id, for `accelerate launch -m "
                              "trainer RUN_ID --home DIR` to run")

    compare = commands.add_parser("compare", parents=[common],
                                  help="print two models' greedy answers to PROMPT")
    compare.add_argument("prompt", metavar="PROMPT")
    compare.add_argument("--left", default="base", help="base, latest or an adapter name")
    compare.add_argument("--right", default="latest", help="base, latest or an adapter name")
    compare.add_argument("--system", default="", help="system prompt")

    bench = commands.add_parser("bench", parents=[common],
                                help="benchmark training, swaps and generation against "
                                     "plain TRL / transformers")
    bench.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    bench.add_argument("--epochs", type=int, default=3, help="epochs for both trainers")
    bench.add_argument("--repeats", type=int, default=5, help="repeats after a warm-up")
    bench.add_argument("--data", help="examples file (default: the brand-voice set)")
    bench.add_argument("--shapes", nargs="*", metavar="SHAPE",
                       help="larger model shapes for the scaling table (default: all of "
                            "SmolLM2-360M, Qwen2.5-0.5B, SmolLM2-1.7B; none: just --model)")

    exporter = commands.add_parser(
        "export-model", parents=[common],
        help="write an adapter for other engines: merged into a Hugging Face folder, or as "
             "GGUF for llama.cpp and Ollama")
    exporter.add_argument("--adapter", default="latest", help="an adapter's name, or latest")
    where = exporter.add_mutually_exclusive_group(required=True)
    where.add_argument("--merged", metavar="DIR",
                       help="new folder for the merged model (safetensors + tokenizer)")
    where.add_argument("--gguf", metavar="DIR",
                       help="new folder for adapter.gguf (llama.cpp --lora, Ollama ADAPTER), "
                            "the merged model as GGUF at 8 and 16 bits, and an Ollama "
                            "Modelfile; checked by replaying the report card's prompts")

    evaluate = commands.add_parser(
        "eval", parents=[common],
        help="the report card: an adapter against the base, a prompt and few-shot examples")
    evaluate.add_argument("--adapter", default="latest", help="an adapter's name, or latest")
    evaluate.add_argument("--system", help="the baseline system prompt (kept in the data "
                          "home): the best prompt you would write instead of fine-tuning")
    evaluate.add_argument("--json", metavar="FILE", help="also write the card as JSON")
    evaluate.add_argument("--measure", choices=["auto", "style", "chrf", "exact", "json"],
                          help="what decides the verdict from now on (kept in the data home):"
                               " style (a sign-off or greeting your answers share), chrf "
                               "(wording), exact (a label), json (JSON fields); auto: the "
                               "style when your answers share one, else by their form")

    check = commands.add_parser(
        "add-check", parents=[common],
        help="a must-not-change question every report card asks the base and the adapter")
    check.add_argument("prompt", metavar="PROMPT")
    check.add_argument("answer", metavar="ANSWER",
                       help="what a right answer contains: words in order (case and "
                            "punctuation aside), or /a regex/")

    runs = commands.add_parser("runs", parents=[common], help="list training runs")
    runs.add_argument("--show", type=int, metavar="N",
                      help="what run N trained on: examples, held out, base, settings, code")

    cancel = commands.add_parser("cancel", parents=[common],
                                 help="cancel a queued or training run (default: the active one)")
    cancel.add_argument("run_id", type=int, nargs="?", metavar="RUN_ID")
    _add_facts_commands(commands, common)
    return parser


def _add_facts_commands(commands, common: argparse.ArgumentParser) -> None:
    facts = commands.add_parser(
        "facts", parents=[common], help="what is true about your business (prices, hours, "
        "policies): the chat reads the facts most like each question before it answers")
    actions = facts.add_subparsers(dest="facts_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", parents=[common],
                             help="add the facts in a file, or the text itself")
    add.add_argument("item", metavar="FILE|TEXT",
                     help="a .txt, .md, .csv, .tsv or .pdf file (adding a file again "
                          "replaces its facts), else the text itself; - reads the text "
                          "from standard input")
    actions.add_parser("list", parents=[common], help="every fact, with its number")
    remove = actions.add_parser("remove", parents=[common],
                                help="remove one fact by its number, or all from a source")
    remove.add_argument("fact_id", type=int, nargs="?", metavar="ID")
    remove.add_argument("--source", metavar="NAME",
                        help="remove every fact from this file name (or \"typed\")")
    check = actions.add_parser(
        "check", parents=[common], help="mark an example as a facts check: every report "
        "card scores answers to its question against your facts (kept for testing only)")
    check.add_argument("example_id", type=int, metavar="EXAMPLE_ID")
    check.add_argument("--off", action="store_true", help="unmark it")


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 7860)")
    parser.add_argument("--auth", metavar="USER:PASS",
                        help="ask for this login on every page and API route "
                             "(default: $TUNECHAT_AUTH, else no login)")
    _add_threshold_flag(parser)
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="what decodes the chat's replies: llama.cpp (several times "
                             "faster on a CPU; `make llama` installs it), pytorch, or auto "
                             "(llama.cpp where it is installed and can serve the model)")
    parser.add_argument("--no-standby-trainer", dest="standby_trainer",
                        action="store_false",
                        help="do not keep a trainer process ready for the next run (it "
                             "holds the training libraries' memory while it waits, and "
                             "saves their import time when a run starts)")


def _add_threshold_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=int,
                        help="new examples that start a training run by themselves, kept in "
                             "the data home (default 20; 0 turns auto-start off)")




def settings_from(args: argparse.Namespace) -> Settings:
    from storage.db import data_home

    return Settings(home=data_home(getattr(args, "home", None)),
                    model=getattr(args, "model", None),
                    host=getattr(args, "host", DEFAULT_HOST),
                    port=getattr(args, "port", DEFAULT_PORT),
                    trust_remote_code=getattr(args, "trust_remote_code", False),
                    auth=parse_auth(getattr(args, "auth", None) or os.environ.get("TUNECHAT_AUTH")))


def open_context(settings: Settings, engine: bool = False):
    from services.context import Context

    return Context.open(settings.home, settings.model, engine=engine,
                        trust_remote_code=settings.trust_remote_code)


def load_engine_in_background(settings: Settings, name: str, choice: str = "auto",
                              busy: Callable[[], bool] = lambda: False):
    """The page is served while the model loads (imports are most of a cold start); the
    caller resolves the model first, so a wrong --model stops serve with its message,
    and a GGUF is converted (with a progress bar) before serving. `choice` is --engine;
    `busy()` says a run is training (llama.cpp then replies on one thread)."""
    import threading
    import time

    from assistant.bases import load_model, source_gguf
    from assistant.engine import ChatEngine
    from assistant.llama_engine import LlamaChatEngine, why_not

    gguf = source_gguf(settings.model)
    why = why_not(gguf) if choice != "pytorch" else "--engine pytorch"
    if choice == "llama.cpp" and why:
        raise BadFlag(f"--engine llama.cpp: {why}.")
    started = time.monotonic()
    load = lambda: load_model(settings.model,  # noqa: E731
                              trust_remote_code=settings.trust_remote_code)
    adapters = settings.home / "adapters"
    engine = ChatEngine.load_in_background(load, name, adapters_dir=adapters) if why else \
        LlamaChatEngine.load_in_background(load, name, adapters_dir=adapters,
                                           source_gguf=gguf, busy=busy)

    def report(loaded) -> None:
        if loaded.exception() is not None:
            print(f"tunechat: the model {name} could not be loaded: {loaded.exception()}",
                  file=sys.stderr)
            return
        print(f"Model ready: {name} ({time.monotonic() - started:.1f} s)", file=sys.stderr,
              flush=True)
        if isinstance(engine, LlamaChatEngine):
            threading.Thread(target=report_llama, daemon=True).start()
        else:
            print(f"Replies from PyTorch ({why}).", file=sys.stderr, flush=True)

    def report_llama() -> None:
        assert isinstance(engine, LlamaChatEngine)
        if engine.wait_for_llama():
            print(f"Replies from llama.cpp ({time.monotonic() - started:.1f} s)",
                  file=sys.stderr, flush=True)
        else:
            print(f"Replies from PyTorch: llama.cpp could not start ({engine.llama_error}).",
                  file=sys.stderr, flush=True)

    engine.when_loaded(report)
    return engine


def serve(settings: Settings, threshold: int | None = None,
          standby_trainer: bool = True, engine_choice: str = "auto") -> None:
    from assistant.bases import resolve_model
    from files.formats import MAX_IMPORT_BYTES
    from services import training
    from services.context import Context
    from services.report import ReportWorker
    from storage import runs as run_store
    from storage.db import open_store
    from supervision.jobs import Jobs
    from web.app import CSS, build_app

    store = open_store(settings.home)
    print(f"Data home: {store.home}", file=sys.stderr)
    from storage.examples import finish_interrupted_imports

    finish_interrupted_imports(store)  # an import killed mid-way: finished or removed
    for run_id in run_store.settle_dead_runs(store):
        print(f"Run #{run_id} was left running by a trainer that is gone: marked failed.",
              file=sys.stderr)
    name, folder = resolve_model(settings.model)
    engine = load_engine_in_background(settings, name, engine_choice,
                                       busy=lambda: run_store.active_run(store) is not None)
    jobs = Jobs(store, folder, standby_trainer)
    # The trainer kept ready starts after the model: both imports at once would slow
    # the first page.
    engine.when_loaded(lambda _: jobs.prepare_standby(on_ready=lambda seconds: print(
        f"Trainer ready: imports done in {seconds:.1f} s", file=sys.stderr, flush=True)))
    ctx = Context(store, engine, jobs)
    if threshold is not None:
        training.set_threshold(ctx, threshold)
    ctx.reports = ReportWorker(ctx).start()  # a report card after every successful run
    app = build_app(ctx)
    app.queue(default_concurrency_limit=4)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.auth is None:
        print(f"Serving on {settings.host} without a login: anyone who can reach this machine "
              "can read and change your examples. Add --auth USER:PASS.", file=sys.stderr)
    # Uploads (imports) are capped where Gradio receives them, before they reach a disk.
    app.launch(server_name=settings.host, server_port=settings.port, share=False,
               footer_links=["api"], auth=settings.auth,
               max_file_size=MAX_IMPORT_BYTES, css=CSS)


def ask(settings: Settings, args: argparse.Namespace) -> None:
    from services import chat

    ctx = open_context(settings, engine=True)
    print(chat.ask(ctx, args.prompt, args.adapter, args.system).text)


def train(settings: Settings, args: argparse.Namespace) -> None:
    from services import training
    from trainer.config import TrainConfig

    config = TrainConfig(method=args.method, epochs=args.epochs,
                         learning_rate=args.learning_rate, rank=args.rank,
                         continue_from=args.continue_from, nproc=args.nproc,
                         objective=args.objective)
    ctx = open_context(settings)
    if args.prepare_only:
        print(training.prepare(ctx, config))
        return
    run = wait_with_progress(ctx, training.start(ctx, config))
    metrics = run["metrics"]
    if metrics.get("train_examples") is not None:  # an SFT stage ran
        print(f"Trained on {metrics['train_examples']} examples in "
              f"{metrics.get('train_seconds')} s; eval loss "
              f"{metrics.get('eval_loss_before', '-')} -> {metrics.get('eval_loss_after', '-')}"
              ".", file=sys.stderr)
    for stage in training.preference_stages(metrics):
        print(training.stage_line(stage), file=sys.stderr)
    print(run["adapter"])


def wait_with_progress(ctx, run_id: int) -> dict:
    """Show a run's progress bar until it ends (Ctrl-C cancels it); its final record."""
    from tqdm import tqdm

    from services import training

    with tqdm(desc=f"Run #{run_id}", unit="step", total=None, file=sys.stderr) as bar:
        def show(run):
            bar.total = run["total_steps"] or bar.total
            bar.n = run["step"] or 0
            if run["losses"]:
                bar.set_postfix(loss=run["losses"][-1]["loss"])
            bar.refresh()

        try:
            run = ctx.jobs.wait(run_id, on_progress=show)
        except KeyboardInterrupt:
            training.cancel(ctx, run_id)
            print(f"\nCancelling run #{run_id}...", file=sys.stderr)
            run = ctx.jobs.wait(run_id)
    if run["status"] != "succeeded":
        why = f": {run['error']}" if run["error"] else ""
        raise TrainingFailed(f"Run #{run_id} {run['status']}{why}")
    return run


def compare(settings: Settings, args: argparse.Namespace) -> None:
    from services import compare as compare_

    pair = compare_.compare(open_context(settings, engine=True), args.prompt, args.left,
                            args.right, args.system)
    print(f"[{pair.left}]\n{pair.left_reply}\n\n[{pair.right}]\n{pair.right_reply}\n")


def export_model(settings: Settings, args: argparse.Namespace) -> None:
    from assistant.bases import resolve_model
    from services import models
    from trainer.export import export_merged

    ctx = open_context(settings)
    adapter = models.resolve_adapter(ctx, args.adapter, "to export")
    name, base = resolve_model(settings.model)
    if args.gguf:
        return export_gguf(ctx, settings, adapter, Path(args.gguf))
    written = export_merged(base, name, ctx.adapters_dir / adapter, Path(args.merged))
    print(f"Wrote {name} + {adapter}, merged, to {written}. Load it with "
          f"AutoModelForCausalLM.from_pretrained({str(written)!r}).")


def export_gguf(ctx, settings: Settings, adapter: str, out_dir: Path) -> None:
    """Write the GGUF files, replay the card's prompts through them, and fail (removing
    them) when the 16-bit model does not answer as the adapter does in tunechat."""
    from tqdm import tqdm

    from assistant.bases import resolve_model, source_gguf
    from core.gguf import GGUFExportError
    from services import report
    from trainer import gguf_export

    _, base = resolve_model(settings.model)
    base_gguf = source_gguf(settings.model)
    files = gguf_export.export_gguf(base, base_gguf, ctx.adapters_dir / adapter, out_dir)
    print(f"Wrote {', '.join(f.name for f in files)} to {out_dir}.", file=sys.stderr)
    if base_gguf is None:
        print("The merged GGUF models need the base as a GGUF file (the embedded model, or "
              "--model FILE.gguf); this base is a Hugging Face folder, so only adapter.gguf "
              "was written.", file=sys.stderr)
    prompts = report.replay_prompts(ctx, adapter)
    with tqdm(desc="Checking the export", unit="answer", file=sys.stderr) as bar:
        def show(done, total):
            bar.total, bar.n = total, done
            bar.refresh()
        checked = gguf_export.check_export(base, base_gguf, ctx.adapters_dir / adapter,
                                           out_dir, prompts, show)
    for line in checked.lines():
        print(line)
    if checked.failures():
        shutil.rmtree(out_dir)
        raise GGUFExportError(
            "The export does not answer as the adapter does in tunechat, so it was removed: "
            + "; ".join(checked.failures()) + ". Please report this with the adapter.")
    if importlib.util.find_spec("llama_cpp") is None:
        print("llama.cpp itself was not run (pip install llama-cpp-python to check with it).",
              file=sys.stderr)
    print(f"Run it: llama-cli -m {base_gguf or 'BASE.gguf'} --lora {out_dir / 'adapter.gguf'}"
          + (f", or: cd {out_dir} && ollama create {adapter} -f Modelfile" if base_gguf else ""))


def bench(settings: Settings, args: argparse.Namespace) -> None:
    from bench.common import DEFAULT_DATA
    from bench.run import print_table, run

    report = run(settings.model, Path(args.data) if args.data else DEFAULT_DATA,
                 args.epochs, args.repeats, args.shapes)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def evaluate(settings: Settings, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from services import contenders, report

    ctx = open_context(settings, engine=True)
    if args.system is not None:
        contenders.set_baseline_prompt(ctx, args.system)
    if args.measure:
        report.choose_measure(ctx, args.measure)
    with tqdm(desc="Report card", unit="answer", file=sys.stderr) as bar:
        def show(done: int, total: int, step: str) -> None:
            bar.total, bar.n = total, done
            bar.set_postfix_str(step[:50])
            bar.refresh()

        card = report.evaluate(ctx, args.adapter, show)
    print_card(card)
    if args.json:
        Path(args.json).write_text(json.dumps(card, indent=2, ensure_ascii=False))


def print_card(card: dict) -> None:
    """The card as a table, then the verdict (its last line)."""
    tests = card["test_examples"]
    print(f"{card['adapter']}: {card['n']} test examples ({tests['held_out']} held out by "
          f"its run, {tests['test_only']} marked test only)")
    if card["measure"]:
        print(f"decided by {card['measure']['name']}: {card['measure']['why']}")
        others = [m["name"] for m in card["measures"] if m["name"] != card["measure"]["name"]]
        print(f"{'model':<22}{'score':>7}  {'95% interval':<14}"
              + "".join(f"{name:>8}" for name in others)
              + f"{'prompt tokens':>14}{'ms/answer':>10}{'training s':>12}")
        for c in card["contenders"]:
            print(f"{c['name']:<22}{c['score']:>7.1f}  {c['ci_low']:>5.1f} to {c['ci_high']:<6.1f}"
                  + "".join(f"{c['scores'][name]:>8.1f}" for name in others)
                  + f"{c['prompt_tokens']:>14}{c['latency_ms']:>10}"
                  f"{c.get('training_s') or '':>12}")
        for phrase in card["style_phrases"]:
            carried = ", ".join(f"{c['name']} {c['style'][phrase]:.0f}%"
                                for c in card["contenders"])
            print(f"style: {phrase!r} carried by {carried}")
    for skipped in card["skipped"]:
        print(f"skipped {skipped['name']}: {skipped['why']}")
    for left in card.get("left_out", []):
        print(f"not a test of it: example #{left['id']}, {left['why']}")
    from services import general

    print(general.line(card["general"], card["adapter"]))
    for flip in next(m for m in card["general"]["models"]
                     if m["name"] == card["adapter"])["flips"]:
        print(f"  {flip['now']:>5} now  {flip['question']}  base: {flip['base'][:60]!r}  "
              f"{card['adapter']}: {flip['answer'][:60]!r}")
    for fix in (card.get("corrections") or {}).get("old_way", []):
        print(f"still answered the old way: correction #{fix['id']} {fix['prompt']!r}: "
              f"{fix['answer'][:60]!r}")
    decided = card.get("decision")
    if decided and decided.get("why") == "newer":
        print(f"this card decided nothing: {decided['newer']} finished before it, and its "
              "card decides which model new chats use")
    elif decided and decided["run"] == card.get("run"):
        print(f"new chats use {card['adapter'] if decided['adopted'] else decided['in_use']} "
              f"(decided by this run's first card: {decided.get('why', 'scores')})")
    print(card["verdict"])


def add_check(settings: Settings, args: argparse.Namespace) -> None:
    from services import examples

    example_id = examples.add_check(open_context(settings), args.prompt, args.answer)
    print(f"Check #{example_id}: every report card asks the base and the adapter "
          f"{args.prompt!r} and counts an answer with {args.answer!r} as right.")


def runs(settings: Settings, args: argparse.Namespace) -> None:
    from services import training

    ctx = open_context(settings)
    if args.show:
        print_lineage(training.lineage(ctx, args.show))
        return
    rows = training.history(ctx, 1000)
    if not rows:
        print("No training runs yet.")
    for run in rows:
        metrics = run["metrics"]
        loss = (f"eval loss {metrics['eval_loss_before']:.3f} -> {metrics['eval_loss_after']:.3f}"
                if "eval_loss_after" in metrics else "")
        print(f"#{run['id']:<4} {run['status']:<10} {run['adapter'] or '-':<10} "
              f"{run['created_at']}  {run['example_count'] or 0} examples  {loss}"
              f"{'  ' + run['error'] if run['error'] else ''}".rstrip())


def print_lineage(lineage) -> None:
    for label, value in lineage.summary():
        print(f"{label + ':':<16}{value}")
    for example in lineage.examples:
        prompt = " ".join(example.messages[-2]["content"].split())[:60]
        print(f"  #{example.example_id:<6} {example.split:<9} {example.source:<10} {prompt}")


def cancel(settings: Settings, args: argparse.Namespace) -> None:
    from services import training

    run_id = training.cancel(open_context(settings), args.run_id)
    print(f"Cancelling run #{run_id}.")


def import_examples(settings: Settings, args: argparse.Namespace) -> None:
    from services import examples, training

    ctx = open_context(settings)
    if args.threshold is not None:
        training.set_threshold(ctx, args.threshold)
    on_terminal = sys.stderr.isatty()
    done = examples.import_file(ctx, args.file, args.format, test_only=args.test,
                                mapping=args.map, skip_bad=args.skip_bad,
                                progress=_rows_read if on_terminal else None)
    if on_terminal:
        print("\r\033[K", end="", file=sys.stderr)  # the progress line goes
    print(done.message())
    if done.run_started:
        run_id = done.run_started
        print(f"Run #{run_id} trains in the background and goes on after this command "
              f"exits. Follow it: tunechat runs --show {run_id}. Cancel it: tunechat cancel "
              f"{run_id}.")


def _rows_read(rows: int) -> None:
    """A big import's progress on the terminal (it goes on overwriting one line)."""
    if rows % 50_000 == 0:
        print(f"\r{rows:,} rows read and checked…", end="", file=sys.stderr, flush=True)


def export_examples(settings: Settings, args: argparse.Namespace) -> None:
    from services import examples

    print(examples.export_file(open_context(settings), args.file, args.format,
                               args.run).message())


def facts_command(settings: Settings, args: argparse.Namespace) -> None:
    from services import facts

    ctx = open_context(settings)
    if args.facts_command == "add":
        print(_add_facts(ctx, args.item))
    elif args.facts_command == "list":
        found = facts.list_facts(ctx)
        for fact in found:
            print(f"#{fact.id:<5} {fact.source:<16} {' '.join(fact.text.split())}")
        print(f"{facts.n_facts(len(found))}." if found else
              "No facts yet. Add some: tunechat facts add FILE|TEXT")
    elif args.facts_command == "check":
        from services import examples

        print(examples.mark_facts_check(ctx, args.example_id, not args.off).lstrip("✓ "))
    elif args.source is not None and args.fact_id is None:
        gone = facts.delete_source(ctx, args.source)
        if not gone:
            sources = sorted({fact.source for fact in facts.list_facts(ctx)})
            raise BadFlag(f"No facts come from {args.source!r}. The sources are: "
                          f"{', '.join(sources) or 'none yet'}.")
        print(f"Removed {facts.n_facts(gone)} from {args.source}.")
    elif args.fact_id is not None and args.source is None:
        facts.delete(ctx, args.fact_id)
        print(f"Removed fact #{args.fact_id}.")
    else:
        raise BadFlag("Say which facts to remove: a fact's number (tunechat facts list shows "
                      "them), or --source NAME for all from one file.")


def _add_facts(ctx, item: str) -> str:
    """A path that exists is a file, "-" standard input, anything else the text itself
    (but a lone file name that is not there is a mistake, not a fact)."""
    import re

    from services import facts

    if item != "-" and Path(item).is_file():
        source = Path(item).name
        replaces = sum(fact.source == source for fact in facts.list_facts(ctx))
        name, added = facts.add_file(ctx, item)
        replaced = f", replacing the {replaces} it had before" if replaces else ""
        return f"Added {facts.n_facts(added)} from {name}{replaced}."
    if re.fullmatch(r"\S+\.(txt|text|md|markdown|csv|tsv|pdf)", item, re.IGNORECASE):
        raise BadFlag(f"There is no file {item} here ({Path.cwd()}). Give the file's path; "
                      "to add text, write it in a sentence.")
    added = len(facts.add_text(ctx, sys.stdin.read() if item == "-" else item))
    return (f"Added {facts.n_facts(added)}." if added else
            "Nothing new: those facts are stored already.")


COMMANDS = {"ask": ask, "import": import_examples, "export": export_examples, "train": train,
            "compare": compare, "export-model": export_model, "bench": bench, "runs": runs,
            "cancel": cancel, "eval": evaluate, "add-check": add_check,
            "facts": facts_command}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        if args.command in COMMANDS:
            COMMANDS[args.command](settings, args)
        else:
            serve(settings, getattr(args, "threshold", None),
                  getattr(args, "standby_trainer", True), getattr(args, "engine", "auto"))
    except UserError as error:  # anything else is a bug, and keeps its traceback
        print(f"tunechat: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
