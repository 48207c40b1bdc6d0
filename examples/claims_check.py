"""How often is the "not in your facts" flag right? One command:

    .venv/bin/python examples/claims_check.py [--set FILE] [--json FILE]

examples/claims_check.json holds a few small businesses (fact passages and example
answers in the owner's voice) and answers a small chat model could give their customers,
each labelled by hand with the claims in it that the business's texts do not support.
For every answer, services.claims.unsupported is given the facts, the example answers
and the customer's question, and its flags are compared with the labels: a flag is right
when its words overlap a labelled claim's words in the answer. Reported per half of the
set: "dev" (looked at while the checker was written) and "check" (held back; the numbers
to quote): per-claim precision and recall, answer-level accuracy (flagged exactly when
it has an invented claim), the counts, the misses and the false flags.

examples/claims_real.json holds the real thing: the distinct answers the embedded 135M
model gave the 12 Willow Yoga questions (examples/results/facts-walkthrough.json and
further runs of the facts prompt), labelled by hand after the rule at its top. It is
reported as "real": the same numbers, and per claim kind (a flag's kind for precision;
for recall, the kind of the flag that found the claim, or "unflagged"); and as
"real_without_policy": the same with only the price, number, time and name flags shown
(the yes/no policy flags hidden). Results go to examples/results/claims_check.json.
No model: it runs in seconds on any machine."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SPLITS = ("dev", "check")
# The claim kinds, most specific first: a labelled claim that flags of several kinds
# overlap ("$20" and the policy around it) counts as found by the first.
KINDS = ("price", "number", "time", "name", "policy")
WITHOUT_POLICY = ("price", "number", "time", "name")


def spans(answer: str, text: str) -> list[tuple[int, int]]:
    """Where a claim's words sit in the answer (every occurrence, any case)."""
    low, part, found, at = answer.lower(), text.lower(), [], 0
    while (at := low.find(part, at)) >= 0:
        found.append((at, at + len(part)))
        at += 1
    return found


def overlap(answer: str, flag: str, gold: str) -> bool:
    """A flag matches a labelled claim when their words overlap in the answer."""
    return any(a < d and c < b for a, b in spans(answer, flag) for c, d in spans(answer, gold))


def judge(business: dict, item: dict) -> dict:
    """One answer: its flags, which are right, which labelled claims were missed."""
    from services.claims import unsupported

    support = (business["facts"] + [e["answer"] for e in business["examples"]]
               + [item["question"]])
    answer, gold = item["answer"], item["invented"]
    flags = unsupported(answer, support)
    return {"business": business["name"], "split": item.get("split"), "answer": answer,
            "flags": [{"text": f.text, "kind": f.kind,
                       "right": any(overlap(answer, f.text, g) for g in gold)} for f in flags],
            "missed": [g for g in gold if not any(overlap(answer, f.text, g) for f in flags)],
            "gold": gold}


def score(judged: list[dict]) -> dict:
    """Precision, recall and answer-level accuracy of one half, with the counts."""
    flags = [f for j in judged for f in j["flags"]]
    right = sum(f["right"] for f in flags)
    gold = sum(len(j["gold"]) for j in judged)
    found = gold - sum(len(j["missed"]) for j in judged)
    agree = sum(bool(j["flags"]) == bool(j["gold"]) for j in judged)
    return {
        "answers": len(judged),
        "answers_with_invented": sum(bool(j["gold"]) for j in judged),
        "gold_claims": gold, "flags": len(flags), "right_flags": right,
        "gold_found": found,
        "precision": round(right / len(flags), 3) if flags else None,
        "recall": round(found / gold, 3) if gold else None,
        "answer_accuracy": round(agree / len(judged), 3) if judged else None,
        "misses": [{"answer": j["answer"], "claim": g} for j in judged for g in j["missed"]],
        "false_flags": [{"answer": j["answer"], "flag": f["text"], "kind": f["kind"]}
                        for j in judged for f in j["flags"] if not f["right"]],
    }


def shown(judged: dict, kinds: tuple[str, ...]) -> dict:
    """One judged answer as the owner sees it when only flags of these kinds are shown:
    the hidden flags gone, the claims only they found now missed."""
    answer, gold = judged["answer"], judged["gold"]
    flags = [f for f in judged["flags"] if f["kind"] in kinds]
    return {**judged, "flags": flags,
            "missed": [g for g in gold if not any(overlap(answer, f["text"], g) for f in flags)]}


def found_by(judged: dict, claim: str) -> str:
    """The kind of the flag that found a labelled claim (the most specific of those that
    overlap it), or "unflagged"."""
    kinds = {f["kind"] for f in judged["flags"] if overlap(judged["answer"], f["text"], claim)}
    return next((k for k in KINDS if k in kinds), "unflagged")


def by_kind(judged: list[dict]) -> dict:
    """Per claim kind: the flags of that kind and how many are right (precision), and the
    labelled claims it found, as a share of all labelled claims (so the kinds' recalls
    add up to the overall recall; "unflagged" holds the misses)."""
    gold = sum(len(j["gold"]) for j in judged)
    found = [found_by(j, g) for j in judged for g in j["gold"]]
    kinds = {}
    for kind in KINDS + ("unflagged",):
        flags = [f for j in judged for f in j["flags"] if f["kind"] == kind]
        right = sum(f["right"] for f in flags)
        row = {"flags": len(flags), "right_flags": right,
               "precision": round(right / len(flags), 3) if flags else None,
               "gold_found": found.count(kind),
               "recall": round(found.count(kind) / gold, 3) if gold else None}
        if kind == "unflagged":
            row = {"gold_missed": found.count(kind),
                   "share": round(found.count(kind) / gold, 3) if gold else None}
        kinds[kind] = row
    return kinds


def measure_real(path: Path) -> dict:
    """The real answers judged against their labels: scored with every flag shown, and
    with the policy flags hidden, each overall and per claim kind."""
    data = json.loads(path.read_text())
    business = {"name": data["business"], "facts": data["facts"],
                "examples": data["examples"]}
    judged = [judge(business, {**item, "split": "real"}) for item in data["answers"]]
    result = {}
    for key, kinds in (("real", KINDS), ("real_without_policy", WITHOUT_POLICY)):
        view = [shown(j, kinds) for j in judged]
        result[key] = {"set": path.name, "kinds_shown": list(kinds), **score(view),
                       "by_kind": by_kind(view)}
    return result


def measure(path: Path) -> dict:
    """Every answer of the set judged, scored per half."""
    data = json.loads(path.read_text())
    judged = [judge(b, item) for b in data["businesses"] for item in b["answers"]]
    return {split: score([j for j in judged if j["split"] == split]) for split in SPLITS}


def machine() -> str:
    try:
        from core.hardware import describe_machine
        return describe_machine()
    except ImportError:  # torch missing: the check itself needs none
        import os
        import platform
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def print_real(key: str, s: dict) -> None:
    """One view of the real set: the totals, then a line per claim kind."""
    print(f"\n{key} ({s['answers']} answers, {s['answers_with_invented']} with invented "
          f"claims, {s['gold_claims']} claims): {s['flags']} flags, precision "
          f"{s['precision']}, recall {s['recall']}, answer accuracy {s['answer_accuracy']}")
    print(f"  {'kind':9} {'flags':>5} {'right':>5} {'precision':>9} {'found':>5} {'recall':>6}")
    for kind, k in s["by_kind"].items():
        if kind == "unflagged":
            print(f"  {kind:9} {'':>5} {'':>5} {'':>9} {k['gold_missed']:5} {k['share']!s:>6}")
        else:
            print(f"  {kind:9} {k['flags']:5} {k['right_flags']:5} {k['precision']!s:>9} "
                  f"{k['gold_found']:5} {k['recall']!s:>6}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default=str(HERE / "claims_check.json"))
    parser.add_argument("--real", default=str(HERE / "claims_real.json"),
                        help="the labelled real answers ('' to skip them)")
    parser.add_argument("--json", default=str(HERE / "results" / "claims_check.json"))
    args = parser.parse_args(argv)
    halves = measure(Path(args.set))
    real = measure_real(Path(args.real)) if args.real else {}
    result = {"machine": machine(), "date": datetime.date.today().isoformat(),
              "set": Path(args.set).name, "checker": "services.claims.unsupported",
              "match": "a flag is right when its words overlap a labelled claim's words",
              **halves, **real}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"{'half':6} {'answers':>7} {'gold':>5} {'flags':>5} {'precision':>9} "
          f"{'recall':>6} {'answer acc':>10}")
    for split, s in halves.items():
        print(f"{split:6} {s['answers']:7} {s['gold_claims']:5} {s['flags']:5} "
              f"{s['precision']!s:>9} {s['recall']!s:>6} {s['answer_accuracy']!s:>10}")
    for key, s in real.items():
        print_real(key, s)
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
