"""FaceAnalyzer: detector + aligner + embedder, named presets and their protocol ids (DESIGN §4).

``FaceAnalyzer.from_preset(name)`` builds one of three named protocols:

============  =====================  ================================================================
preset        detector               embedder
============  =====================  ================================================================
``paper``     ``mtcnn``              ``facenet-vggface2`` — what the published Stellar numbers use
``arcface``   ``scrfd`` (antelopev2  ``arcface`` (antelopev2 ``glintr100.onnx``) — what modern
              ``scrfd_10g_bnkps``)   identity papers report
``offline``   ``mtcnn``              ``dlib-resnet-v1`` — every weight ships on PyPI
============  =====================  ================================================================

Any detector can be combined with any embedder (``FaceAnalyzer(detector="dlib-hog",
embedder="arcface-buffalo-l")``); the tables :data:`DETECTORS` and :data:`EMBEDDERS` are data
(lazy ``module:Class`` strings), so adding a backend is one module plus one entry.

``analyze(images)`` returns, per image, the faces sorted by box area (largest first), each with box,
score, landmarks, area and an L2-normalised float32 embedding. No face -> ``[]`` (never an error);
an unreadable image path -> :class:`~stellar.errors.ImageDecodeError` naming it.

``analyzer.protocol`` is the string results and feature caches key on: preset name, component names,
weight files and preprocessing (clean-fid's "mode" idea), and per component the identity of the
weights actually loaded (``weights=sha256:…`` over the files a component lists in ``weight_files``,
:func:`stellar.models.loading.weights_identity`) and its compute precision (``dtype=fp32``), e.g.
``faces-v1/offline:mtcnn[...]|weights=sha256:…|dtype=fp32+dlib-resnet-v1[...]|weights=sha256:…|dtype=fp32``.
"""

from __future__ import annotations

import difflib
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from stellar.device import resolve_device
from stellar.errors import StellarError
from stellar.models.faces.base import Detection, Face, FaceDetector, FaceEmbedder

ImageInput = Union[np.ndarray, "PIL.Image.Image", str, Path]  # noqa: F821 - PIL imported lazily

PROTOCOL_VERSION = "faces-v1"


@dataclass(frozen=True)
class ComponentSpec:
    """How to build a named detector or embedder: a lazy ``module:Class`` plus fixed arguments."""

    target: str
    kwargs: dict = field(default_factory=dict)
    cards: tuple[str, ...] = ()  # registry cards whose files it loads (for the fetch hint)
    protocol: str = ""  # fallback protocol text when the class does not expose ``protocol``
    description: str = ""


@dataclass(frozen=True)
class FacePreset:
    """A named detector + embedder protocol."""

    name: str
    detector: str
    embedder: str
    description: str


DETECTORS: dict[str, ComponentSpec] = {
    "mtcnn": ComponentSpec(
        "stellar.models.faces.mtcnn:MTCNNDetector",
        cards=("mtcnn",),
        protocol="mtcnn[facenet-pytorch-2.6.0 pnet/rnet/onet]:min20,f0.709,t0.6/0.7/0.7",
        description="MTCNN cascade (facenet-pytorch weights)",
    ),
    "scrfd": ComponentSpec(
        "stellar.models.faces.scrfd:SCRFDDetector",
        cards=("arcface-antelopev2",),
        description="SCRFD-10GF (insightface antelopev2, ONNX)",
    ),
    "dlib-hog": ComponentSpec(
        "stellar.models.faces.dlib_backend:DlibHOGDetector",
        cards=("dlib-shape-predictor-5",),
        description="dlib HOG + linear SVM, frontal faces",
    ),
    "dlib-cnn": ComponentSpec(
        "stellar.models.faces.dlib_backend:DlibCNNDetector",
        cards=("dlib-mmod-cnn", "dlib-shape-predictor-5"),
        description="dlib MMOD CNN (slow on CPU)",
    ),
}

EMBEDDERS: dict[str, ComponentSpec] = {
    "facenet-vggface2": ComponentSpec(
        "stellar.models.faces.facenet:FaceNetEmbedder",
        cards=("facenet-vggface2",),
        protocol="facenet-vggface2[20180402-114759-vggface2.pt]:crop160,margin0,(x-127.5)/128,l2",
        description="InceptionResnetV1 trained on VGGFace2, 512-d",
    ),
    "arcface": ComponentSpec(
        "stellar.models.faces.arcface:ArcFaceEmbedder",
        kwargs={"name": "arcface"},
        cards=("arcface-antelopev2",),
        description="ArcFace ResNet-100 Glint360K (antelopev2 glintr100), 512-d",
    ),
    "arcface-buffalo-l": ComponentSpec(
        "stellar.models.faces.arcface:ArcFaceEmbedder",
        kwargs={"name": "arcface-buffalo-l"},
        cards=("arcface-buffalo-l",),
        description="ArcFace ResNet-50 WebFace600K (buffalo_l w600k_r50), 512-d",
    ),
    "dlib-resnet-v1": ComponentSpec(
        "stellar.models.faces.dlib_backend:DlibResNetEmbedder",
        cards=("dlib-shape-predictor-5", "dlib-resnet-v1"),
        description="dlib ResNet face descriptor, 128-d",
    ),
}

PRESETS: dict[str, FacePreset] = {
    "paper": FacePreset("paper", "mtcnn", "facenet-vggface2", "the published Stellar protocol"),
    "arcface": FacePreset("arcface", "scrfd", "arcface", "insightface antelopev2 (modern identity papers)"),
    "offline": FacePreset("offline", "mtcnn", "dlib-resnet-v1", "weights from pip packages only; works with no network"),
}

DEFAULT_PRESET = "paper"


class UnknownFaceModelError(StellarError):
    """A detector, embedder or preset name that does not exist."""

    def __init__(self, kind: str, name: str, valid: Sequence[str]):
        close = difflib.get_close_matches(name, list(valid), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        super().__init__(f"unknown face {kind} {name!r}{hint}; valid: {', '.join(valid)}")


def _lookup(kind: str, name: str, table: dict[str, ComponentSpec]) -> ComponentSpec:
    if name not in table:
        raise UnknownFaceModelError(kind, name, list(table))
    return table[name]


def _instantiate(spec: ComponentSpec, device: str | None, kwargs: dict[str, Any]) -> Any:
    module_name, class_name = spec.target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(device=device, **{**spec.kwargs, **kwargs})


def _add_fetch_hint(exc: StellarError, cards: Sequence[str], preset: str | None) -> StellarError:
    """Append the fetch command (and the offline preset) to a missing-weights error, keeping its type."""
    lines = [str(exc)]
    if cards:
        lines.append(f"  fetch: stellar models fetch {' '.join(dict.fromkeys(cards))}")
    if preset != "offline":
        lines.append(
            "  or use the offline face preset, whose weights ship on PyPI: "
            "--faces offline (stellar evaluate) / --preset offline (stellar faces)"
        )
    exc.args = ("\n".join(lines),)
    return exc


def _is_weights_error(exc: BaseException) -> bool:
    # By name, so that this module does not import the registry at import time.
    return any(cls.__name__ == "WeightsUnavailableError" for cls in type(exc).__mro__)


def build_detector(name: str, device: str | None = None, **kwargs: Any) -> FaceDetector:
    """The detector called ``name`` (see :data:`DETECTORS`)."""
    return _instantiate(_lookup("detector", name, DETECTORS), device, kwargs)


def build_embedder(name: str, device: str | None = None, **kwargs: Any) -> FaceEmbedder:
    """The embedder called ``name`` (see :data:`EMBEDDERS`)."""
    return _instantiate(_lookup("embedder", name, EMBEDDERS), device, kwargs)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity ``a_i · b_j / (|a_i| |b_j|)`` between rows of ``a`` (n, D) and ``b`` (m, D) -> (n, m).

    1-D inputs are treated as single rows; the result is then a float.
    """
    a2 = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b2 = np.atleast_2d(np.asarray(b, dtype=np.float64))
    a2 = a2 / np.maximum(np.linalg.norm(a2, axis=1, keepdims=True), 1e-12)
    b2 = b2 / np.maximum(np.linalg.norm(b2, axis=1, keepdims=True), 1e-12)
    sims = a2 @ b2.T
    if np.ndim(a) == 1 and np.ndim(b) == 1:
        return float(sims[0, 0])
    return sims


def similarity(a: Face | np.ndarray, b: Face | np.ndarray) -> float:
    """Cosine similarity of two faces (or two embeddings)."""
    ea = a.embedding if isinstance(a, Face) else a
    eb = b.embedding if isinstance(b, Face) else b
    return float(cosine_similarity(np.ravel(ea), np.ravel(eb)))


def _to_array(image: ImageInput) -> np.ndarray:
    """HxWx3 uint8 RGB from a path, a PIL image or an array."""
    if isinstance(image, (str, Path)):
        from stellar.images import load_image

        return np.asarray(load_image(image))
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise StellarError(
                f"expected an HxWx3 uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}"
                "\n  fix: convert with np.asarray(PIL.Image.open(p).convert('RGB'))"
            )
        return np.ascontiguousarray(arr[:, :, :3])
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        from stellar.images import _to_rgb

        return np.asarray(_to_rgb(image))
    raise StellarError(f"cannot analyze an object of type {type(image).__name__}; pass a path, a PIL image or an array")


class FaceAnalyzer:
    """Detect, align and embed faces.

    Args:
        detector: a name from :data:`DETECTORS` or a :class:`FaceDetector` instance.
        embedder: a name from :data:`EMBEDDERS` or a :class:`FaceEmbedder` instance.
        device: None / "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
        batch_size: images per detector / embedder call.
        preset: the preset name these components form (set by :meth:`from_preset`; goes into
            :attr:`protocol`).

    Raises:
        UnknownFaceModelError: unknown detector / embedder name (the valid ones are listed).
        WeightsUnavailableError: weights missing (offline / unreachable); the message names the
            fetch command and the offline preset.
    """

    def __init__(
        self,
        detector: str | FaceDetector = "mtcnn",
        embedder: str | FaceEmbedder = "dlib-resnet-v1",
        device: str | None = None,
        batch_size: int = 8,
        *,
        preset: str | None = None,
    ):
        self.device = resolve_device(device)
        self.batch_size = max(1, int(batch_size))
        self.preset = preset
        self.detector_name = detector if isinstance(detector, str) else getattr(detector, "name", type(detector).__name__)
        self.embedder_name = embedder if isinstance(embedder, str) else getattr(embedder, "name", type(embedder).__name__)
        specs = []
        if isinstance(detector, str):
            specs.append(_lookup("detector", detector, DETECTORS))
        if isinstance(embedder, str):
            specs.append(_lookup("embedder", embedder, EMBEDDERS))
        try:
            self.detector = build_detector(detector, self.device) if isinstance(detector, str) else detector
            self.embedder = build_embedder(embedder, self.device) if isinstance(embedder, str) else embedder
        except StellarError as exc:
            if _is_weights_error(exc):
                raise _add_fetch_hint(exc, [c for s in specs for c in s.cards], preset) from None
            raise
        self.protocol = self._protocol()
        self.timings: dict[str, float] = {}
        self.reset_timings()

    @classmethod
    def from_preset(cls, name: str = DEFAULT_PRESET, device: str | None = None, batch_size: int = 8, *, detector: FaceDetector | None = None) -> "FaceAnalyzer":
        """The analyzer of preset ``name`` (``paper``, ``arcface`` or ``offline``).

        ``detector``: an already built instance of the preset's detector to use (shared between
        presets, :func:`presets_from_names`); its protocol is the same as a freshly built one's.
        """
        if name not in PRESETS:
            raise UnknownFaceModelError("preset", name, list(PRESETS))
        p = PRESETS[name]
        return cls(p.detector if detector is None else detector, p.embedder, device=device, batch_size=batch_size, preset=name)

    @property
    def encoder_names(self) -> set[str]:
        """Names a generator may declare for this analyzer's face encoder (lower case): the embedder
        name, its registry cards and, for a named preset, the preset name — what the biased-encoder
        check (issue 12) compares a generated set's ``face_encoder`` declaration with."""
        names = {self.embedder_name.lower()}
        if self.embedder_name in EMBEDDERS:
            names |= {c.lower() for c in EMBEDDERS[self.embedder_name].cards}
        if self.preset:
            names.add(self.preset.lower())
        return names

    def _protocol(self) -> str:
        from stellar.models.loading import weights_identity

        def part(obj: Any, name: str, table: dict[str, ComponentSpec]) -> str:
            text = getattr(obj, "protocol", None)
            if not text and name in table:
                text = table[name].protocol
            text = text or name
            # the weights themselves (sha256 of the files loaded, memoised): a file replaced in place is
            # another protocol, so no cached face feature of the old weights is reused (issue 9.8)
            files = getattr(obj, "weight_files", None)
            if files:
                text += f"|weights={weights_identity(*files)}"
            return text + f"|dtype={getattr(obj, 'dtype_tag', 'fp32')}"

        det = part(self.detector, self.detector_name, DETECTORS)
        emb = part(self.embedder, self.embedder_name, EMBEDDERS)
        # explicitly given weights that are not a card's reference file carry their sha256 (issue 9 item 22)
        from stellar.models.registry import weights_note

        cards = dict.fromkeys(c for t, n in ((DETECTORS, self.detector_name), (EMBEDDERS, self.embedder_name)) if n in t for c in t[n].cards)
        notes = "".join(f"{c}{weights_note(c)}" for c in cards if weights_note(c))
        return f"{PROTOCOL_VERSION}/{self.preset or 'custom'}:{det}+{emb}" + (f"+{notes}" if notes else "")

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    def reset_timings(self) -> None:
        """Zero the per-stage seconds (decode, detect, align, embed) and the image / face counts."""
        self.timings = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0, "images": 0, "faces": 0}

    def detect(self, images: Sequence[ImageInput]) -> list[list[Detection]]:
        """The detector's boxes of each image (batched), for :meth:`analyze` ``detections=`` — so several
        analyzers sharing one detector (``--faces paper,offline``: both MTCNN) detect once, embed each."""
        arrays = [_to_array(im) for im in images]
        out: list[list[Detection]] = []
        for start in range(0, len(arrays), self.batch_size):
            t0 = time.perf_counter()
            out.extend(self.detector.detect(arrays[start : start + self.batch_size]))
            self.timings["detect"] += time.perf_counter() - t0
        return out

    def analyze(self, images: Sequence[ImageInput], progress: bool = False, detections: Sequence[Sequence[Detection]] | None = None) -> list[list[Face]]:
        """Faces of each image, largest box first.

        Args:
            images: paths (decoded with :func:`stellar.images.load_image`), PIL images or HxWx3 uint8
                RGB arrays.
            progress: show a progress bar over batches.
            detections: the detector's output for ``images`` when already known (from :meth:`detect`
                of an analyzer with the same detector): detection is skipped, only alignment and
                embedding run.

        Returns:
            One list of :class:`Face` per image (``[]`` when no face is found).

        Raises:
            ImageDecodeError: a path cannot be decoded (the error names it).
        """
        images = list(images)
        results: list[list[Face]] = []
        starts = range(0, len(images), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="faces", unit="batch")
        for start in starts:
            chunk = images[start : start + self.batch_size]
            known = None if detections is None else detections[start : start + self.batch_size]
            results.extend(self._analyze_batch(chunk, known))
        return results

    def analyze_one(self, image: ImageInput) -> list[Face]:
        """Faces of a single image, largest first."""
        return self.analyze([image])[0]

    def _analyze_batch(self, chunk: Sequence[ImageInput], known: Sequence[Sequence[Detection]] | None = None) -> list[list[Face]]:
        t0 = time.perf_counter()
        arrays = [_to_array(im) for im in chunk]
        t1 = time.perf_counter()
        if known is not None and len(known) != len(arrays):
            raise StellarError(f"analyze() got {len(arrays)} images but {len(known)} detection lists")
        detections = self.detector.detect(arrays) if known is None else [list(d) for d in known]
        t2 = time.perf_counter()
        # Drop degenerate boxes (zero width / height): nothing to align or embed.
        detections = [[d for d in dets if d.area > 0] for dets in detections]
        if hasattr(self.embedder, "align") and hasattr(self.embedder, "embed_aligned"):
            crops = self.embedder.align(arrays, detections)
            t3 = time.perf_counter()
            embeddings = self.embedder.embed_aligned(crops)
        else:  # embedders without separate stages: alignment is counted in "embed"
            t3 = time.perf_counter()
            embeddings = self.embedder.embed(arrays, detections)
        t4 = time.perf_counter()
        for key, dt in (("decode", t1 - t0), ("detect", t2 - t1), ("align", t3 - t2), ("embed", t4 - t3)):
            self.timings[key] += dt
        self.timings["images"] += len(arrays)
        out = []
        for dets, embs in zip(detections, embeddings):
            embs = np.asarray(embs, dtype=np.float32)
            if embs.size == 0:
                embs = np.zeros((0, self.dim), dtype=np.float32)
            if embs.ndim != 2 or embs.shape[0] != len(dets):
                raise StellarError(
                    f"embedder {self.embedder_name!r} returned embeddings of shape {embs.shape} for {len(dets)} face(s)"
                )
            norms = np.linalg.norm(embs, axis=1, keepdims=True)
            embs = (embs / np.maximum(norms, 1e-12)).astype(np.float32)
            faces = [_face(d, e) for d, e in zip(dets, embs)]
            faces.sort(key=lambda f: f.area, reverse=True)
            self.timings["faces"] += len(faces)
            out.append(faces)
        return out

    def __repr__(self) -> str:
        return f"FaceAnalyzer(detector={self.detector_name!r}, embedder={self.embedder_name!r}, device={self.device!r}, preset={self.preset!r})"


def _face(d: Detection, embedding: np.ndarray) -> Face:
    box = np.asarray(d.box, dtype=np.float32)
    lm = None if d.landmarks5 is None else np.asarray(d.landmarks5, dtype=np.float32)
    return Face(box=box, score=float(d.score), landmarks5=lm, embedding=embedding, area=d.area)


def presets_from_names(names: Sequence[str], device: str | None = None, batch_size: int = 8) -> dict[str, "FaceAnalyzer"]:
    """``{preset: analyzer}`` for ``--faces paper,offline``: presets naming the same detector share ONE
    detector instance, which the engine's face scorer then runs once per image for all of them."""
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise StellarError("--faces: name at least one preset (paper, arcface, offline)")
    detectors: dict[str, Any] = {}
    out: dict[str, FaceAnalyzer] = {}
    for n in names:
        if n not in PRESETS:
            raise UnknownFaceModelError("preset", n, list(PRESETS))
        det = detectors.get(PRESETS[n].detector)
        out[n] = FaceAnalyzer.from_preset(n, device=device, batch_size=batch_size, detector=det)
        detectors.setdefault(PRESETS[n].detector, out[n].detector)
    return out


def list_presets() -> list[FacePreset]:
    """The named presets, in table order."""
    return list(PRESETS.values())
