"""Training triplets for the location codebook: (image, "{location} {pathology}", Gaussian target).

Vilouras et al. 2025 (section 3.2, appendix D): each image carries one pathology label and its
report; a report sentence is kept when it names the label (or a synonym or plural), has no
negation or resolution word and names an anatomical location; bilaterally symmetric locations found
in separate sentences of one report are merged into one bilateral prompt. Locations come from
RadGraph-XL's "Anatomy definitely present" entities when the `radgraph` package and its model are
installed, else from the rule-based parser of `bench.datasets.anatomy` (which one ran is in the
provenance). The Gaussian target is made at training time from the prior table (`AnatomyLut`),
with the paper's +-5 % jitter.

Reports table (CSV): `image_path`, `category`, `report`, optional `image_id`; image paths are
relative to the table's folder unless absolute.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from ....core.errors import BenchError
from ....core.samples import Sample
from ....datasets.anatomy import AnatomyRules, load_rules, names_location, parse_phrase
from ....datasets.tables import read_csv, require_columns

CURATION_FILE = Path(__file__).resolve().parent / "curation.toml"
ANAT_DP = ("Anatomy::definitely present", "ANAT-DP")


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


@dataclass(frozen=True)
class Curation:
    """Per category: the words that name it and the pathology words of its prompts; skip words."""

    terms: dict[str, tuple[tuple[str, ...], ...]]
    pathology: dict[str, str]
    skip: frozenset[str]

    def mentions(self, category: str, words: Sequence[str]) -> bool:
        joined = f" {' '.join(words)} "
        return any(f" {' '.join(term)} " in joined for term in self.terms.get(category, ()))


@lru_cache(maxsize=2)
def load_curation(path: Path = CURATION_FILE) -> Curation:
    """The curation rules file (default: the built-in one)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
        terms = {c["category"]: tuple(tuple(_words(t)) for t in c["terms"]) for c in raw["categories"]}
        pathology = {c["category"]: c["pathology"] for c in raw["categories"]}
        skip = frozenset(raw["negation"]) | frozenset(raw["resolution"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise BenchError(f"curation rules {path}: {exc}") from None
    return Curation(terms, pathology, skip)


class LocationParser(Protocol):
    """Finds the anatomical locations a sentence names (None: it names none)."""

    name: str

    def locations(self, sentence: str, pathology: str) -> tuple[str, ...] | None: ...


class RuleParser:
    """The rule-based parser of `bench.datasets.anatomy` (in place of RadGraph-XL's ANAT-DP entities)."""

    name = "rules (bench.datasets.anatomy)"

    def __init__(self, rules: AnatomyRules | None = None) -> None:
        self.rules = rules or load_rules()

    def locations(self, sentence: str, pathology: str) -> tuple[str, ...] | None:
        if not names_location(sentence, self.rules):
            return None
        try:
            return parse_phrase(sentence, self.rules).locations or None
        except BenchError:
            return None


class RadGraphParser:
    """RadGraph-XL's "Anatomy definitely present" entities, read into locations by the same rules.

    The entity words (with the sentence's side words before them) and the pathology form a short
    phrase that the rules map onto the 27 locations; no ANAT-DP entity means no location.
    """

    def __init__(self, rules: AnatomyRules | None = None, model: object | None = None) -> None:
        self.rules = rules or load_rules()
        if model is None:
            from radgraph import RadGraph

            model = RadGraph(model_type="radgraph-xl")
        self.model = model
        try:
            from importlib.metadata import version

            self.name = f"radgraph-xl (radgraph {version('radgraph')})"
        except Exception:
            self.name = "radgraph-xl"

    def locations(self, sentence: str, pathology: str) -> tuple[str, ...] | None:
        out = self.model([sentence])
        entities = (out.get("0") or next(iter(out.values()), {})).get("entities", {}) if out else {}
        words = [str(e.get("tokens", "")) for _, e in sorted(entities.items(), key=lambda kv: int(kv[0]))
                 if e.get("label") in ANAT_DP]
        if not words:
            return None
        phrase = " ".join(words + [pathology])
        try:
            return parse_phrase(phrase, self.rules).locations or None
        except BenchError:
            return None


def make_parser(kind: str = "auto", rules: AnatomyRules | None = None) -> LocationParser:
    """"rules", "radgraph" (BenchError when unavailable) or "auto" (RadGraph-XL when it loads)."""
    if kind == "rules":
        return RuleParser(rules)
    if kind not in ("auto", "radgraph"):
        raise BenchError(f"location parser {kind!r}: expected auto, rules or radgraph")
    try:
        return RadGraphParser(rules)
    except Exception as exc:  # not installed, or its model cannot be fetched
        if kind == "radgraph":
            raise BenchError(f"RadGraph-XL is not available ({type(exc).__name__}: {exc}); "
                             "pip install radgraph, or use parser = \"rules\"") from None
        return RuleParser(rules)


@dataclass(frozen=True)
class Report:
    """One image with its single pathology label and its report text."""

    sample: Sample
    category: str
    text: str


@dataclass(frozen=True)
class Triplet:
    """An image, the locations and pathology of its prompt, and the sentence they came from."""

    sample: Sample
    category: str
    locations: tuple[str, ...]
    pathology: str
    sentence: str


def sentences(text: str) -> list[str]:
    """A report split into sentences (at . ; ! ? and line breaks)."""
    return [s.strip() for s in re.split(r"(?<!\d)[.;!?](?!\d)|\n", text) if s.strip()]


def _merge_bilateral(found: list[tuple[str, tuple[str, ...]]], rules: AnatomyRules) -> list[tuple[str, tuple[str, ...]]]:
    """Report-level merge: a location named in one sentence and its mirror in another become one
    bilateral prompt (in the first of the two sentences); emptied sentences are dropped."""
    by_key = {loc.key: loc for loc in rules.locations}
    out = [(s, list(keys)) for s, keys in found]
    for i, (_, keys) in enumerate(out):
        for key in list(keys):
            loc = by_key[key]
            if loc.side == "none":
                continue
            mirror = rules.location("left" if loc.side == "right" else "right", loc.region).key
            if mirror in keys:
                continue
            for j in range(i + 1, len(out)):
                if mirror in out[j][1]:
                    out[j][1].remove(mirror)
                    keys.insert(keys.index(key) + (loc.side == "right"), mirror)
                    break
    return [(s, tuple(keys)) for s, keys in out if keys]


def curate(reports: Iterable[Report], parser: LocationParser | None = None, curation: Curation | None = None,
           rules: AnatomyRules | None = None) -> tuple[list[Triplet], dict]:
    """Triplets of every report, and counts of what was kept and why the rest was not. A sentence
    whose locations are all in an earlier prompt of the same report adds no triplet."""
    rules = rules or load_rules()
    parser = parser or RuleParser(rules)
    curation = curation or load_curation()
    counts = {"reports": 0, "sentences": 0, "off_label": 0, "negated_or_resolved": 0, "no_location": 0,
              "merged_bilateral": 0, "duplicates": 0, "triplets": 0, "reports_with_triplets": 0}
    triplets: list[Triplet] = []
    for report in reports:
        counts["reports"] += 1
        if report.category not in curation.pathology:
            raise BenchError(f"{report.sample.sample_id}: label {report.category!r} is none of "
                             f"{', '.join(curation.pathology)}")
        pathology = curation.pathology[report.category]
        found = []
        for sentence in sentences(report.text):
            counts["sentences"] += 1
            words = _words(sentence)
            if not curation.mentions(report.category, words):
                counts["off_label"] += 1
            elif curation.skip & set(words):
                counts["negated_or_resolved"] += 1
            else:
                keys = parser.locations(sentence, pathology)
                if keys is None:
                    counts["no_location"] += 1
                else:
                    found.append((sentence, keys))
        merged = _merge_bilateral(found, rules)
        counts["merged_bilateral"] += len(found) - len(merged)
        seen: list[frozenset[str]] = []
        kept = 0
        for sentence, keys in merged:
            if any(frozenset(keys) <= earlier for earlier in seen):
                counts["duplicates"] += 1
                continue
            seen.append(frozenset(keys))
            triplets.append(Triplet(report.sample, report.category, keys, pathology, sentence))
            kept += 1
        counts["triplets"] += kept
        counts["reports_with_triplets"] += bool(kept)
    return triplets, counts


def reports_from_samples(samples: Iterable[Sample]) -> list[Report]:
    """Each sample's phrase as a one-sentence report (datasets with phrases, such as the phantom)."""
    return [Report(s, s.category, s.phrase) for s in samples]


def read_reports(csv: Path) -> list[Report]:
    """The reports table; BenchError naming the file and the column or row at fault."""

    table = read_csv(csv)
    require_columns(table, csv, ("image_path", "category", "report"), "a reports table has image_path, category, report")
    out = []
    for i, row in enumerate(table.itertuples(index=False), start=1):
        if not row.image_path.strip() or not row.category.strip():
            raise BenchError(f"{csv}: data row {i} has an empty image_path or category")
        path = row.image_path.strip()
        path = path if os.path.isabs(path) else str(Path(csv).resolve().parent / path)
        image_id = getattr(row, "image_id", "") or Path(path).stem
        sample = Sample(image_id, path, 0, 0, row.category.strip().lower(), "", (), "train")
        out.append(Report(sample, sample.category, row.report))
    return out


__all__ = ["Curation", "LocationParser", "RadGraphParser", "Report", "RuleParser", "Triplet", "curate",
           "load_curation", "make_parser", "read_reports", "reports_from_samples", "sentences"]
