"""Mining domain vocabulary from a corpus: statistical new-word discovery, filtering, user dictionary.

Statistical discovery (after Matrix67's "new word discovery" and the usual PMI / branching-entropy recipe):
over the runs of Chinese characters of the corpus, every string of 2..``max_len`` characters seen at least
``min_freq`` times is a candidate, scored by

* **cohesion**: the smallest pointwise mutual information over its split points,
  ``min_k log(p(w) / (p(w[:k]) · p(w[k:])))`` with ``p(x) = count(x) / characters`` (a word is not just two
  frequent halves that happen to meet);
* **left / right branching entropy**: the entropy of the characters seen just before / after it (a run
  boundary counts as a distinct neighbour each time); a fragment of a longer word has one dominant
  neighbour and a low entropy on that side.

Candidates pass the thresholds on all three, then :func:`filter_terms` drops what the tokenizer already
knows (jieba's dictionary, the finance dictionary), stopwords, numbers and terms with a function character
at either edge. :func:`render_user_dict` writes the kept terms as a jieba user dictionary.

Kedro-free library module.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from finrag_pipelines.text.dictionaries import nfkc

_HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")
_BOUNDARY = "\x00"  # a run boundary, counted as a distinct neighbour per occurrence
# characters that rarely start or end a content word (particles, conjunctions, pronoun parts)
EDGE_FUNCTION_CHARS = frozenset(
    "的了是在和与及或等也就都而之其并且被把对为从向以于将已这那个们吗呢吧啊我你他她它"
)
_NUMERIC = re.compile(r"[\d.,%]+")


@dataclass(frozen=True)
class MinedTerm:
    """One candidate word with its statistics.

    Attributes:
        term: The string.
        freq: Occurrences in the corpus.
        cohesion: Smallest PMI over its split points (natural log).
        left_entropy: Branching entropy of the preceding characters (nats).
        right_entropy: Branching entropy of the following characters (nats).
        score: ``cohesion · min(left, right entropy) · log(freq)``, the ranking key.
    """

    term: str
    freq: int
    cohesion: float
    left_entropy: float
    right_entropy: float
    score: float


def _entropy(counts: Mapping[str, int], boundaries: int) -> float:
    total = sum(counts.values()) + boundaries
    if total == 0:
        return 0.0
    h = -sum(c / total * math.log(c / total) for c in counts.values())
    return h + boundaries * (math.log(total) / total)  # each boundary: its own class of count 1


def discover_terms(
    texts: Iterable[str],
    *,
    max_len: int,
    min_freq: int,
    min_cohesion: float,
    min_entropy: float,
    max_terms: int,
) -> list[MinedTerm]:
    """New-word candidates of a corpus, best first.

    Args:
        texts: The documents (NFKC-normalised here).
        max_len: Longest candidate, in characters (>= 2).
        min_freq: Fewest occurrences.
        min_cohesion: Smallest accepted cohesion (PMI, natural log).
        min_entropy: Smallest accepted branching entropy on each side (nats).
        max_terms: Keep at most this many, by score.

    Raises:
        ValueError: On a bad setting.
    """
    if max_len < 2 or min_freq < 1 or max_terms < 1:
        raise ValueError(
            f"need max_len >= 2, min_freq >= 1, max_terms >= 1; got {max_len}, {min_freq}, {max_terms}"
        )
    runs = [run for text in texts for run in _HAN_RUN.findall(nfkc(text))]
    counts: Counter[str] = Counter()
    for run in runs:
        size = len(run)
        for i in range(size):
            for length in range(1, min(max_len, size - i) + 1):
                counts[run[i : i + length]] += 1
    total = sum(len(run) for run in runs)
    if total == 0:
        return []
    candidates = {w for w, c in counts.items() if len(w) >= 2 and c >= min_freq}
    cohesion: dict[str, float] = {}
    for word in candidates:
        log_pw = math.log(counts[word] / total)
        cohesion[word] = min(
            log_pw - math.log(counts[word[:k]] / total) - math.log(counts[word[k:]] / total)
            for k in range(1, len(word))
        )
    candidates = {w for w in candidates if cohesion[w] >= min_cohesion}
    left: dict[str, Counter[str]] = defaultdict(Counter)
    right: dict[str, Counter[str]] = defaultdict(Counter)
    left_edges: Counter[str] = Counter()
    right_edges: Counter[str] = Counter()
    for run in runs:
        size = len(run)
        for i in range(size):
            for length in range(2, min(max_len, size - i) + 1):
                word = run[i : i + length]
                if word not in candidates:
                    continue
                if i > 0:
                    left[word][run[i - 1]] += 1
                else:
                    left_edges[word] += 1
                end = i + length
                if end < size:
                    right[word][run[end]] += 1
                else:
                    right_edges[word] += 1
    out = []
    for word in candidates:
        h_left = _entropy(left[word], left_edges[word])
        h_right = _entropy(right[word], right_edges[word])
        if min(h_left, h_right) < min_entropy:
            continue
        score = cohesion[word] * min(h_left, h_right) * math.log(counts[word])
        out.append(MinedTerm(word, counts[word], cohesion[word], h_left, h_right, score))
    out.sort(key=lambda t: (-t.score, t.term))
    return out[:max_terms]


def term_rejection(
    term: str,
    *,
    known_words: Collection[str],
    stopwords: Collection[str],
    min_len: int,
    max_len: int,
) -> str | None:
    """Why a mined term is not added to the dictionary, or ``None`` when it is kept.

    Reasons: ``length``, ``numeric``, ``whitespace``, ``known`` (already a dictionary word), ``stopword``,
    ``function_edge`` (a particle or conjunction at either end).
    """
    if not min_len <= len(term) <= max_len:
        return "length"
    if _NUMERIC.fullmatch(term):
        return "numeric"
    if any(ch.isspace() for ch in term):
        return "whitespace"
    if term in known_words or term.lower() in known_words:
        return "known"
    if term in stopwords or term.lower() in stopwords:
        return "stopword"
    if term[0] in EDGE_FUNCTION_CHARS or term[-1] in EDGE_FUNCTION_CHARS:
        return "function_edge"
    return None


def render_user_dict(terms: Sequence[tuple[str, str | None]]) -> str:
    """A jieba user dictionary (``word [tag]`` per line; jieba picks a frequency that keeps it whole).

    Args:
        terms: ``(word, tag)`` pairs; ``tag`` a lowercase part-of-speech tag such as ``nz`` or ``None``.

    Raises:
        ValueError: If a word contains whitespace or a tag is not lowercase letters.
    """
    lines = []
    for word, tag in terms:
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(f"dictionary word {word!r} is empty or contains whitespace")
        if tag is not None and not re.fullmatch(r"[a-z]+", tag):
            raise ValueError(f"tag {tag!r} of {word!r} must be lowercase letters (e.g. nz, nt)")
        lines.append(word if tag is None else f"{word} {tag}")
    return "\n".join(lines) + ("\n" if lines else "")


ENTITY_CATEGORIES = ("organizations", "products", "metrics", "terms")
"""The lists an LLM entity-extraction answer holds (besides ``aliases``)."""


@dataclass(frozen=True)
class ExtractedTerm:
    """A term an LLM found in a document.

    Attributes:
        term: The term as it appears in the document (NFKC).
        category: One of :data:`ENTITY_CATEGORIES`, or ``alias`` for a stock code's short name.
        alias_of: For an alias, the stock code it names; else ``None``.
    """

    term: str
    category: str
    alias_of: str | None = None


def parse_entity_answer(
    answer: dict[str, object], document: str
) -> tuple[list[ExtractedTerm], dict[str, int]]:
    """The terms of an entity-extraction answer that occur verbatim in the document, and drop counts.

    The answer is a JSON object with lists ``organizations``, ``products``, ``metrics``, ``terms`` (strings)
    and ``aliases`` (objects ``{"code": "600519", "name": "贵州茅台"}``). A term not found in the document is
    dropped (``not_in_document``): the model must extract, not invent.

    Raises:
        ValueError: If the answer does not have that shape (the LLM layer asks again).
    """
    text = nfkc(document)
    kept: list[ExtractedTerm] = []
    dropped: Counter[str] = Counter()
    for category in ENTITY_CATEGORIES:
        values = answer.get(category, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"'{category}' must be a list of strings, got {values!r:.80}")
        for value in values:
            term = nfkc(value.strip())
            if not term:
                dropped["empty"] += 1
            elif term not in text:
                dropped["not_in_document"] += 1
            else:
                kept.append(ExtractedTerm(term, category))
    aliases = answer.get("aliases", [])
    if not isinstance(aliases, list):
        # ValueError, not TypeError: the LLM layer regenerates an answer whose validator raises ValueError
        raise ValueError(  # noqa: TRY004
            f"'aliases' must be a list of {{code, name}} objects, got {aliases!r:.80}"
        )
    for alias in aliases:
        if (
            not isinstance(alias, dict)
            or not isinstance(alias.get("code"), str)
            or not isinstance(alias.get("name"), str)
        ):
            raise ValueError(  # noqa: TRY004
                f'an alias must be {{"code": str, "name": str}}, got {alias!r:.80}'
            )
        code, name = nfkc(alias["code"].strip()), nfkc(alias["name"].strip())
        if not re.fullmatch(r"\d{6}(\.(SH|SZ|BJ))?", code, re.IGNORECASE):
            dropped["alias_not_a_stock_code"] += 1
        elif name not in text and code.split(".")[0] not in text:
            dropped["not_in_document"] += 1
        else:
            kept.append(ExtractedTerm(name, "alias", code.split(".")[0]))
    return kept, dict(dropped)
