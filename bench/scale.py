"""`python -m bench.scale [--rows 1000000] [--json FILE]`: the dataset at scale.

import      `tunechat import` of a generated JSONL file (about 1 KB a row, one row in a
            hundred a repeat) in its own process: rows/s, wall time, peak memory (RSS),
            and how long the app's own writes (an example added every 50 ms from this
            process, as a keep in the chat would be) waited for the database meanwhile.
examples    the Examples tab's work on that data home: opening it (the first page with
            the readiness meter), a later page, a search that finds a few rows and one
            that finds none (medians of `repeats`).
The file is written under --work (default: a temporary folder), which needs about
1.1 GB free per million rows for the file, the database and the import's scratch file."""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = ("coffee beans roast morning latte shop barista cup order milk sugar oat "
         "espresso weekend opening hours price seasonal blend decaf pastry table wifi "
         "delivery loyalty card receipt refund recipe grinder kettle filter").split()


def write_rows(path: Path, rows: int) -> int:
    """A JSONL file of `rows` two-turn examples of about 1 KB; returns its size."""
    with path.open("w", encoding="utf-8") as out:
        for n in range(rows):
            n = n - 1 if n % 100 == 99 else n  # one row in a hundred repeats the one before
            words = random.Random(n).choices(WORDS, k=150)
            question = f"Question {n}: " + " ".join(words[:20]) + "?"
            answer = " ".join(words[20:]) + f". Answer {n}, see you soon!"
            out.write(json.dumps({"messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer}]}) + "\n")
    return path.stat().st_size


def bench_import(path: Path, home: Path, rows: int) -> dict:
    """`tunechat import` in a child process; ru_maxrss of the children is its peak RSS
    (the only child so far). Meanwhile this process writes as the app would."""
    from storage.db import open_store

    store = open_store(home)  # created (migrated) before either process writes
    waits: list[float] = []
    importing = threading.Event()
    importing.set()
    writer = threading.Thread(target=_write_as_the_app, args=(store, importing, waits))
    writer.start()
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app", "import", str(path), "--home", str(home),
             "--threshold", "0"], capture_output=True, text=True)
    finally:
        seconds = time.perf_counter() - started
        importing.clear()
        writer.join()
    if result.returncode != 0:
        raise RuntimeError(f"The import failed: {result.stderr.strip() or result.stdout}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1),
            "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak_kib / 1024, 1),
            "app_writes": len(waits),
            "app_write_wait_p50_s": round(statistics.median(waits), 3) if waits else None,
            "app_write_wait_max_s": round(max(waits), 3) if waits else None,
            "said": result.stdout.strip().splitlines()[-1]}


def _write_as_the_app(store, importing: threading.Event, waits: list[float]) -> None:
    """Add an example every 50 ms while `importing` is set; each write's wait."""
    from storage import examples

    n = 0
    while importing.is_set():
        started = time.perf_counter()
        examples.add_example(store, [{"role": "user", "content": f"A live question {n}?"},
                                     {"role": "assistant", "content": "A live answer."}])
        waits.append(time.perf_counter() - started)
        n += 1
        time.sleep(0.05)


def bench_examples_tab(home: Path, repeats: int) -> dict:
    from services.context import Context
    from storage.db import open_store
    from web.examples import ExampleHandlers

    tab = ExampleHandlers(Context(open_store(home)))
    total = tab.overview()[3]

    def median_s(*args) -> float:
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            tab.overview(*args)
            samples.append(time.perf_counter() - started)
        return round(statistics.median(samples), 3)

    return {"shown": total,
            "open_s": median_s(),
            "page_1000_s": median_s("", "all", 1000),
            "search_few_s": median_s("answer 4242,", "all", 1),
            "search_none_s": median_s("no such words anywhere", "all", 1)}


def measure(rows: int, repeats: int, under: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tunechat-scale-", dir=under))
    try:
        path = work / "rows.jsonl"
        write_rows(path, rows)
        results = {"import": bench_import(path, work / "home", rows)}
        path.unlink()
        results["examples_tab"] = bench_examples_tab(work / "home", repeats)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000],
                        help="one measurement per number of rows")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, help="folder for the file and the data home")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = {str(rows): measure(rows, args.repeats, args.work) for rows in args.rows}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
