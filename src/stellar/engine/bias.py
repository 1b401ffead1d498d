"""The biased-encoder check (issue 12): was the method conditioned on the encoder that scores it?

Identity-conditioned generators (InstantID, PuLID, IP-Adapter-FaceID, PhotoMaker …) feed a face
encoder's embedding of the input photo into the generator. Scoring them with that same encoder
rewards matching *its* embedding, not the person: such numbers are biased and are flagged.

Declaration (any of them; values compared case-insensitively):

- ``stellar evaluate --generator-encoder NAME`` (wins over the sidecars);
- a generated image's sidecar ``NAME.json`` with the key ``face_encoder`` (or its synonym
  ``generator_encoder``): a string or a list of strings, e.g. ``"arcface-antelopev2"``.

A declared name matches an evaluation preset when it equals, or is a ``-``-separated prefix of / is
prefixed by, one of the names of the preset's encoder (:attr:`FaceAnalyzer.encoder_names`: embedder
name, its registry cards, the preset name): ``arcface`` matches the ``arcface`` preset
(``arcface`` / ``arcface-antelopev2``) and ``arcface-buffalo-l``; ``facenet`` matches ``paper``
(``facenet-vggface2``). Each match is one warning, stored in ``run.json["warnings"]``, printed on the
console and shown by ``stellar report``.
"""

from __future__ import annotations

import json
from typing import Iterable

SIDECAR_KEYS = ("face_encoder", "generator_encoder")
BIASED = "evaluated with the encoder it was trained on: biased"


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def names_match(declared: str, name: str) -> bool:
    """``declared`` names the encoder ``name`` (equal, or one a ``-``-boundary prefix of the other)."""
    a, b = _norm(declared), _norm(name)
    return bool(a) and (a == b or b.startswith(a + "-") or a.startswith(b + "-"))


def biased_presets(declared: Iterable[str], encoders: dict[str, set[str]]) -> dict[str, list[str]]:
    """``{preset: [declared names matching it]}`` for the presets whose encoder a declaration names."""
    out: dict[str, list[str]] = {}
    for d in dict.fromkeys(_norm(x) for x in declared if str(x).strip()):
        for preset, names in encoders.items():
            if any(names_match(d, n) for n in names):
                out.setdefault(preset, []).append(d)
    return out


def declared_encoders(gs, override: str | None = None) -> tuple[list[str], str]:
    """The encoders the generated set declares, and where from (``--generator-encoder`` or sidecars)."""
    if override:
        return [override], "--generator-encoder"
    found: dict[str, None] = {}
    for im in gs.report.matched.values():
        if im.sidecar is None:
            continue
        try:
            meta = json.loads(im.sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # an unusable sidecar is already a match problem
        if not isinstance(meta, dict):
            continue
        for key in SIDECAR_KEYS:
            value = meta.get(key)
            for v in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
                if isinstance(v, str) and v.strip():
                    found[v.strip()] = None
    return list(found), "sidecars (face_encoder)"


def encoder_bias_warnings(analyzers: dict, gs, override: str | None = None) -> list[str]:
    """The warnings of a run: one per evaluation preset whose encoder the method declares it was conditioned on."""
    declared, source = declared_encoders(gs, override)
    if not declared:
        return []
    encoders = {p: set(getattr(a, "encoder_names", set())) for p, a in analyzers.items()}
    out = []
    for preset, names in biased_presets(declared, encoders).items():
        label = f"face preset {preset!r}" if preset else "the face preset"
        out.append(f"{label} ({getattr(analyzers[preset], 'embedder_name', '?')}): {BIASED} (the method declares {', '.join(names)} in {source})")
    return out
