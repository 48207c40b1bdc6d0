"""Which way of placing facts in the prompt does the embedded base model follow best?

    .venv/bin/python examples/facts_prompt_forms.py [--out FILE]

Willow Yoga's 12 unseen questions (examples/willow-yoga.questions.json), each with the
passages of her facts sheet most relevant to it (BM25 with a Snowball stemmer, as the
few-shot examples are found; --k 3 by default, and the whole sheet as a second setting),
answered greedily by the base model (SmolLM2-135M-Instruct as the app loads it) with the
facts placed in one of three forms:

  system: in the system prompt ("Answer using these facts about Willow Yoga:\\n- ...");
  turn:   as an earlier exchange (user: "What should I know about Willow Yoga?",
          assistant: the facts), then the question;
  inline: in the user message, right before the question ("Facts:\\n- ...\\n\\n
          Question: ...");

and without facts, for reference. Counts the answers that agree with the facts (the
questions file's must_say rule, see facts_walkthrough.agrees) and those with a claim the
whole sheet does not back (services.claims.unsupported), and writes every answer to
examples/results/facts-prompt-forms.json. --rescore scores the stored answers again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from facts_walkthrough import _found, agrees, fact_passages, questions, voice_examples, voice_kept  # noqa: E402

ABOUT = "What should I know about Willow Yoga?"


def bullets(passages: list[str]) -> str:
    return "\n".join(f"- {p}" for p in passages)


def form_system(passages: list[str], question: str) -> list[dict]:
    return [{"role": "system",
             "content": f"Answer using these facts about Willow Yoga:\n{bullets(passages)}"},
            {"role": "user", "content": question}]


def form_turn(passages: list[str], question: str) -> list[dict]:
    return [{"role": "user", "content": ABOUT},
            {"role": "assistant", "content": bullets(passages)},
            {"role": "user", "content": question}]


def form_inline(passages: list[str], question: str) -> list[dict]:
    return [{"role": "user",
             "content": f"Facts:\n{bullets(passages)}\n\nQuestion: {question}"}]


def form_none(passages: list[str], question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


FORMS = {"system": form_system, "turn": form_turn, "inline": form_inline,
         "no facts": form_none}


def retriever(passages: list[str]):
    """Top-k passages for a question: BM25 over stemmed words, stop words dropped."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")

    def tokenize(texts):
        return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)

    index = bm25s.BM25()
    index.index(tokenize(passages), show_progress=False)

    def top(question: str, k: int) -> list[str]:
        found, scores = index.retrieve(tokenize([question]), k=min(k, len(passages)),
                                       show_progress=False)
        return [passages[i] for i, s in zip(found[0], scores[0]) if s > 0]

    return top


def main(argv: list[str] | None = None) -> int:
    from assistant.bases import load_model
    from assistant.engine import ChatEngine
    from core.hardware import describe_machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=3, help="passages placed per question")
    parser.add_argument("--max-new-tokens", type=int, default=120)
    parser.add_argument("--out", default=str(HERE / "results" / "facts-prompt-forms.json"))
    parser.add_argument("--rescore", action="store_true",
                        help="score the answers in --out again (after the rule changed)")
    parser.add_argument("--home", help="with --adapter: the data home holding it")
    parser.add_argument("--adapter", help="also ask this adapter of --home (e.g. the "
                        "walkthrough's run-1), top-k only, with and without 4 of the voice "
                        "examples as earlier turns; added to --out as with_adapter")
    args = parser.parse_args(argv)
    if args.rescore:
        return rescore(Path(args.out))
    if args.adapter:
        return with_adapter(Path(args.out), Path(args.home), args.adapter, args.k,
                            args.max_new_tokens)
    passages, asked = fact_passages(), questions()
    top = retriever(passages)
    settings = {f"top-{args.k}": [top(q["question"], args.k) for q in asked],
                "whole sheet": [passages for _ in asked]}
    retrieval_hits = sum(any(_found(entry[0], " ".join(found)) for entry in q["must_say"])
                         for q, found in zip(asked, settings[f"top-{args.k}"]))
    engine = ChatEngine(load_model(None))
    report: dict = {"machine": describe_machine(), "date": datetime.date.today().isoformat(),
                    "model": engine.name, "questions": len(asked), "k": args.k,
                    "retrieval_hits": retrieval_hits,
                    "rule": "facts_walkthrough.agrees (must_say / must_not_say)",
                    "totals": {}, "answers": {}}
    print(f"top-{args.k} retrieval holds the answer for {retrieval_hits}/{len(asked)}")
    for setting, placed in settings.items():
        for form, build in FORMS.items():
            if form == "no facts" and setting != f"top-{args.k}":
                continue
            key = f"{form} / {setting}" if form != "no facts" else form
            started = time.monotonic()
            answers = engine.reply_many([build(p, q["question"]) for p, q in zip(placed, asked)],
                                        "base", args.max_new_tokens)
            right = [agrees(a, q) for a, q in zip(answers, asked)]
            rows = [{"question": q["question"], "facts": p, "answer": a, "agrees": r}
                    for q, p, a, r in zip(asked, placed, answers, right)]
            report["answers"][key] = rows
            report["totals"][key] = {"agrees": sum(right), "invents": invents(rows),
                                     "seconds": round(time.monotonic() - started, 1)}
            print(f"{key:<24} {sum(right):>2}/{len(asked)} agree, "
                  f"{report['totals'][key]['invents']} invent", flush=True)
    write(report, Path(args.out))
    return 0


def with_adapter(out: Path, home: Path, adapter: str, k: int, max_new_tokens: int) -> int:
    """The three forms asked of an adapter, alone and after the 4 voice examples most
    like the question (as +examples places them), added to the results in `out`."""
    from assistant.bases import load_model
    from assistant.engine import ChatEngine
    from services.fewshot import ExamplePool, as_turns

    report = json.loads(out.read_text())
    asked, top = questions(), retriever(fact_passages())
    placed = [top(q["question"], k) for q in asked]
    pool = ExamplePool(voice_examples(), list(range(len(voice_examples()))))
    engine = ChatEngine(load_model(None), adapters_dir=home / "adapters")
    result: dict = {"adapter": adapter, "k": k, "totals": {}, "answers": {}}
    for shots in (0, 4):
        for form, build in FORMS.items():
            key = f"{form}" + (" + 4 examples" if shots else "")
            conversations = []
            for p, q in zip(placed, asked):
                asking = build(p, q["question"])
                earlier = [m for _, e in pool.nearest(asking[-1:], shots) for m in as_turns(e)]
                head = asking[:1] if asking[0]["role"] == "system" else []
                conversations.append(head + earlier + asking[len(head):])
            answers = engine.reply_many(conversations, adapter, max_new_tokens)
            rows = [{"question": q["question"], "facts": f, "answer": a,
                     "agrees": agrees(a, q), "voice": voice_kept(a)}
                    for q, f, a in zip(asked, placed, answers)]
            result["answers"][key] = rows
            result["totals"][key] = {"agrees": sum(r["agrees"] for r in rows),
                                     "voice": sum(r["voice"] for r in rows),
                                     "invents": invents(rows)}
            print(f"{adapter} {key:<24} {result['totals'][key]}", flush=True)
    report["with_adapter"] = result
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"results: {out}")
    return 0


def invents(rows: list[dict]) -> int | None:
    """Answers with a claim the whole sheet and the question do not back (each row gets
    its flags); None where services/claims.py is not there."""
    try:
        from services import claims
    except ImportError:
        return None
    sheet = fact_passages()
    for row in rows:
        row["flags"] = [{"text": c.text, "kind": c.kind}
                        for c in claims.unsupported(row["answer"], sheet + [row["question"]])]
    return sum(bool(row["flags"]) for row in rows)


def write(report: dict, out: Path) -> None:
    ranked = sorted(((t["agrees"], k) for k, t in report["totals"].items()
                     if k.endswith(f"top-{report['k']}")), reverse=True)
    report["best_with_top_k"] = ranked[0][1]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"results: {out}")


def rescore(out: Path) -> int:
    """The stored answers scored again with the questions file's rule as it is now."""
    report = json.loads(out.read_text())
    by_question = {q["question"]: q for q in questions()}
    for key, rows in report["answers"].items():
        for row in rows:
            row["agrees"] = agrees(row["answer"], by_question[row["question"]])
        report["totals"][key]["agrees"] = sum(row["agrees"] for row in rows)
        report["totals"][key]["invents"] = invents(rows)
        print(f"{key:<24} {report['totals'][key]['agrees']:>2}/{len(rows)} agree, "
              f"{report['totals'][key]['invents']:>2} invent")
    extra = report.get("with_adapter", {"answers": {}})
    for key, rows in extra["answers"].items():
        for row in rows:
            row["agrees"] = agrees(row["answer"], by_question[row["question"]])
        extra["totals"][key].update(agrees=sum(row["agrees"] for row in rows),
                                    invents=invents(rows))
        print(f"{extra['adapter']} {key:<24} {extra['totals'][key]}")
    write(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
