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


# ------------------------------------------------------------------------------ weights identity
#: Files of a checkpoint folder that decide what a model computes: weights, configs, tokenizer and
#: processor files. Docs (README.md), licences and images never change features and are skipped.
_IDENTITY_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".dat", ".npz", ".json", ".txt", ".model", ".tiktoken")
_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _memo_db():
    import sqlite3

    from stellar.models.registry import stellar_home

    home = stellar_home()
    home.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(home / "file-sha256.sqlite", timeout=60)
    conn.execute("CREATE TABLE IF NOT EXISTS sha (path TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT, PRIMARY KEY (path, size, mtime_ns))")
    return conn


def _hash_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per file *state* and memoised by (resolved path, size, mtime_ns).

    The memo lives in memory and in ``$STELLAR_HOME/file-sha256.sqlite``, so a multi-GB checkpoint is
    hashed once, not on every run; replacing the file (new size or modification time) hashes it again.
    """
    import sqlite3

    p = Path(path).resolve()
    st = p.stat()
    # the inode too: a file replaced by rename within one mtime tick of a coarse file system is another file
    key = (f"{p}#{st.st_ino}", int(st.st_size), int(st.st_mtime_ns))
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    try:
        conn = _memo_db()
    except (OSError, sqlite3.Error):  # a read-only home: hash every run, correctness first
        conn = None
    digest = None
    if conn is not None:
        try:
            row = conn.execute("SELECT sha256 FROM sha WHERE path = ? AND size = ? AND mtime_ns = ?", key).fetchone()
            digest = row[0] if row else None
        except sqlite3.Error:
            digest = None
    if digest is None:
        digest = _hash_file(p)
        if conn is not None:
            try:
                conn.execute("INSERT OR REPLACE INTO sha VALUES (?, ?, ?, ?)", (*key, digest))
                conn.commit()
            except sqlite3.Error:
                pass
    if conn is not None:
        conn.close()
    _SHA_MEMO[key] = digest
    return digest


def weights_identity(*sources: str | Path) -> str:
    """``"sha256:<16 hex>"``: one digest over the sha256 of every file a model loads.

    ``sources`` are files or checkpoint folders (a folder counts its top-level weight, config,
    tokenizer and processor files: :data:`_IDENTITY_SUFFIXES`). Every feature-cache protocol carries
    it (issue 9.8): weights replaced in place — same card name, same folder — give another protocol,
    so no feature computed with the old weights is reused.
    """
    import hashlib

    entries: list[str] = []
    for src in sources:
        p = Path(src).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(_IDENTITY_SUFFIXES))
            entries.extend(f"{p.name}/{f.name}={file_sha256(f)}" for f in files)
        elif p.is_file():
            entries.append(f"{p.name}={file_sha256(p)}")
        else:
            raise StellarError(f"cannot identify model weights: {p} does not exist")
    return "sha256:" + hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def module_identity(module) -> str:
    """The weights identity of a loaded ``torch.nn.Module`` (``transformers`` model or plain module).

    - loaded with ``from_pretrained(folder)``: :func:`weights_identity` of that folder (memoised: cheap);
    - loaded from the hub: ``hub:<repo>@<commit>`` (the commit transformers resolved);
    - otherwise (built in memory, as tests do): the sha256 of its state dict (parameters and buffers).
    """
    import hashlib

    config = getattr(module, "config", None)
    source = getattr(config, "_name_or_path", None) or getattr(module, "name_or_path", None)
    if source and Path(str(source)).expanduser().is_dir():
        return weights_identity(source)
    commit = getattr(config, "_commit_hash", None)
    if source and commit:
        return f"hub:{source}@{commit}"
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + h.hexdigest()[:16]


def dtype_tag(dtype) -> str:
    """``fp16`` / ``fp32`` / ``bf16`` ... of a torch dtype (what protocols record)."""
    return {"float16": "fp16", "float32": "fp32", "bfloat16": "bf16", "float64": "fp64"}.get(str(dtype).removeprefix("torch."), str(dtype))


def model_protocol(kind: str, name: str, *, weights: str, dtype: str, preprocessing: str) -> str:
    """The one format of a feature-cache protocol: ``kind|name|weights=…|dtype=…|pre=…``.

    ``weights``: :func:`weights_identity` / :func:`module_identity`; ``dtype``: the compute precision
    (``fp32``, ``fp16``, ``amp-fp16``); ``preprocessing``: everything that turns an input into the
    model's tensor (processor settings, crop rule, context length). Two runs share cached features
    only when all of these agree.
    """
    return f"{kind}|{name}|weights={weights}|dtype={dtype}|pre={preprocessing}"


def processor_settings(processor) -> str:
    """The settings of a ``transformers`` image processor that change its output, as compact JSON."""
    import json

    keys = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
    cfg = {k: getattr(processor, k) for k in keys if getattr(processor, k, None) is not None}
    return json.dumps(cfg, sort_keys=True, default=_plain, separators=(",", ":"))


def _plain(value):
    # transformers' SizeDict and friends: keep the set fields only, so protocols stay short and stable
    if hasattr(value, "keys"):
        return {k: value[k] for k in value.keys() if value[k] is not None}
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if v is not None and not k.startswith("_")}
    return str(value)
