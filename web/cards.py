"""The report card in the page: the verdict, a table, a chart of each model's score with
its likely range, and one row per test example. Plain HTML and SVG, drawn here."""

from __future__ import annotations

import html

CARD_HEADERS = ["model", "score", "likely range", "prompt tokens", "ms per answer (batched)",
                "training s"]
BAR_COLORS = {"base": "#9ca3af", "base+prompt": "#a78bfa", "base+examples": "#60a5fa"}
ADAPTER_COLOR = "#f97316"


def summary_markdown(card: dict) -> str:
    tests = card["test_examples"]
    lines = [f"### Was {card['adapter']} worth it?", f"**{card['verdict']}**", "",
             f"{card['n']} test examples it never trained on: {tests['held_out']} held out by "
             f"its run, {tests['test_only']} marked test only."]
    left_out = card.get("left_out", [])
    if left_out:
        lines.append(f"Left out of its tests: {len(left_out)} example"
                     f"{'s' * (len(left_out) > 1)}, "
                     + "; ".join(f"#{e['id']} ({e['why']})" for e in left_out[:5])
                     + ("; ..." if len(left_out) > 5 else "") + ".")
    if card.get("measure"):
        lines.append(f"What decided: {card['measure']['name']}: {card['measure']['why']}.")
    for phrase in card.get("style_phrases", []):
        carried = ", ".join(f"{c['name']} {c['style'][phrase]:.0f}%" for c in card["contenders"])
        lines.append(f"Style: most of your answers have \"{html.escape(phrase)}\"; it is in "
                     f"the answers of {carried}.")
    for skipped in card.get("skipped", []):
        lines.append(f"Not measured: {skipped['name']}, {skipped['why']}.")
    if card.get("general"):
        lines += general_lines(card)
    votes = card.get("votes") or {}
    if votes.get("scored"):
        lines.append(f"Your votes: the automatic score agrees with {votes['agree']} of the "
                     f"{votes['scored']} votes it could score ({votes['agreement']:.0f}%).")
    return "  \n".join(lines)


def general_lines(card: dict, shown: int = 8) -> list[str]:
    """The general check: how many each got right, and the questions that flipped."""
    from services import general

    block = card["general"]
    lines = [f"**{general.line(block, card['adapter'])}**"]
    mine = next(m for m in block["models"] if m["name"] == card["adapter"])
    for flip in mine["flips"][:shown]:
        lines.append(f"{'✗ now wrong' if flip['now'] == 'wrong' else '✓ now right'}: "
                     f"{html.escape(flip['question'])} base: _{html.escape(flip['base'][:80])}_"
                     f" · {card['adapter']}: _{html.escape(flip['answer'][:80])}_")
    if len(mine["flips"]) > shown:
        lines.append(f"... and {len(mine['flips']) - shown} more (`tunechat eval` lists all).")
    return lines


def card_rows(card: dict) -> list[list]:
    return [[c["name"], c["score"], f"{c['ci_low']:.0f} to {c['ci_high']:.0f}",
             c["prompt_tokens"], c["latency_ms"], c.get("training_s") or ""]
            for c in card.get("contenders", [])]


def example_rows(card: dict) -> tuple[list[str], list[list]]:
    """(headers, rows): each test example with every model's answer and score,
    corrections first, and where a model flipped against the base."""
    names = [c["name"] for c in card.get("contenders", [])]
    headers = ["#", "source", "prompt", "what you wrote"] + [
        f"{name} ({'score'})" for name in names] + ["flips against the base"]
    rows = []
    for row in card.get("rows", []):
        answers = [f"{row['answers'][n]['text']}  [{row['answers'][n]['score']:.0f}]"
                   for n in names]
        flips = ", ".join(f"{n} {'fixed it' if f == 'fixed' else 'broke it'}"
                          for n, f in row["flips"].items())
        rows.append([row["id"], row["source"] + (" (test only)" * (row["split"] ==
                                                                   "test_only")),
                     row["prompt"], row["reference"]] + answers + [flips])
    return headers, rows


def chart_svg(card: dict, width: int = 640) -> str:
    """One bar per model with its likely range as a whisker, 0 to 100."""
    bars = card.get("contenders", [])
    if not bars:
        return ""
    row_h, left, right = 28, 150, 40
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
        color = BAR_COLORS.get(bar["name"], ADAPTER_COLOR)
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">'
            f'{html.escape(bar["name"])}</text>'
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
    """The adapter's score across runs (name, score, low, high), to see whether each run
    improved on the last."""
    if not points:
        return ""
    height, left, bottom = 160, 40, 30
    step = (width - left - 20) / max(1, len(points) - 1)
    xs = [left + 10 + i * step if len(points) > 1 else width / 2 for i in range(len(points))]

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
    parts.append(f'<path d="{path}" fill="none" stroke="{ADAPTER_COLOR}" stroke-width="2"/>')
    for x, (name, score, low, high) in zip(xs, points):
        parts.append(f'<line x1="{x:.1f}" y1="{y(low):.1f}" x2="{x:.1f}" y2="{y(high):.1f}" '
                     f'stroke="#111827"/><circle cx="{x:.1f}" cy="{y(score):.1f}" r="4" '
                     f'fill="{ADAPTER_COLOR}"/><text x="{x:.1f}" y="{height - 8}" '
                     f'text-anchor="middle">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
