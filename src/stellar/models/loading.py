"""Where a ``transformers`` checkpoint comes from: a registry card, a local folder or a hub id.

Shared by the backbones that load through ``from_pretrained`` (detectors, relation scorers): the
same rules as :func:`stellar.models.clip.load_clip` — a card name (or a hub id that a card declares)
goes through the registry (pinned revision, verified cache, offline-aware errors); an existing
folder is used as it is; any other string is passed to ``from_pretrained`` as a hub id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stellar.errors import StellarError


@dataclass(frozen=True)
class PretrainedSource:
    """``path`` to give ``from_pretrained`` (a folder or a hub id) and the ``name`` results record."""

    path: str
    name: str
    card: str | None = None


def pretrained_source(spec: str) -> PretrainedSource:
    """Resolve ``spec`` (card name | hub id declared by a card | local folder | other hub id).

    Raises:
        stellar.models.registry.WeightsUnavailableError: a card's files are not cached and cannot be fetched.
        StellarError: the card is not a transformers checkpoint (no ``config.json``).
    """
    from stellar.models import registry

    folder = Path(spec).expanduser()
    if folder.is_dir():
        return PretrainedSource(str(folder), f"local:{folder.resolve()}")
    card = None
    try:
        card = registry.get_card(spec)
    except registry.UnknownModelError:
        card = next((c for c in registry.list_cards() if any(getattr(s, "repo_id", None) == spec for s in c.sources)), None)
    if card is None:
        return PretrainedSource(spec, f"{spec}@default")
    files = registry.resolve(card.name)
    config = files.get("config.json")
    if config is None:
        raise StellarError(f"model card {card.name!r} has no config.json; it is not a transformers checkpoint")
    revision = next((getattr(s, "revision", None) for s in card.sources if getattr(s, "revision", None)), "unpinned")
    return PretrainedSource(str(config.parent), f"{card.name}@{revision}", card.name)


def check_tokenizer(tokenizer, expected: int | None, name: str) -> None:
    """Refuse a tokenizer whose size differs from the model's text ``vocab_size``.

    Offline, a tokenizer loaded from a hub id can come back as a 2-token tokenizer without any error
    (DESIGN §4); it would silently produce garbage scores.
    """
    if expected is not None and len(tokenizer) != int(expected):
        raise StellarError(
            f"tokenizer of {name!r} has {len(tokenizer)} tokens but the model expects {expected}: "
            "the tokenizer did not load correctly (an offline hub id can silently give a 2-token tokenizer).\n"
            "  fix: fetch the model first (stellar models fetch NAME) or pass a local folder with its tokenizer files"
        )
