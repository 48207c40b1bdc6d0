"""Which claims of an answer the business's own texts do not support.

A small model answering a shop's customers invents facts: a price in the wrong currency,
an opening hour, a class that does not exist, a policy turned upside down. The chat marks
each such claim ("not in your facts: £100") so the owner can correct the answer before
keeping it. The check is lexical and explainable, no model: a claim is supported when
the support texts (her fact passages, her example answers, the customer's question) say
the same value, name or policy. It prefers precision: a flag she sees should be right,
so anything it cannot read (a synonym, an inference) passes rather than being flagged.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias, Union, cast

KINDS = ("price", "number", "time", "name", "policy")


FLAGGED = ("price", "number", "time")
"""The kinds of claims shown to a user (the chat's flags, the report card's facts
check): on the model's real answers their flags were right every time, those on names
and yes/no policies about half the time or less (examples/claims_check.py,
examples/results/claims_check.json)."""


@dataclass(frozen=True)
class Claim:
    text: str   # the words as they appear in the answer ("£100", "6am", "hot yoga")
    kind: str   # one of KINDS


# The value a claim is compared on; its kind says which (see each reader for why).
_PriceKey: TypeAlias = tuple[str, int]                  # (currency, amount in cents)
_TimeKey: TypeAlias = tuple[int, int, str | None]       # (hour, minute, "a"/"p"/None)
_NumberKey: TypeAlias = tuple[float, bool, str | None]  # (value, percent?, unit stem)
_NameKey: TypeAlias = tuple[str, ...]                   # the name's word stems
_Key: TypeAlias = Union[_PriceKey, _TimeKey, frozenset[str], str,  # days, a month
                        _NumberKey, _NameKey, "_Statement"]


@dataclass(frozen=True)
class _Found:
    """A claim with where it sits in the answer and the value it is compared on."""
    claim: Claim
    start: int
    end: int
    key: _Key


# ---------------------------------------------------------------------------- words

STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being
below between both but by did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself of off on once only or other our ours ourselves out over own same
she should so some such than that the their theirs them themselves then there these they
this those through to too under until up very was we were what when where which while who
whom why will with would you your yours yourself yourselves pm us let s t re ve ll d m
""".split())
# Words that carry no fact of their own: modal and light verbs, interjections, fillers.
# A policy is compared on what is left ("bring", "dog"), so "we offer mats" and "mats
# are provided" are the same claim.
LIGHT = frozenset("""
can could may might must shall need needs get gets got make makes be is are was were
offer offers offered provide provides provided welcome welcomed allow allows allowed
permit permits permitted available include includes included accept accepts accepted
take takes give gives keep keeps yes yeah yep sure absolutely definitely course happy
glad love lovely great amazing awesome perfect fine always really even ever every everyone
anyone anything everything something thing things lot lots plenty sorry unfortunately
please thanks thank hi hello hey just also well way ways option options like want wants
come comes go goes use used using see enjoy help feel try one ones bit little whole
right here now today tomorrow soon time anytime
""".split())
NEGATIONS = frozenset({"not", "no", "never", "cannot", "none", "nothing", "nobody",
                       "without"})
# Idioms whose negation or "free" says nothing about a policy.
IDIOMS = [
    (re.compile(r"\b(?:at )?no (?:extra |additional )?(?:charge|cost)\b|\bfree of charge\b"),
     " free "),
    (re.compile(r"\b(?:feel free|free up|no problem|no worries|no need|of course|"
                r"you're welcome|not sure)\b"), " "),
    (re.compile(r"\bclosed\b"), " not open "),        # closed on Sundays = not open
    (re.compile(r"\bclos(?:e|es|ing)\b"), " open "),  # closing time is about opening hours
]
NUMBER_WORDS = {w: n for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
                     "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000})
_NUMBER_WORD = r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|hundred|thousand)"  # noqa: E501
_WORD = re.compile(r"(?<![\w'])[A-Za-z]+(?:'[A-Za-z]+)*")


_local = threading.local()


def _stemmer():
    """A Snowball stemmer per thread ("dogs"/"dog", "classes"/"class"): PyStemmer's
    stemmers are not safe to share between threads, and the chat's are many."""
    if not hasattr(_local, "stemmer"):
        import Stemmer

        _local.stemmer = Stemmer.Stemmer("english")
    return _local.stemmer


def _stem(word: str) -> str:
    return _stemmer().stemWord(word.lower())


def _clean(text: str) -> str:
    """Curly quotes made straight, so "don’t" and "don't" read alike; same length."""
    return text.replace("’", "'").replace("‘", "'")


def _number(word: str) -> float | None:
    """ "6", "6.00", "1,200", "six", "twenty-five" as a value; None for anything else."""
    word = word.lower().replace(",", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", word):
        return float(word)
    parts = re.split(r"[- ]", word)
    if all(p in NUMBER_WORDS for p in parts):
        return float(sum(NUMBER_WORDS[p] for p in parts))
    return None


def _matched_number(word: str) -> float:
    """The value of a word a pattern matched as a number (_AMOUNT, _HOUR_WORD): those
    patterns accept only what _number reads, so None here would be a pattern bug."""
    value = _number(word)
    assert value is not None, f"pattern matched a non-number: {word!r}"
    return value


# ---------------------------------------------------------------------------- sentences

_ABBREVIATION = re.compile(r"(?:\b[ap]\.m|\be\.g|\bi\.e|\bSt|\bDr|\bMr|\bMrs|\bMs|\bvs)\.$")


def _sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans: a break after . ! ? and a space, or at a line end; "6 a.m. on" and
    "$3.50" do not break, because the sign-off and the price must stay whole."""
    spans, start = [], 0
    for m in re.finditer(r"[.!?]+(?=\s)|\n", text):
        if m.group() != "\n" and _ABBREVIATION.search(text[start:m.end()]):
            continue
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in (_strip(text, s, e) for s, e in spans) if e > s]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without the spaces, dashes and emoji around it."""
    while start < end and not text[start].isalnum() and text[start] not in "$£€":
        start += 1
    while end > start and not (text[end - 1].isalnum() or text[end - 1] in ".!?%'"):
        end -= 1
    return start, end


def _normal(sentence: str) -> str:
    """A sentence as compared word for word: case, spacing and end punctuation aside."""
    return re.sub(r"\s+", " ", sentence.strip().lower()).strip(" .!?,;:—–-")


_CLAUSE_BREAK = re.compile(
    r"\s*(?:;|:(?=\s)|\s[—–-]\s|,(?=\s+(?:and\s+|or\s+)?(?:we|you|i|they|it|there|she|he|our|"
    r"your|but|so|which|although|though|however|while|just|closed|no|not|never|except)\b)|\s(?=but\s|so\s(?!much|many)))\s*",
    re.IGNORECASE)


def _clauses(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Clause spans of a sentence: it breaks at ; : a dash, "but", and a comma that opens
    a new subject or a negation (", we ...", ", closed on Sundays"), so a negation stays
    in its own clause; the commas of a list ("card, cash and cheques") do not break."""
    spans, at = [], start
    for m in _CLAUSE_BREAK.finditer(text, start, end):
        spans.append((at, m.start()))
        at = m.end()
    spans.append((at, end))
    return [(s, e) for s, e in (_strip(text, s, e) for s, e in spans) if e > s]


def _blank(text: str, spans) -> str:
    """The text with the given spans replaced by spaces: offsets stay valid."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


# ---------------------------------------------------------------------------- prices

CURRENCY_SYMBOLS = {"$": "USD", "£": "GBP", "€": "EUR"}
CURRENCY_WORDS = [  # (pattern, currency, factor to the main unit)
    (r"dollars?|bucks|usd", "USD", 1.0), (r"cents?", "USD", 0.01),
    (r"pounds?|quid|gbp", "GBP", 1.0), (r"pence|p", "GBP", 0.01),
    (r"euros?|eur", "EUR", 1.0),
]
_AMOUNT = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_SYMBOL_PRICE = re.compile(
    rf"([$£€])\s?({_AMOUNT})(?:\s?(?:-|–|to)\s?[$£€]?({_AMOUNT})(?![\d:%]|\s?[ap]\.?m\b))?")
_WORD_PRICE = re.compile(
    rf"\b({_AMOUNT}|{_NUMBER_WORD})\s?(" + "|".join(p for p, _, _ in CURRENCY_WORDS) + r")\b",
    re.IGNORECASE)


def _prices(text: str) -> list[_Found]:
    """Prices, keyed (currency, amount in cents): "$25.00" and "25 dollars" are one price,
    "£100" and "$100" are two. A range "$10-15" is two prices in one currency."""
    found = []
    for m in _SYMBOL_PRICE.finditer(text):
        currency = CURRENCY_SYMBOLS[m.group(1)]
        keys = [(currency, round(_matched_number(g) * 100)) for g in m.groups()[1:] if g]
        found += [_Found(Claim(m.group(), "price"), m.start(), m.end(), k) for k in keys]
    for m in _WORD_PRICE.finditer(text):
        amount = _number(m.group(1))
        for pattern, currency, factor in CURRENCY_WORDS:
            if amount is not None and re.fullmatch(pattern, m.group(2), re.IGNORECASE):
                key = (currency, round(amount * factor * 100))
                found.append(_Found(Claim(m.group(), "price"), m.start(), m.end(), key))
                break
    return found


# ---------------------------------------------------------------------------- times

_HOUR_WORD = "(?i:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_AMPM = r"([ap])(?:\.\s?m\.|\s?m\b)"
_TIME = re.compile(
    rf"\b(\d{{1,2}})(?:[:.](\d{{2}}))?\s?{_AMPM}"           # 6am, 6 am, 7.30 p.m.
    r"|\b(\d{1,2}):(\d{2})\b"                               # 7:30, 18:00
    r"|\b(noon|midday|midnight)\b"
    rf"|\bhalf (?:past )?(\d{{1,2}}|{_HOUR_WORD})\b"           # half seven = 7:30
    rf"|\b(\d{{1,2}})(?::(\d{{2}}))?(?=\s?(?:-|–|to|until|till)\s?\d{{1,2}}(?::\d{{2}})?\s?[ap]\.?\s?m\b)"
    r"|\b(?:at|from|until|till|by|before|after) (\d{1,2})(?=\s*(?:$|[,.;!?)]|"
    r"(?:to|until|till|and|or|on|every|each|daily|sharp|o'clock)\b))",
    re.IGNORECASE)


def _times(text: str) -> list[_Found]:
    """Clock times keyed (hour on a 12-hour dial, minute, "a"/"p"/None): "6 am", "6am",
    "6:00 am" are one time; a time without am/pm matches either."""
    found = []
    for m in _TIME.finditer(text):
        g = m.groups()
        if g[0]:
            hour, minute, half = int(g[0]), int(g[1] or 0), g[2].lower()
        elif g[3]:
            hour, minute, half = int(g[3]), int(g[4]), None
        elif g[5]:
            hour, minute, half = 12, 0, "a" if g[5].lower() == "midnight" else "p"
        elif g[6]:
            hour, minute, half = int(_matched_number(g[6])), 30, None
        else:
            hour, minute, half = int(g[7] or g[9]), int(g[8] or 0), None
        if hour > 23 or minute > 59:
            continue
        if half is None and hour > 12:
            hour, half = hour - 12, "p"
        start = m.start(10) if g[9] else m.start()  # "at 9": the claim is "9"
        found.append(_Found(Claim(text[start:m.end()], "time"), start, m.end(),
                            (hour % 12, minute, half)))
    return found


def _same_time(a: tuple, b: tuple) -> bool:
    return a[:2] == b[:2] and (a[2] is None or b[2] is None or a[2] == b[2])


DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY = (r"(?:(?i:monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?"
        r"|(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\b\.?)")
_DAYS = re.compile(
    rf"\b{_DAY}(?:\s?(?:-|–|to|through|thru|till|until)\s?{_DAY})?"
    r"|\b(?i:week-?ends?|week-?days?|every\s?day|daily|(?:7|seven) days a week)\b")
MONTHS = ("january february march april may june july august september october november "
          "december").split()
_MONTH = re.compile(r"\b(?:" + "|".join(m.capitalize() for m in MONTHS) + r")\b")


def _day_set(phrase: str) -> frozenset[str]:
    """The days a phrase covers: "Mon-Fri" the five, "weekends" Saturday and Sunday."""
    low = phrase.lower()
    if re.search(r"every\s?day|daily|days a week", low):
        return frozenset(DAYS)
    if "week" in low:
        return frozenset(DAYS[5:] if "end" in low else DAYS[:5])
    named = [next(d for d in DAYS if d.startswith(w[:3])) for w in re.findall(r"[a-z]+", low)
             if w[:3] in {d[:3] for d in DAYS} and w not in ("to", "till", "through")]
    if len(named) == 2 and re.search(r"-|–|\bto\b|through|thru|till|until", low):
        first, last = DAYS.index(named[0]), DAYS.index(named[1])
        return frozenset(DAYS[(first + i) % 7] for i in range((last - first) % 7 + 1))
    return frozenset(named)


def _days(text: str) -> list[_Found]:
    """Days, ranges of days and months, keyed by the set of days (or the month)."""
    found = [_Found(Claim(m.group(), "time"), m.start(), m.end(), _day_set(m.group()))
             for m in _DAYS.finditer(text)]
    found += [_Found(Claim(m.group(), "time"), m.start(), m.end(), m.group().lower())
              for m in _MONTH.finditer(text)
              if not (m.group() == "May" and _sentence_initial(text, m.start()))]
    return found


# ---------------------------------------------------------------------------- numbers

_NUMBER = re.compile(
    rf"(?<![\w.,$£€-])(\d+(?:\.\d+)?|(?i:{_NUMBER_WORD}))(\s?%|\s?(?i:percent)\b)?"
    r"(?![\w]|-on-|[.,]\d|:\d)")


def _unit(text: str, end: int) -> str | None:
    """The noun a number counts ("3 classes", "2-year warranty", "10% refund"): the first
    word after it within two, not a stopword; None at a comma or the sentence end."""
    for m in _WORD.finditer(text, end, min(len(text), end + 30)):
        if re.search(r"[,.;:!?()]", text[end:m.start()]):
            return None
        word = m.group().lower()
        if word not in STOPWORDS:
            return _stem(word)
    return None


def _numbers(text: str) -> list[_Found]:
    """Counts, durations and percentages with the noun they count, keyed (value, is a
    percentage, unit stem). Prices and times are read first and blanked out, so "£3.20"
    is not also the number 3.2; "1-on-1" and ordinals are not counts."""
    found = []
    for m in _NUMBER.finditer(text):
        value = _number(m.group(1))
        if value is None:
            continue
        percent = bool(m.group(2))
        unit = _unit(text, m.end())
        end = m.end()
        if unit is not None:
            end = next(w.end() for w in _WORD.finditer(text, m.end())
                       if w.group().lower() not in STOPWORDS)
        found.append(_Found(Claim(text[m.start():end], "number"), m.start(), end,
                            (value, percent, unit)))
    return found


# ---------------------------------------------------------------------------- names

_NAME_WORD = (r"[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:'[a-z]+)?(?:-[A-Za-z]+)*"  # Maya, PayPal
              r"|[A-Z]{2,}[a-z]*(?:-[A-Za-z]+)*")                      # BMX, SUVs
_NAME = re.compile(rf"(?<![\w'-])(?:{_NAME_WORD})(?:(?:\s+|\s*&\s*|\s+(?:of|the|de)\s+)"
                   rf"(?:{_NAME_WORD}))*")
NOT_NAMES = frozenset({"i", "i'm", "i've", "i'll", "i'd", "ok", "okay"} | set(DAYS)
                      | set(MONTHS))


def _sentence_initial(text: str, at: int) -> bool:
    """Whether a word opens a sentence or a line, where every word is capitalised."""
    before = text[:at].rstrip(" \t\"'(*")
    return (not before or before[-1] in ".!?:\n—–-•"
            or (not before[-1].isalnum() and before[-1] not in ",;&"))


def _names(text: str) -> list[_Found]:
    """Capitalised words and phrases (class names, staff, products) that are not just a
    capitalised first word. A word that opens a sentence counts only when it is not a
    common word and recurs capitalised mid-sentence, since "Absolutely!" is no name."""
    found = []
    for m in _NAME.finditer(text):
        words = list(re.finditer(r"[A-Za-z][\w'-]*", m.group()))
        start = 0
        if _sentence_initial(text, m.start()):
            while start < len(words) and _common(words[start].group()):
                start += 1
            if start == 0 and len(words) == 1 and not _recurs(text, m.group(), m.start()):
                continue
        words = [w for w in words[start:] if w.group().lower() not in NOT_NAMES
                 and not re.fullmatch(_DAY, w.group())]
        if words and not all(_common(w.group()) for w in words):
            s, e = m.start() + words[0].start(), m.start() + words[-1].end()
            found.append(_Found(Claim(text[s:e], "name"), s, e,
                                tuple(_stem(w) for w in re.findall(r"[A-Za-z]+", text[s:e]))))
    return found


def _common(word: str) -> bool:
    """A word capitalised only because it opens a sentence ("Yes", "Our", "Sorry")."""
    low = word.lower()
    return low in STOPWORDS or low in LIGHT or low in NEGATIONS or low in NOT_NAMES


def _recurs(text: str, word: str, at: int) -> bool:
    """Whether the word is also capitalised mid-sentence: then it is a name."""
    return any(m.start() != at and not _sentence_initial(text, m.start())
               for m in re.finditer(rf"\b{re.escape(word)}\b", text))


# ---------------------------------------------------------------------------- policies

_POLICY = re.compile(
    r"\b(?:you|u|dogs?|kids?|children|pets?|everyone|anyone)\s+(?:can|can't|cannot|could|may|"
    r"must|are\s+welcome\s+to|(?:don't\s+|do\s+not\s+)?need\s+to|have\s+to)\b"
    r"|\bwe(?:'re|\s+are)?\s+(?:also\s+|only\s+|even\s+)?(?:do|don't|do\s+not|offer|have|"
    r"provide|sell|accept|take|rent|run|teach|host|serve|deliver|allow|give|include|can|"
    r"can't|cannot|make|repair|fix|groom|bake|open|close|not)\b"
    r"|\b(?:is|are|isn't|aren't|be)\s+(?:not\s+|never\s+|always\s+|all\s+)?(?:welcome|"
    r"allowed|permitted|included|free|available|provided|open|closed|refundable|accepted)\b"
    r"|\bnot\s+(?:allowed|permitted|included|available|refundable)\b|\brefund"
    r"|\bthere(?:'s|\s+is|\s+are)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class _Statement:
    """What a clause says, for comparing policies: its content word stems, the days it
    is about, and whether it is negated."""
    words: frozenset
    days: frozenset
    negated: bool


def _statement(clause: str) -> _Statement:
    """Content words and polarity of a clause. "closed" is "not open"; idioms such as
    "no extra charge" (free) or "no problem" carry no negation; day names and ranges
    become the set of days, so "Mon-Fri" and "weekdays" agree."""
    clause = _clean(clause)
    spans = list(_DAYS.finditer(clause))
    days = frozenset().union(*(_day_set(m.group()) for m in spans))
    low = _blank(clause, [m.span() for m in spans]).lower()
    for pattern, replacement in IDIOMS:
        low = pattern.sub(replacement, low)
    negated = False
    words = set()
    for m in _WORD.finditer(low):
        word = m.group()
        if word in NEGATIONS or word.endswith("n't"):
            negated = not negated
            continue
        word = word.split("'")[0]  # "we're", "kids'", "Maya's"
        if len(word) > 1 and word not in STOPWORDS and word not in LIGHT:
            words.add(_stem(word))
    return _Statement(frozenset(words - _light_stems()), days, negated)


@lru_cache(maxsize=1)
def _light_stems() -> frozenset[str]:
    """LIGHT as stems, so "offered" and "welcomed" drop out as well."""
    return frozenset(_stem(w) for w in LIGHT)


def _policies(text: str, taken: list[_Found]) -> list[_Found]:
    """Yes/no claims ("you can bring your dog", "we don't deliver", "dogs are welcome"),
    one per clause that has a policy phrase, keyed by its statement. The names, prices,
    numbers and clock times in it are checked on their own and left out of its words."""
    found = []
    masked = _blank(text, [(f.start, f.end) for f in taken
                           if f.claim.kind != "time" or not isinstance(f.key, frozenset)])
    for s, e in _sentences(text):
        if text[s:e].rstrip().endswith("?"):
            continue  # a question asks, it does not claim
        for cs, ce in _clauses(text, s, e):
            if not _POLICY.search(_clean(text[cs:ce])):
                continue
            said = _statement(masked[cs:ce])
            if said.words or said.days:
                found.append(_Found(Claim(text[cs:ce].rstrip(".!"), "policy"), cs, ce, said))
    return found


# ---------------------------------------------------------------------------- support

# A policy is supported when one clause of the support holds this share of its words
# (with the same days and polarity): two of three, all of one or two.
POLICY_OVERLAP = 2 / 3


class _Support:
    """What the support texts say, read once with the same readers as the answer, so
    both sides are normalised alike ("six" = "6", "$25.00" = "$25", "6 am" = "6:00am")."""

    def __init__(self, texts: list[str]):
        self.sentences: set[str] = set()
        self.prices: set[_PriceKey] = set()
        self.times: list[_TimeKey] = []
        self.days: set[str] = set()
        self.months: set[str] = set()
        self.numbers: list[tuple[float, bool, frozenset]] = []
        self.stems: list[list[str]] = []
        self.statements: list[_Statement] = []
        for text in map(_clean, texts):
            for s, e in _sentences(text):
                self._read(text[s:e])

    def _read(self, sentence: str) -> None:
        """Every value, name and statement of one support sentence."""
        self.sentences.add(_normal(sentence))
        stems = [_stem(w) for w in re.findall(r"[A-Za-z]+", sentence)]
        self.stems.append(stems)
        # Each reader keys its claims one way, so the casts only name that key.
        self.prices |= {cast(_PriceKey, f.key) for f in _prices(sentence)}
        self.times += [cast(_TimeKey, f.key) for f in _times(sentence)]
        for f in _days(sentence):  # a set of days, or a month by its name
            if isinstance(f.key, frozenset):
                self.days.update(f.key)
            elif isinstance(f.key, str):
                self.months.add(f.key)
        values = [float(v) for v in re.findall(r"\d+(?:\.\d+)?", sentence.replace(",", ""))]
        values += [v for w in re.findall(rf"\b{_NUMBER_WORD}\b", sentence.lower())
                   if (v := _number(w)) is not None]
        percents = {float(v) for v in re.findall(r"(\d+(?:\.\d+)?)\s?(?:%|percent)", sentence)}
        self.numbers += [(v, v in percents, frozenset(stems)) for v in values]
        if not sentence.rstrip().endswith("?"):  # a question states no policy
            self._read_statements(sentence)

    def _read_statements(self, sentence: str) -> None:
        """Each clause, and the sentence's clauses of one polarity together: a fact spread
        over "Opening hours: Monday to Friday 7:30am to 5pm, closed on Sundays" still
        says "open Monday to Friday" (and "not open on Sundays")."""
        clauses = [_statement(sentence[s:e]) for s, e in _clauses(sentence, 0, len(sentence))]
        self.statements += clauses
        for negated in (False, True):
            same = [c for c in clauses if c.negated == negated]
            if len(same) > 1:
                self.statements.append(_Statement(frozenset().union(*(c.words for c in same)),
                                                  frozenset().union(*(c.days for c in same)),
                                                  negated))

    def holds(self, found: _Found) -> bool:
        """Whether the support says what the claim says. The claim's kind decides its
        key's type (see _Key), which the casts below only name."""
        key = found.key
        if found.claim.kind == "price":
            return key in self.prices
        if found.claim.kind == "time" and isinstance(key, tuple):
            return any(_same_time(key, t) for t in self.times)
        if found.claim.kind == "time":
            return key <= self.days if isinstance(key, frozenset) else key in self.months
        if found.claim.kind == "number":
            return self._has_number(*cast(_NumberKey, key))
        if found.claim.kind == "name":
            return self._has_name(cast(_NameKey, key))
        said = cast(_Statement, key)  # the remaining kind: a policy
        return (any(self._agrees(said, s) for s in self.statements)
                and not any(self._contradicts(said, s) for s in self.statements))

    def _has_number(self, value: float, percent: bool, unit: str | None) -> bool:
        """The same value (a percentage only as a percentage) in a sentence that also
        names its unit: "10% refund" is not "10% off class passes"."""
        return any(v == value and (p or not percent) and (unit is None or unit in stems)
                   for v, p, stems in self.numbers)

    def _has_name(self, stems: tuple) -> bool:
        """The name's words in one sentence of the support, any case or number."""
        return any(all(s in sentence for s in stems) for sentence in self.stems)

    @staticmethod
    def _agrees(claim: _Statement, fact: _Statement) -> bool:
        """Same polarity, about the same days, sharing enough content words."""
        if claim.negated != fact.negated or not claim.days <= fact.days:
            return False
        if not claim.words:
            return True
        return len(claim.words & fact.words) >= POLICY_OVERLAP * len(claim.words)


    @staticmethod
    def _contradicts(claim: _Statement, fact: _Statement) -> bool:
        """The claim holds all of a fact's words with the opposite polarity, about one
        of its days: "we take card, cash and cheques" against "no cheques". A direct
        contradiction outweighs a clause that shares most of the claim's words."""
        if claim.negated == fact.negated or not fact.words or not fact.words <= claim.words:
            return False
        return not fact.days or bool(fact.days & claim.days)


# ---------------------------------------------------------------------------- public

def _found(text: str) -> list[_Found]:
    """Every claim in a text, each kind read from what the earlier kinds left (a price
    is not also a number), in reading order."""
    found: list[_Found] = []
    for read in (_prices, _times, _days, _numbers):
        found += read(_blank(text, [(f.start, f.end) for f in found]))
    found += [f for f in _names(text) if not _overlaps(f, found)]
    found += _policies(text, found)
    return sorted(found, key=lambda f: (f.start, f.end))


def _overlaps(claim: _Found, others: list[_Found]) -> bool:
    return any(claim.start < o.end and o.start < claim.end for o in others)


def claims_in(answer: str) -> list[Claim]:
    """The checkable claims of an answer: prices, numbers, times and days, names and
    yes/no policies, each as the words it uses, in the order they appear."""
    return _unique(_as_written(answer, f) for f in _found(_clean(answer)))


def unsupported(answer: str, support: list[str]) -> list[Claim]:
    """The claims of an answer that the support texts (fact passages, example answers,
    the customer's question) do not state. A sentence of the answer that appears word
    for word in the support (the sign-off, a repeated fact) is supported as a whole."""
    facts = _Support(support)
    text = _clean(answer)
    verbatim = [(s, e) for s, e in _sentences(text) if _normal(text[s:e]) in facts.sentences]
    return _unique(_as_written(answer, f) for f in _found(_blank(text, verbatim))
                   if not facts.holds(f))


def _as_written(answer: str, found: _Found) -> Claim:
    """The claim in the answer's own characters (its curly quotes, not the straight ones
    it was read with)."""
    return Claim(answer[found.start:found.start + len(found.claim.text)], found.claim.kind)


def _unique(claims) -> list[Claim]:
    """Each claim once, first occurrence first (a price range yields one claim)."""
    return list(dict.fromkeys(claims))
