"""Anatomical locations and the phrase rules of anatomy-grounded prompts (Vilouras et al. 2025).

A finding phrase becomes (locations, pathology) by rules kept as data in `anatomy_locations.toml`:
side words (the patient's side, radiological convention), region cues and pathology terms. The
prompt is "{location} {pathology}" with the locations' plain names (`anatomy_ldm` reads the
location words' embeddings from a learned codebook). Datasets that rewrite phrases into this
format (`ms-cxr-loc`, `vindr-cxr`) and the codebook tuner share these rules.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import BenchError

#: the word that binds the locations of one prompt ("right lower lung zone and left lower lung zone")
JOINER = "and"
LOCATIONS_FILE = Path(__file__).resolve().parent / "anatomy_locations.toml"
SIDED_REGIONS = frozenset({"lung", "upper", "mid", "lower", "apical", "hilar", "costophrenic", "hemidiaphragm",
                           "clavicle"})
FILLER = frozenset({
    "a", "an", "the", "at", "in", "of", "on", "with", "and", "or", "along", "within", "involving", "is", "are",
    "there", "small", "moderate", "large", "mild", "severe", "minimal", "trace", "tiny", "new", "increased",
    "decreased", "slight", "subtle", "patchy", "focal", "linear", "rounded", "lobe", "lobes", "zone", "zones",
    "side", "sided", "region", "area", "chest", "wall", "lateral", "medial", "multifocal", "diffuse",
})


@dataclass(frozen=True)
class Location:
    """One anatomical location: key, plain-words name (the prompt's words), patient side, region."""

    key: str
    name: str
    side: str
    region: str


@dataclass(frozen=True)
class _Cue:
    words: tuple[str, ...]
    target: str
    side: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class AnatomyRules:
    """The locations and the phrase rules of one rules file."""

    locations: tuple[Location, ...]
    right: frozenset[str]
    left: frozenset[str]
    both: frozenset[str]
    regions: tuple[_Cue, ...]
    pathologies: tuple[_Cue, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(loc.key for loc in self.locations)

    @property
    def location_words(self) -> frozenset[str]:
        """Every word that names a location, a side or a region: the location names' words, the
        side words and the region cues' words, less the one-word pathology terms ("cardiomegaly")."""
        words = {w for loc in self.locations for w in _words(loc.name)}
        words |= self.right | self.left | self.both | {w for cue in self.regions for w in cue.words}
        return frozenset(words - {cue.words[0] for cue in self.pathologies if len(cue.words) == 1})

    def location(self, side: str, region: str) -> Location:
        for loc in self.locations:
            if loc.region == region and loc.side == side:
                return loc
        raise BenchError(f"no anatomical location for side {side!r} and region {region!r}")

    def find(self, text: str) -> Location:
        """The location with this key or name (case and spaces/underscores ignored)."""
        wanted = _norm_key(text)
        for loc in self.locations:
            if wanted in (loc.key, _norm_key(loc.name)):
                return loc
        raise BenchError(f"unknown anatomical location {text!r} (known: {', '.join(self.keys)})")


def _norm_key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower().strip("<>"))


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _cues(entries: Sequence[dict], target_key: str, source: Path) -> tuple[_Cue, ...]:
    cues = []
    for entry in entries:
        if target_key not in entry or not entry.get("cues"):
            raise BenchError(f"{source}: every entry needs {target_key!r} and 'cues'")
        for cue in entry["cues"]:
            cues.append(_Cue(tuple(_words(cue)), entry[target_key], entry.get("side"), entry.get("region")))
    return tuple(cues)


@lru_cache(maxsize=4)
def load_rules(path: Path = LOCATIONS_FILE) -> AnatomyRules:
    """Locations and phrase rules from a TOML file (default: the built-in 27 locations)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"anatomical locations file {path}: {exc}") from None
    try:
        locations = tuple(Location(e["key"], e["name"], e["side"], e["region"]) for e in raw["locations"])
        rules = AnatomyRules(locations, frozenset(raw["right"]), frozenset(raw["left"]),
                             frozenset(raw["both_sides"]), _cues(raw["regions"], "region", path),
                             _cues(raw["pathologies"], "name", path))
    except (KeyError, TypeError) as exc:
        raise BenchError(f"anatomical locations file {path}: missing or malformed field {exc}") from None
    if len(set(rules.keys)) != len(rules.keys):
        raise BenchError(f"anatomical locations file {path}: duplicate location keys")
    return rules


def _match(words: list[str], cues: Sequence[_Cue]) -> list[tuple[int, _Cue]]:
    """(position, cue) of every cue occurrence; cues listed first take their words first."""
    taken = [False] * len(words)
    found = []
    for cue in cues:
        n = len(cue.words)
        for i in range(len(words) - n + 1):
            if tuple(words[i:i + n]) == cue.words and not any(taken[i:i + n]):
                taken[i:i + n] = [True] * n
                found.append((i, cue))
    return sorted(found, key=lambda item: item[0])


@dataclass(frozen=True)
class Finding:
    """What a phrase says: the location keys (in phrase order) and the pathology words."""

    locations: tuple[str, ...]
    pathology: str


def _sides_at(words: list[str], rules: AnatomyRules) -> list[tuple[int, str]]:
    marks = []
    for i, w in enumerate(words):
        if w in rules.both:
            marks.append((i, "both"))
        elif w in rules.right:
            marks.append((i, "right"))
        elif w in rules.left:
            marks.append((i, "left"))
    return marks


def _side_for(position: int, marks: list[tuple[int, str]]) -> str | None:
    """The side named closest before `position`, else the first one after it."""
    before = [side for i, side in marks if i <= position]
    if before:
        return before[-1]
    after = [side for i, side in marks if i > position]
    return after[0] if after else None


def names_location(phrase: str, rules: AnatomyRules | None = None) -> bool:
    """Whether a phrase says where its finding is: a side or bilateral word ("left pneumothorax",
    "bibasilar"), a midline region ("cardiac silhouette"), a region cue that implies its side
    ("retrocardiac", "lingula"), a whole-lung word ("pulmonary edema") or a pathology whose region
    needs no side ("cardiomegaly"). "pleural effusion" or "basilar atelectasis" alone do not: a
    zone of unnamed side is no location (as the paper's curation drops them)."""
    rules = rules or load_rules()
    words = _words(phrase)
    marks = _sides_at(words, rules)
    regions = _match(words, rules.regions)
    if any(cue.target not in SIDED_REGIONS for _, cue in regions):
        return True
    pathologies = [cue for _, cue in _match(words, rules.pathologies)]
    if any(cue.region and cue.region not in SIDED_REGIONS for cue in pathologies):
        return True
    if marks or any(cue.side for _, cue in regions):
        return True
    return any(cue.target == "lung" for _, cue in regions)


def parse_phrase(phrase: str, rules: AnatomyRules | None = None) -> Finding:
    """(locations, pathology) of a finding phrase, e.g. "small right apical pneumothorax" ->
    (right_apical_zone,), "pneumothorax".

    Each region cue takes the side named closest before it (else the first after it); a sided region
    with no side word covers both sides. The pathology is the term found that comes first in the
    rules' list (so "opacity consistent with pneumonia" is pneumonia); with none, the phrase's words
    that name no place, side or size. A whole lung is dropped when a zone of that side is named.
    """
    rules = rules or load_rules()
    words = _words(phrase)
    if not words:
        raise BenchError("empty phrase: nothing to ground")
    marks = _sides_at(words, rules)
    regions = _match(words, rules.regions)
    pathologies = _match(words, rules.pathologies)
    if pathologies:
        order = {cue.target: i for i, cue in reversed(list(enumerate(rules.pathologies)))}
        pathology_cue = min((cue for _, cue in pathologies), key=lambda cue: order[cue.target])
        pathology = pathology_cue.target
    else:
        used = {i + k for i, cue in regions for k in range(len(cue.words))}
        rest = [w for i, w in enumerate(words) if i not in used and w not in FILLER
                and w not in rules.right | rules.left | rules.both]
        if not rest:
            raise BenchError(f"phrase {phrase!r} names no pathology")
        pathology_cue, pathology = None, " ".join(rest)
    if not regions:
        region = (pathology_cue.region if pathology_cue else None) or "lung"
        regions = [(marks[0][0] if marks else 0, _Cue((), region))]
    keys: list[str] = []
    for position, cue in regions:
        if cue.target not in SIDED_REGIONS:
            keys.append(rules.location("none", cue.target).key)
            continue
        side = _side_for(position, marks) or cue.side or "both"
        for s in ("right", "left") if side == "both" else (side,):
            keys.append(rules.location(s, cue.target).key)
    found = [rules.find(k) for k in dict.fromkeys(keys)]
    specific = {loc.side for loc in found if loc.side != "none" and loc.region != "lung"}
    return Finding(tuple(loc.key for loc in found if not (loc.region == "lung" and loc.side in specific)), pathology)


def explicit_locations(value: Any, rules: AnatomyRules | None = None) -> tuple[str, ...]:
    """Location keys from an explicit value: a key or name, a list of them, or "a+b"."""
    rules = rules or load_rules()
    items = value if isinstance(value, (list, tuple)) else str(value).split("+")
    keys = tuple(rules.find(str(item)).key for item in items if str(item).strip())
    if not keys:
        raise BenchError(f"explicit anatomical location {value!r} names no location")
    return keys


def build_prompt(locations: Sequence[str], pathology: str,
                 rules: AnatomyRules | None = None) -> tuple[str, tuple[str, ...]]:
    """("{location} {pathology}", the location names): plain names joined by "and"."""
    rules = rules or load_rules()
    names = tuple(rules.find(key).name for key in locations)
    return f"{f' {JOINER} '.join(names)} {pathology}", names
