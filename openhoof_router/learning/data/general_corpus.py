"""The general router corpus: many tool lists, so the router routes tools it never saw.

Sources (see ``data/NOTICE.md`` for attribution):
  - Seal-Tools (github.com/fairyshine/Seal-Tools, Apache-2.0): 4,076 tools with their
    field, 2,054 requests with the tools they need; read from ``--corpus``
    (``../shared/corpora/seal_tools`` in this project);
  - the bundled OpenHoof data: curated single-turn requests and conversation follow-ups;
  - generic messages that need no tool.

Seal-Tools requests are split once, by a hash of their id, into training requests and
held-out requests. The held-out ones build the fixed samples shipped with the package
(:mod:`.samples`); training requests build tool-list variants (:func:`seal_groups`):

  - the tools a request needs among distractors from the same field and from others,
    lists of 1 to 20 tools, in shuffled order;
  - only some of the needed tools offered (the answer is the offered ones);
  - requests offered only unrelated tools, and chit-chat, answered ``none``;
  - on request (``adjacent``), a neighbour of a needed tool: the same field, a nearby but
    different job, alone (``none``) beside its twin list with the needed tool instead;
  - on request (``siblings``), a sibling of a needed tool offered beside it: a tool whose
    name and description read almost the same (``calculate_gcd`` / ``calculate_lcm``), where
    the request names what tells them apart; only the needed one is the answer;
  - descriptions cut or missing, parameter lists dropped, names rewritten in snake_case
    or with a namespace (BFCL-style ``module_function`` names);
  - earlier turns as context: an unrelated earlier request (the new one routes on its
    own), or an acknowledgement after a tool turn (no tool).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from openhoof_router.core.records import PastToolCall, PastTurn, TrainingRecord
from openhoof_router.core.tools import ToolSpec, builtin_tools, to_spec
from openhoof_router.learning.data.assemble import jaccard
from openhoof_router.learning.data.groups import Group, Sample, records_to_groups
from openhoof_router.learning.data.tool_styles import Styler
from openhoof_router.store.paths import FOLLOWUPS_TRAIN_FILE, PACKAGE_DATA

SEAL_ATTRIBUTION = "Seal-Tools (github.com/fairyshine/Seal-Tools, Apache-2.0)"
HELD_OUT_FRACTION = 0.2
NO_TOOL_FILE = PACKAGE_DATA / "general_no_tool.jsonl"
MAX_TOOLS = 20
RESULTS = ("done", "ok", '{"status": "ok"}', "success", "completed", "1 result", "saved")


NEAR_DUPLICATE = 0.4
"""Word overlap (Jaccard) from which two tools may well serve the same request."""
_STOP = frozenset("the and for with from into about given specific information get retrieve".split())


def _content_words(spec: ToolSpec) -> frozenset[str]:
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", spec.name).replace("_", " ")
    return frozenset(w for w in re.findall(r"[a-z]+", f"{name} {spec.description}".lower())
                     if len(w) > 2 and w not in _STOP)


@dataclass
class SealCorpus:
    tools: dict[str, ToolSpec]
    field_of: dict[str, str]
    by_field: dict[str, list[str]]
    """Top-level field -> tool names."""
    train: list[dict]
    held: list[dict]
    queries_by_field: dict[str, list[dict]] = field(default_factory=dict)
    """Top-level field -> training requests that use a tool of it."""
    _neighbours: dict[str, list[str]] | None = field(default=None, repr=False)
    _siblings: list[tuple[dict, str, str]] | None = field(default=None, repr=False)

    @property
    def fields(self) -> list[str]:
        return sorted(self.by_field)

    @cached_property
    def words(self) -> dict[str, frozenset[str]]:
        """Tool name -> the content words of its name and description (what overlaps are read on)."""
        return {n: _content_words(t) for n, t in self.tools.items()}

    def neighbours(self) -> dict[str, list[str]]:
        """Per tool, up to three tools of its field that do a nearby but different job (most
        words shared, but not near-duplicates that could serve the same request); computed once."""
        if self._neighbours is None:
            words = self.words
            self._neighbours = {}
            for name in self.tools:
                scored = []
                for other in self.by_field[self.field_of[name]]:
                    overlap = jaccard(words[name], words[other]) if other != name else 0.0
                    if 0.0 < overlap < NEAR_DUPLICATE:
                        scored.append((-overlap, other))
                self._neighbours[name] = [other for _, other in sorted(scored)[:3]]
        return self._neighbours

    def siblings(self) -> list[tuple[dict, str, str]]:
        """(training request, a tool it needs, a sibling of that tool it does not need): same
        field, word overlap of at least :data:`NEAR_DUPLICATE`, and the request holds a word
        only the needed tool has and none only the sibling has (so the label is clean: the
        request itself says which of the two it is); computed once."""
        if self._siblings is None:
            words = self.words
            near = {name: [other for other in self.by_field[self.field_of[name]]
                           if other != name and jaccard(words[name], words[other]) >= NEAR_DUPLICATE]
                    for name in self.tools}
            self._siblings = []
            for q in self.train:
                said = _stems(q["query"])
                for tool in q["expected_tools"]:
                    for other in near[tool]:
                        if other in q["expected_tools"]:
                            continue
                        if _stems(" ".join(words[tool] - words[other])) & said and \
                                not _stems(" ".join(words[other] - words[tool])) & said:
                            self._siblings.append((q, tool, other))
        return self._siblings


def _stems(text: str) -> set[str]:
    """Word stems (first five letters) of ``text``: enough to match "calculate" with "calculation"."""
    return {w[:5] for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2}


def _held_out(query_id: str) -> bool:
    return hashlib.sha256(query_id.encode()).digest()[0] / 256 < HELD_OUT_FRACTION


def load_seal(corpus: Path) -> SealCorpus:
    """Read Seal-Tools' ``tools.jsonl`` and ``queries.jsonl`` (as converted in ``shared/corpora``)."""
    corpus = Path(corpus)
    try:
        tool_rows = [json.loads(line) for line in (corpus / "tools.jsonl").read_text().splitlines() if line.strip()]
        queries = [json.loads(line) for line in (corpus / "queries.jsonl").read_text().splitlines() if line.strip()]
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"Seal-Tools corpus not found: {exc.filename} (give --corpus DIR holding "
                                "tools.jsonl and queries.jsonl)") from None
    tools: dict[str, ToolSpec] = {}
    field_of: dict[str, str] = {}
    by_field: dict[str, list[str]] = {}
    for row in tool_rows:
        spec = to_spec(row)
        tools[spec.name] = spec
        top = row.get("field", "other").split("/")[0]
        field_of[spec.name] = top
        by_field.setdefault(top, []).append(spec.name)
    queries = [q for q in queries if q.get("query") and all(n in tools for n in q.get("expected_tools", []))]
    held = [q for q in queries if _held_out(q["id"])]
    train = [q for q in queries if not _held_out(q["id"])]
    by_field_q: dict[str, list[dict]] = {}
    for q in train:
        for f in sorted({field_of[n] for n in q["expected_tools"]}):
            by_field_q.setdefault(f, []).append(q)
    return SealCorpus(tools, field_of, by_field, train, held, by_field_q)


# -- groups --------------------------------------------------------------------------------

@dataclass
class Extras:
    """Messages mixed into the general groups."""

    no_tool: list[str]
    acks: list[str]


def load_extras() -> Extras:
    no_tool = [json.loads(line)["message"] for line in NO_TOOL_FILE.read_text().splitlines() if line.strip()]
    acks = []
    for line in FOLLOWUPS_TRAIN_FILE.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("metadata", {}).get("kind") == "ack":
                acks.append(row["input"]["user_message"])
    return Extras(no_tool, acks)


def distractors(corpus: SealCorpus, rng: random.Random, exclude: set[str], anchor_fields: list[str],
                 count: int) -> list[str]:
    out: list[str] = []
    tries = 0
    while len(out) < count and tries < count * 20:
        tries += 1
        if anchor_fields and rng.random() < 0.5:  # hard: same field as a needed tool
            pool = corpus.by_field[rng.choice(anchor_fields)]
        else:
            pool = corpus.by_field[rng.choice(corpus.fields)]
        name = rng.choice(pool)
        if name not in exclude and name not in out:
            out.append(name)
    return out


def _turn(query: dict, rng: random.Random, names: dict[str, str]) -> PastTurn:
    return PastTurn(user=query["query"], tools=[PastToolCall(name=names.get(n, n), result=rng.choice(RESULTS))
                                                 for n in query["expected_tools"]],
                    reply=rng.choice(["Done.", "All set.", "Here you go.", ""]))


def _negatives(corpus: SealCorpus, rng: random.Random, offered: set[str], fields: list[str], count: int,
               exclude: list[dict]) -> list[dict]:
    """Requests none of whose tools is offered: half from the offered tools' fields (hard)."""
    out: list[dict] = []
    for _ in range(count * 10):
        if len(out) >= count:
            break
        if fields and rng.random() < 0.5:
            pool = corpus.queries_by_field.get(rng.choice(fields)) or corpus.train
        else:
            pool = corpus.train
        q = rng.choice(pool)
        if not offered & set(q["expected_tools"]) and q not in exclude and q not in out:
            out.append(q)
    return out


def _styled_group(corpus: SealCorpus, rng: random.Random, offered: list[str], samples: list[Sample],
                  source: str) -> Group:
    """The offered tools in one picked style (names rewritten, descriptions cut...), the answers
    renamed to match, the requests shuffled."""
    styler = Styler.pick(rng)
    tools = [styler.tool(corpus.tools[n], corpus.field_of[n]) for n in offered]  # names the tools first
    for s in samples:
        s.answer = [styler.names[n] for n in s.answer]
    rng.shuffle(samples)
    return Group(tools, samples, source=source)


KINDS = {"multi": 25, "single": 18, "solo": 25, "tiny": 14, "partial": 18}
"""Shares of the tool-list kinds (see :func:`seal_groups`)."""


def adjacent_groups(corpus: SealCorpus, rng: random.Random) -> list[Group]:
    """Lists built around a request and a neighbour of a tool it needs (same field, a nearby
    but different job, see :meth:`SealCorpus.neighbours`), the BFCL "irrelevance" kind: the
    right topic, the wrong operation. Either the neighbour alone (the request needs none of
    the offered tools), with its twin: the same list with the needed tool in the neighbour's
    place (the request needs it), so both sides of the decision come in equal shares; or both
    tools together (only the needed one). Requests that do need the neighbour, where the corpus
    has any, are answered with it, so the neighbour is not simply a tool never to call."""
    query = rng.choice(corpus.train)
    needed = set(query["expected_tools"])
    nbrs = corpus.neighbours()
    anchors = [n for n in query["expected_tools"] if any(m not in needed for m in nbrs.get(n, []))]
    if not anchors:
        return []
    tool = rng.choice(anchors)
    neighbour = rng.choice([m for m in nbrs[tool] if m not in needed])
    alone = rng.random() < 0.5
    others = distractors(corpus, rng, needed | {neighbour}, [], rng.choice([0, 0, 1, 2]))
    users = [q for q in corpus.queries_by_field.get(corpus.field_of[neighbour], []) if neighbour in q["expected_tools"]]
    neighbour_user = rng.choice(users) if users else None
    lists = [[neighbour] + others, [tool] + others] if alone else [[tool, neighbour] + others]
    groups = []
    for offered in lists:
        rng.shuffle(offered)
        offered_set = set(offered)
        requests = [query] + ([neighbour_user] if neighbour_user and neighbour in offered_set else [])
        samples = [Sample(q["query"], [n for n in q["expected_tools"] if n in offered_set]) for q in requests]
        groups.append(_styled_group(corpus, rng, offered, samples, "seal:adjacent"))
    return groups


JOINED_SHARE = 0.8
"""How often a sibling list that has a request for each lookalike also gets both joined into one."""


def sibling_groups(corpus: SealCorpus, rng: random.Random) -> list[Group]:
    """A list built on a request, a tool it needs and a sibling of that tool (see
    :meth:`SealCorpus.siblings`), the BFCL "multiple" kind: tools that compete, only one
    needed. Where the corpus has a request that needs the sibling and not the tool, it comes
    too, answered with the sibling, so neither is simply the tool to call, and mostly (:data:`JOINED_SHARE`)
    the two requests joined into one, answered with both (BFCL's "parallel_multiple" kind);
    sometimes a request of the same field needing neither ("none"); with 0-3 distractors.
    Returns no list when the corpus has no siblings."""
    pairs = corpus.siblings()
    if not pairs:
        return []
    query, tool, sibling = rng.choice(pairs)
    others = distractors(corpus, rng, set(query["expected_tools"]) | {sibling}, [corpus.field_of[tool]],
                         rng.choice([0, 1, 2, 3]))
    offered = [tool, sibling] + others
    rng.shuffle(offered)
    offered_set = set(offered)
    back = [q for q, t, s in pairs if t == sibling and s == tool]
    requests = [query] + ([rng.choice(back)] if back else [])
    samples = [Sample(q["query"], [n for n in q["expected_tools"] if n in offered_set]) for q in requests]
    if len(requests) == 2 and rng.random() < JOINED_SHARE:  # one request asking for both: both are needed
        samples.append(Sample(f"{requests[0]['query'].strip()} Also: {requests[1]['query'].strip()}",
                              sorted({n for q in requests for n in q["expected_tools"] if n in offered_set})))
    samples += [Sample(q["query"], []) for q in _negatives(corpus, rng, offered_set, [corpus.field_of[tool]],
                                                             rng.choice([0, 1]), requests)]
    return [_styled_group(corpus, rng, offered, samples, "seal:sibling")]


def seal_groups(corpus: SealCorpus, extras: Extras, rng: random.Random, n_groups: int,
                adjacent: float = 0.0, siblings: float = 0.0) -> list[Group]:
    """``n_groups`` tool lists with their requests (see the module docstring).

    Kinds: ``multi`` (multi-tool requests, every needed tool offered, among distractors),
    ``single`` (several one-tool requests over one list), ``solo`` (exactly one tool offered:
    a request that needs it beside requests that don't, from the same field), ``tiny`` (a
    needed tool and one to three others), ``partial`` (only some needed tools offered).
    Every list also gets requests whose tools are not offered (answer: none), so lists where
    all, some and none of the tools are needed come in comparable shares.
    """
    singles = [q for q in corpus.train if len(q["expected_tools"]) == 1]
    multis = [q for q in corpus.train if len(q["expected_tools"]) > 1]
    groups = []
    for _ in range(n_groups):
        if adjacent and rng.random() < adjacent:  # no draw at 0: the default lists stay as they were
            built = adjacent_groups(corpus, rng)
            if built:
                groups += built
                continue
        if siblings and rng.random() < siblings:  # no draw at 0, as above
            built = sibling_groups(corpus, rng)
            if built:
                groups += built
                continue
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        if kind == "single":
            anchors = rng.sample(singles, rng.randint(2, 5))
        elif kind == "multi":
            anchors = rng.sample(multis, rng.randint(1, 3))
        elif kind == "partial":
            anchors = rng.sample(multis, rng.randint(1, 2))
        elif kind == "solo":
            anchors = [rng.choice(singles if rng.random() < 0.6 else multis)]
        else:
            anchors = [rng.choice(multis if rng.random() < 0.7 else singles)]
        needed = list(dict.fromkeys(n for q in anchors for n in q["expected_tools"]))
        if kind in ("tiny", "solo"):
            offered = [rng.choice(needed)]
        elif kind == "partial" and len(needed) > 1:
            offered = rng.sample(needed, rng.randint(1, len(needed) - 1))
        else:
            offered = needed
        offered = offered[:MAX_TOOLS]
        if kind == "solo":
            n_extra = 0
        elif kind == "tiny":
            n_extra = rng.choice([1, 1, 2, 3])
        else:
            n_extra = rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15])
        n_extra = min(n_extra, MAX_TOOLS - len(offered))
        fields = [corpus.field_of[n] for n in needed]
        offered += distractors(corpus, rng, set(needed), fields, n_extra)
        rng.shuffle(offered)
        offered_set = set(offered)
        samples = [Sample(q["query"], [n for n in q["expected_tools"] if n in offered_set]) for q in anchors]
        n_neg = rng.choice([0, 1, 1, 1]) if kind == "solo" else rng.choice([0, 0, 1, 1, 2])
        negatives = _negatives(corpus, rng, offered_set, fields, n_neg, anchors)
        samples += [Sample(q["query"], []) for q in negatives]
        if rng.random() < 0.15:
            samples.append(Sample(rng.choice(extras.no_tool), []))
        styler = Styler.pick(rng)
        tools = [styler.tool(corpus.tools[n], corpus.field_of[n]) for n in offered]
        if rng.random() < 0.1 and extras.acks:  # after a turn that used these tools: thanks → none
            samples.append(Sample(rng.choice(extras.acks), [], [_turn(anchors[0], rng, styler.names)]))
        if rng.random() < 0.15:  # an unrelated earlier turn must not change a self-contained request
            other = rng.choice(corpus.train)
            if other not in anchors:
                samples[0] = Sample(samples[0].message, samples[0].answer, [_turn(other, rng, styler.names)])
        for s in samples:
            s.answer = [styler.names[n] for n in s.answer]
        level = rng.choices([0, 1, 2, 3], weights=[92, 3, 3, 2])[0]
        rng.shuffle(samples)
        groups.append(Group(tools, samples, level=level, source=f"seal:{kind}"))
    return groups


def openhoof_records() -> list[TrainingRecord]:
    """The bundled OpenHoof training records: curated, extra curated, and follow-ups."""
    from openhoof_router.learning.data.assemble import bundled_train

    return [rec for _, recs in bundled_train() for rec in recs]


def openhoof_groups(records: Sequence[TrainingRecord], corpus: SealCorpus, rng: random.Random,
                    passes: int, group_size: int) -> list[Group]:
    """OpenHoof requests over the full tool list, and over subsets mixed with Seal-Tools tools."""
    out: list[Group] = []
    builtin = {t.name: t for t in builtin_tools()}
    for _ in range(passes):
        seed = rng.randrange(1 << 30)
        groups = records_to_groups(records, group_size=group_size, seed=seed, source="openhoof")
        for g in groups:
            if rng.random() < 0.35:  # a smaller list: the needed tools, some others, foreign tools
                needed = {n for s in g.samples for n in s.answer}
                for s in g.samples:
                    for turn in s.context:
                        needed.update(c.name for c in turn.tools if c.name in builtin)
                others = [n for n in builtin if n not in needed]
                # sorted: sets iterate in hash order
                keep = sorted(needed) + rng.sample(others, rng.randint(0, len(others)))
                foreign = distractors(corpus, rng, set(), [], rng.randint(0, 6))
                tools = [builtin[n] for n in keep] + [corpus.tools[n] for n in foreign]
                rng.shuffle(tools)
                g = Group(tools, [Sample(s.message, [n for n in s.answer if n in keep], s.context)
                                  for s in g.samples], source="openhoof:subset")
            out.append(g)
    return out


def general_groups(corpus: SealCorpus, *, seal_groups_n: int, openhoof_passes: int, seed: int,
                   group_size: int = 8, extra: Sequence[tuple[SealCorpus, int]] = (),
                   adjacent: float = 0.0, siblings: float = 0.0) -> list[Group]:
    """The whole general training set, shuffled. ``extra``: more corpora in the same format
    (e.g. MetaTool, see ``training/corpora``), each with the number of tool lists built
    from it; their lists offer only their own tools (a corpus's requests are labelled for its
    own catalog, not for another's). ``adjacent``: the share of Seal-Tools lists of the
    :func:`adjacent_groups` kind; ``siblings``: of the :func:`sibling_groups` kind."""
    rng = random.Random(seed)
    extras = load_extras()
    groups = seal_groups(corpus, extras, rng, seal_groups_n, adjacent=adjacent, siblings=siblings)
    groups += openhoof_groups(openhoof_records(), corpus, rng, openhoof_passes, group_size)
    for other, n_groups in extra:  # after the rest: without extra corpora the draw is unchanged
        groups += [replace(g, source=f"extra:{g.source}") for g in seal_groups(other, extras, rng, n_groups)]
    rng.shuffle(groups)
    return groups
