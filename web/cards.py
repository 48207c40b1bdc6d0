"""The report card in the page: the verdict, a table, a chart of each model's score with
its likely range, and one row per test example. Plain HTML and SVG, drawn here.

Everything a person reads names the models in plain words (`say`, services/names.py)
and says what a number means; the technical words (run-1, held out, chrF, the 95%
interval, p) sit in the card's "Details", one click away."""

from __future__ import annotations

import html

from core.adapters import BASE
from services import contenders, report
from services.names import AS_IS, Names

CARD_HEADERS = ["model", "score (of 100)", "likely range", "question length it reads (word pieces)",
                "time per answer (ms)", "training time (s)"]
BAR_COLORS = {"base": "#9ca3af", "base+examples": "#60a5fa", "base+facts": "#34d399",
              "base+facts+examples": "#34d399"}
"""The base's forms; a named baseline has its colour in contenders.BASELINES."""
ADAPTER_COLOR = "#f97316"


def bar_color(name: str) -> str:
    known = contenders.BASELINES.get(name)
    return known.colour if known else BAR_COLORS.get(name, ADAPTER_COLOR)


MEASURE_WORDS = {
    "style": "whether each answer keeps what most of your answers share (a greeting, a "
             "sign-off)",
    "chrf": "how close each answer is to your own words, 0 to 100",
    "exact": "whether each answer is exactly the label you wrote",
    "json": "the share of your JSON fields each answer gets exactly right"}
"""What decides a verdict, in the words of someone who never heard of chrF."""
SKIPPED_WORDS = {
    contenders.PROMPT: "you have not written instructions yet. In the Train tab, open *Would "
                       "a prompt have done as well?*, write the instructions you would give "
                       "the plain model instead of training it, save them, then press "
                       "*Measure again*"}
"""Why a contender was not measured, as the web app says it: where to click (the card's
own `why` is the command line's, and older cards name a command)."""
UNSCORED_WORDS = {
    "other_models": "between models not on this card",
    "no_winner": "with no winner (a tie or both bad)",
    "no_answers": "without their answers (from an older version)",
    "nothing_to_score": "on a question that is no test example, with no style to look for",
    "same_score": "where both answers scored the same, so the score picks no winner"}
"""Why a vote was not scored (services/report.py UNSCORED)."""
LEFT_OUT_WORDS = {"not_endorsed": "not an answer to imitate",
                  "trained": "it learned from this one",
                  "same_prompt": "it learned from the same question"}
"""Why a test example was left out (storage/placement.py test_set's `reason`)."""
ANSWER_WORDS = {"yes": "Yes", "no": "No", "even": "Not clearly", "too_few": "Too early to say"}
"""The first words of the card's answer (services/report.py answer), as its headline
starts and as the Train tab quotes it: one verdict, in the same words, on both tabs."""
CLIP = 80
"""The most characters of an answer a flipped question's line quotes."""


def headline(card: dict, say: Names) -> str:
    """The card's answer to "was it worth it?" in one line a person reads first ("" for
    a card stored by an older version that lacks a field it reads)."""
    try:
        found = report.answer(card)
    except (KeyError, IndexError, TypeError, ValueError):
        return ""
    adapter, rival = card["adapter"], found["rival"]
    line = ANSWER_WORDS[found["answer"]] + {
        "yes": f": {say(adapter)} does better than every option that needs no training.",
        "no": f": {say(rival)} does better, and needs no training.",
        "even": f": {say(rival)} does about as well, and needs no training.",
        "too_few": ": too few of your examples are set aside to test it on (see below how "
                   "to add some)."}[found["answer"]]
    if found["forgot"]:
        line += (f" And it forgot some things {say(BASE)} knew (see *General knowledge* "
                 "below).")
    return line


def card_names(card: dict) -> list[str]:
    """Every model a card names, for `say`."""
    found = [c["name"] for c in card.get("contenders", [])] + [card["adapter"], BASE]
    found += [s["name"] for s in card.get("skipped", [])]
    found += [m["name"] for m in (card.get("general") or {}).get("models", [])]
    return list(dict.fromkeys(found))


def summary_markdown(card: dict, say: Names = AS_IS) -> str:
    adapter, tests = card["adapter"], card["test_examples"]
    answer = headline(card, say)
    lines = [f"### Was {say(adapter)} worth it?"] + [f"**{answer}**"] * bool(answer) + [
        _verdict(card, say), "",
             f"Tested on {card['n']} of your examples that {say(adapter)} never learned "
             f"from: {tests['held_out']} its training run set aside, {tests['test_only']} "
             "you marked for testing only."]
    left_out = card.get("left_out", [])
    if left_out:
        lines.append(f"Left out of its tests: {len(left_out)} example"
                     f"{'s' * (len(left_out) > 1)}, "
                     + "; ".join(f"#{e['id']} ({LEFT_OUT_WORDS.get(e.get('reason', ''), e['why'])})"
                                 for e in left_out[:5])
                     + ("; ..." if len(left_out) > 5 else "") + ".")
    if card.get("measure"):
        name = card["measure"]["name"]
        lines.append(f"What decided: {MEASURE_WORDS.get(name, name)}.")
    for phrase in card.get("style_phrases", []):
        carried = ", ".join(f"{say(c['name'])} {c['style'][phrase]:.0f}%"
                            for c in card["contenders"])
        lines.append(f"Style: most of your answers have \"{html.escape(phrase)}\"; the share "
                     f"of answers that have it: {carried}.")
    checked = card.get("facts_check") or {}
    if checked.get("n"):
        agreed = ", ".join(f"{say(name)} {share:.0f}%"
                           for name, share in checked["scores"].items())
        lines.append(f"Facts check: answers to your {checked['n']} facts checks that agree "
                     f"with your facts (no claim your facts do not back, none of yours "
                     f"left out): {agreed}.")
    for skipped in card.get("skipped", []):
        why = SKIPPED_WORDS.get(skipped["name"], skipped["why"])
        lines.append(f"Not measured: {say(skipped['name'])}, because {why}.")
    if card.get("general"):
        lines += general_lines(card, say)
    votes = votes_line(card.get("votes") or {})
    if votes:
        lines.append(votes)
    return "  \n".join(lines) + "\n\n" + details_markdown(card, say)


def _verdict(card: dict, say: Names) -> str:
    """The verdict with `say`'s names; the stored one where it cannot be told again (a
    card stored by an older version may lack a field the sentences read)."""
    if say == AS_IS:
        return card["verdict"]
    try:
        return report.retold(card, say)
    except (KeyError, IndexError, TypeError, ValueError):
        return card["verdict"]


def details_markdown(card: dict, say: Names = AS_IS) -> str:
    """The technical words, folded: the verdict as the command line and the API give
    it, each model's technical name, and what the numbers are."""
    tests = card["test_examples"]
    named = "; ".join(f"{say.first(name)} = `{name}`" for name in card_names(card)
                      if say(name) != name)
    lines = [f"The verdict as the command line and the API give it: {card['verdict']}",
             f"Models: {named}." if named else "",
             f"Test examples: {tests['held_out']} held out by its run, {tests['test_only']} "
             "marked test only."]
    if card.get("measure"):
        lines.append(f"Measure: {card['measure']['name']} ({card['measure']['why']}).")
    lines += ["Likely range: the 95% bootstrap interval of the mean score. A difference is "
              "called beyond chance when a paired test (exact sign test for right/wrong "
              "scores, permutation test for closeness) gives p < 0.05, Holm-adjusted over "
              "the options without training (the prompting baselines); p is how often "
              "chance alone gives a gap that big.",
              "Question length it reads: the prompt tokens per request (word pieces the "
              "model reads, instructions and examples in the prompt included); "
              "time per answer: answers generated in batches, divided by their number."]
    body = "  \n".join(line for line in lines if line)
    return f"<details><summary>Details: the technical words</summary>\n\n{body}\n\n</details>"


def general_lines(card: dict, say: Names = AS_IS, shown: int = 8) -> list[str]:
    """The general check: how many each got right, and the questions that flipped (all
    of them: those past `shown` folded)."""
    block, adapter = card["general"], card["adapter"]
    by = {m["name"]: m for m in block["models"]}
    mine, n = by[adapter], block["n"]
    line = (f"General knowledge: {say(BASE)} {by[BASE]['right']}/{n}, {say(adapter)} "
            f"{mine['right']}/{n} (lost {mine['lost']} that {say(BASE)} got right, gained "
            f"{mine['gained']})")
    if block["users"]:
        line += f"; {block['users']} of the questions are your own must-not-change checks"
    flips = [_flip_line(flip, adapter, say) for flip in mine["flips"]]
    lines = [f"**{line}.**"] + flips[:shown]
    if len(flips) > shown:
        lines.append(f"<details><summary>... and {len(flips) - shown} more</summary>\n\n"
                     + "  \n".join(flips[shown:]) + "\n\n</details>")
    return lines


def _flip_line(flip: dict, adapter: str, say: Names) -> str:
    """One flipped question on one line: each answer on a single line, in italics that
    nothing in it can break, clipped at a word."""
    return (f"{'✗ now wrong' if flip['now'] == 'wrong' else '✓ now right'}: "
            f"{markdown_safe(clipped(flip['question'], 2 * CLIP))} {say.first(BASE)}: "
            f"{_italics(flip['base'])} · {say.first(adapter)}: {_italics(flip['answer'])}")


def clipped(text: str, most: int = CLIP) -> str:
    """`text` on one line (every run of spaces and line breaks one space), at most `most`
    characters, cut after a whole word with "…"."""
    text = " ".join(str(text or "").split())
    if len(text) <= most:
        return text
    cut = text[:most + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > most // 2 else text[:most]
    return cut.rstrip(" ,;:.-") + "…"


def markdown_safe(text: str) -> str:
    """Text that Markdown shows as it is: HTML escaped, and the characters that start
    emphasis or code backslashed."""
    escaped = html.escape(text).replace("\\", "\\\\")
    for mark in "_*`[]":
        escaped = escaped.replace(mark, "\\" + mark)
    return escaped


def _italics(answer: str) -> str:
    shown = clipped(answer)
    return f"_{markdown_safe(shown)}_" if shown else "(no answer)"


def votes_line(votes: dict) -> str:
    """How often the automatic score picks the winner you picked, and why the votes it
    could not score were not ("" before any vote)."""
    unscored = {why: n for why, n in (votes.get("unscored") or {}).items() if n}
    if not votes.get("scored") and not unscored:
        return ""
    if votes.get("scored"):
        scored = votes["scored"]
        line = (f"Your votes: the automatic score picks the same winner as you in "
                f"{votes['agree']} of the {scored} vote{'s' * (scored > 1)} it could score "
                f"({votes['agreement']:.0f}%).")
    else:
        line = "Your votes: the automatic score could not score any of them yet."
    if unscored:
        line += " Not scored: " + "; ".join(
            f"{n} vote{'s' * (n > 1)} {UNSCORED_WORDS.get(why, why)}"
            for why, n in unscored.items()) + "."
    return line


def card_rows(card: dict, say: Names = AS_IS) -> list[list]:
    return [[say.first(c["name"]), c["score"], f"{c['ci_low']:.0f} to {c['ci_high']:.0f}",
             c["prompt_tokens"], c["latency_ms"], c.get("training_s") or ""]
            for c in card.get("contenders", [])]


def example_rows(card: dict, say: Names = AS_IS) -> tuple[list[str], list[list]]:
    """(headers, rows): each test example with every model's answer and score,
    corrections first, and where a model did better or worse than the base."""
    names = [c["name"] for c in card.get("contenders", [])]
    headers = ["#", "source", "question", "your answer"] + [
        f"{say.first(name)} [score]" for name in names] + [
        f"better or worse than {say(BASE)}"]
    rows = []
    for row in card.get("rows", []):
        answers = [f"{row['answers'][n]['text']}  [{row['answers'][n]['score']:.0f}]"
                   for n in names]
        flips = ", ".join(f"{say.first(n)} {'fixed it' if f == 'fixed' else 'broke it'}"
                          for n, f in row["flips"].items())
        rows.append([row["id"], row["source"] + (" (test only)" * (row["split"] ==
                                                                   "test_only")),
                     row["prompt"], row["reference"]] + answers + [flips])
    return headers, rows


def chart_svg(card: dict, say: Names = AS_IS, width: int = 640) -> str:
    """One bar per model with its likely range as a whisker, 0 to 100; the names' column
    is as wide as the longest name needs."""
    bars = card.get("contenders", [])
    if not bars:
        return ""
    row_h, right = 28, 40
    left = max(150, 7 * max(len(say.first(bar["name"])) for bar in bars))
    width = max(width, left + 360)
    plot = width - left - right
    height = row_h * len(bars) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="score per model" font-family="sans-serif" '
             f'font-size="12">']
    for tick in range(0, 101, 25):
        x = left + plot * tick / 100
        parts.append(f'<line x1="{x:.0f}" y1="0" x2="{x:.0f}" y2="{height - 20}" '
                     f'stroke="#e5e7eb"/><text x="{x:.0f}" y="{height - 6}" '
                     f'text-anchor="middle" fill="#6b7280">{tick}</text>')
    for i, bar in enumerate(bars):
        y = i * row_h + 4
        color = bar_color(bar["name"])
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">'
            f'{html.escape(say.first(bar["name"]))}</text>'
            f'<rect x="{left}" y="{y}" width="{plot * bar["score"] / 100:.1f}" height="18" '
            f'fill="{color}"/>'
            f'<line x1="{left + plot * bar["ci_low"] / 100:.1f}" y1="{y + 9}" '
            f'x2="{left + plot * bar["ci_high"] / 100:.1f}" y2="{y + 9}" stroke="#111827" '
            f'stroke-width="2"/>'
            f'<text x="{left + plot * max(bar["ci_high"], bar["score"]) / 100 + 6:.1f}" '
            f'y="{y + 14}" fill="#111827">{bar["score"]:.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def runs_chart_svg(points: list[tuple[str, float, float, float]], width: int = 640) -> str:
    """The tuned assistant's score across runs (label, e.g. "#2", score, low, high), to
    see whether each run improved on the last. Labels that would overlap are thinned to
    every second, fifth... one (the last always shown)."""
    if not points:
        return ""
    height, left, bottom = 160, 40, 30
    step = (width - left - 30) / max(1, len(points) - 1)
    xs = [left + 10 + i * step if len(points) > 1 else width / 2 for i in range(len(points))]
    widest = 7 * max(len(p[0]) for p in points) + 8
    every = next(n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 10**9)
                 if n * step >= widest or len(points) == 1)

    def y(value: float) -> float:
        return 10 + (height - bottom - 10) * (1 - value / 100)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="score across runs" font-family="sans-serif" '
             f'font-size="12">']
    for tick in (0, 50, 100):
        parts.append(f'<line x1="{left}" y1="{y(tick):.0f}" x2="{width}" y2="{y(tick):.0f}" '
                     f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(tick) + 4:.0f}" '
                     f'text-anchor="end" fill="#6b7280">{tick}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y(p[1]):.1f}"
                    for i, (x, p) in enumerate(zip(xs, points)))
    parts.append(f'<path d="{path}" fill="none" stroke="{ADAPTER_COLOR}" stroke-width="2"/>'
                 f'<text x="{left - 6}" y="{height - 8}" text-anchor="end" fill="#6b7280">'
                 'run</text>')
    for i, (x, (name, score, low, high)) in enumerate(zip(xs, points)):
        last = len(points) - 1
        shown = i == last or (i % every == 0 and last - i >= every)
        parts.append(f'<line x1="{x:.1f}" y1="{y(low):.1f}" x2="{x:.1f}" y2="{y(high):.1f}" '
                     f'stroke="#111827"/><circle cx="{x:.1f}" cy="{y(score):.1f}" r="4" '
                     f'fill="{ADAPTER_COLOR}"><title>{html.escape(name)}: {score:.0f}'
                     f'</title></circle>')
        if shown:
            parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
                         f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
