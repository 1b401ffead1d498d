"""ArcFace: 5-point similarity alignment to the canonical 112×112 template + ONNX recognition.

Implements the recognition half of insightface's pipeline (Deng et al., *ArcFace: Additive Angular
Margin Loss for Deep Face Recognition*, CVPR 2019) from its specification, with numpy and
onnxruntime only (no OpenCV):

1. **Alignment.** The five landmarks of a detection (left eye, right eye, nose, left / right mouth
   corner, image-left first) are mapped onto :data:`ARCFACE_TEMPLATE_112` by the least-squares
   similarity transform (rotation + uniform scale + translation) of Umeyama (IEEE TPAMI 1991),
   the estimator insightface uses (through ``skimage.transform.SimilarityTransform``).
   The 112×112 crop is sampled bilinearly with OpenCV's ``warpAffine`` conventions (pixel centres
   at integer coordinates, constant black border) and rounded to uint8, as insightface's
   ``norm_crop`` produces it. OpenCV interpolates with 5-bit fixed-point weights, so a crop can
   differ from insightface's by one grey level.
2. **Recognition.** Crops are fed as NCHW float32 ``(x - 127.5) / 127.5`` in **RGB** order:
   insightface reads BGR images with OpenCV and converts them with ``blobFromImages(...,
   swapRB=True)``, so the networks see RGB. Models that normalise inside the graph (their first
   nodes are a ``Sub`` and a ``Mul``, the check insightface's ``ArcFaceONNX`` makes) get raw
   0..255 pixels instead (mean 0, std 1). Embeddings are L2-normalised.

Signatures of the released files (as insightface reads them; the tests use tiny torch-exported
stand-ins with the same signature):

- ``antelopev2/glintr100.onnx`` (ResNet-100, Glint360K) and ``buffalo_l/w600k_r50.onnx``
  (ResNet-50, WebFace600K): one input (``input.1``), float32 ``[N, 3, 112, 112]``; one output,
  float32 ``[N, 512]`` (un-normalised). When the batch dimension is fixed to 1 in a file, crops are
  run one at a time.

Choices: detections without landmarks are aligned by placing the template in their box
(``landmarks_from_box``), a coarse fallback that keeps such faces usable instead of dropping them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from stellar.errors import MissingDependencyError
from stellar.models.faces.base import Detection, regroup

#: insightface's ``arcface_dst``: canonical landmark positions in a 112×112 crop
#: (left eye, right eye, nose, left mouth corner, right mouth corner).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

ARCFACE_CROP_SIZE = 112

#: Embedder name -> (registry card, file) of the released insightface recognition models.
ARCFACE_MODELS = {
    "arcface": ("arcface-antelopev2", "glintr100.onnx"),
    "arcface-buffalo-l": ("arcface-buffalo-l", "w600k_r50.onnx"),
}


# ----------------------------------------------------------------------------------- alignment
def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991).

    Finds scale ``c``, rotation ``R`` (det +1) and translation ``t`` minimising
    ``sum_i ||dst_i - (c R src_i + t)||²``:
    with centred point sets and ``Σ = dst_cᵀ src_c / n = U S Vᵀ``, ``D = diag(1, sign(det Σ))``,
    ``R = U D Vᵀ``, ``c = tr(S D) / var(src)``, ``t = mean(dst) - c R mean(src)``.

    Args:
        src, dst: ``(n, 2)`` corresponding points, n >= 2.

    Returns:
        ``(2, 3)`` float64 matrix ``[c R | t]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_s, dst - mu_d
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0  # reflection would fit better; a similarity must not mirror a face
    rot = u @ np.diag(d) @ vt
    var_s = (src_c**2).sum() / n
    scale = float((s * d).sum() / var_s) if var_s > 0 else 1.0
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp ``image`` by the forward affine ``matrix`` (2×3, source -> output pixel coordinates).

    Bilinear sampling with pixel centres at integer coordinates and a black constant border —
    the conventions of ``cv2.warpAffine(..., flags=INTER_LINEAR, borderValue=0)``.

    Args:
        image: HxWxC uint8 (or HxW).
        matrix: forward transform.
        size: output ``(width, height)``.

    Returns:
        ``(height, width, C)`` uint8 (rounded).
    """
    width, height = size
    a = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    img = image if image.ndim == 3 else image[:, :, None]
    # One pixel of black border: neighbours outside the image read 0, as with BORDER_CONSTANT.
    padded = np.pad(img.astype(np.float32), ((1, 1), (1, 1), (0, 0)))
    h, w = img.shape[:2]
    x0 = np.floor(sx)
    y0 = np.floor(sy)
    fx = (sx - x0)[..., None].astype(np.float32)
    fy = (sy - y0)[..., None].astype(np.float32)
    x0i = np.clip(x0.astype(np.int64) + 1, 0, w + 1)
    y0i = np.clip(y0.astype(np.int64) + 1, 0, h + 1)
    x1i = np.clip(x0.astype(np.int64) + 2, 0, w + 1)
    y1i = np.clip(y0.astype(np.int64) + 2, 0, h + 1)
    top = padded[y0i, x0i] * (1 - fx) + padded[y0i, x1i] * fx
    bottom = padded[y1i, x0i] * (1 - fx) + padded[y1i, x1i] * fx
    out = top * (1 - fy) + bottom * fy
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out if image.ndim == 3 else out[:, :, 0]


def alignment_matrix(landmarks5: np.ndarray, crop_size: int = ARCFACE_CROP_SIZE) -> np.ndarray:
    """Similarity (2×3) taking the 5 landmarks onto the ArcFace template scaled to ``crop_size``.

    Like insightface's ``estimate_norm``: crop sizes divisible by 128 use the template scaled by
    ``crop_size / 128`` and shifted by ``8 · ratio`` in x; otherwise by ``crop_size / 112``.
    """
    if crop_size % 112 == 0:
        ratio, shift = crop_size / 112.0, 0.0
    elif crop_size % 128 == 0:
        ratio = crop_size / 128.0
        shift = 8.0 * ratio
    else:
        raise ValueError(f"crop_size must be a multiple of 112 or 128, got {crop_size}")
    dst = ARCFACE_TEMPLATE_112 * ratio
    dst[:, 0] += shift
    return umeyama_similarity(np.asarray(landmarks5, dtype=np.float64), dst)


def landmarks_from_box(box: np.ndarray) -> np.ndarray:
    """Coarse landmarks for a detection that has none: the template placed in the box's square."""
    x1, y1, x2, y2 = [float(v) for v in box[:4]]
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    pts = (ARCFACE_TEMPLATE_112 / ARCFACE_CROP_SIZE - 0.5) * side
    return (pts + [cx, cy]).astype(np.float32)


def align_face(image: np.ndarray, landmarks5: np.ndarray, crop_size: int = ARCFACE_CROP_SIZE) -> np.ndarray:
    """The ``crop_size``² uint8 ArcFace crop of the face with these landmarks."""
    return warp_affine(image, alignment_matrix(landmarks5, crop_size), (crop_size, crop_size))


# ----------------------------------------------------------------------------------- onnx helpers
def onnx_providers(device: str | None) -> list[str]:
    """onnxruntime execution providers for ``device`` (None/"auto": CUDA when available, else CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "The insightface ONNX models (scrfd, arcface)") from None
    available = ort.get_available_providers()
    dev = (device or "auto").lower()
    if dev in ("auto", "cuda") or dev.startswith("cuda:"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_session(path: Path, device: str | None):
    """An ``onnxruntime.InferenceSession`` for ``path`` on ``device``."""
    import onnxruntime as ort

    from stellar.errors import StellarError

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the released files trigger harmless shape warnings
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=onnx_providers(device))
    except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
        raise StellarError(
            f"{path}: cannot load ONNX model: {exc}\n  fix: re-fetch the file (stellar models fetch) or check the path"
        ) from None


def normalises_inside(path: Path) -> bool:
    """True when the graph starts with its own Sub + Mul (then it takes raw 0..255 pixels).

    The check insightface's ``ArcFaceONNX`` makes on the first 8 nodes; needs the ``onnx`` package
    (when it is missing, the standard ``(x-127.5)/127.5`` is assumed, right for the released files).
    """
    try:
        import onnx
    except ImportError:
        return False
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = [(node.op_type, node.name) for node in graph.node[:8]]
    has_sub = any(op == "Sub" or name.startswith(("Sub", "_minus")) for op, name in ops)
    has_mul = any(op == "Mul" or name.startswith(("Mul", "_mul")) for op, name in ops)
    return has_sub and has_mul


def resolve_weights(card: str, filename: str, path: str | Path | None) -> Path:
    """``path`` when given (must exist), else the registry's cached file for ``card``/``filename``."""
    from stellar.errors import StellarError

    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise StellarError(f"{p}: weights file not found\n  fix: pass an existing file for {card}/{filename}")
        return p
    from stellar.models.registry import resolve_file

    return Path(resolve_file(card, filename))


# ----------------------------------------------------------------------------------- embedder
class ArcFaceEmbedder:
    """insightface recognition model (ONNX) on 5-point aligned 112×112 crops.

    Args:
        name: ``"arcface"`` (antelopev2 glintr100) or ``"arcface-buffalo-l"`` (buffalo_l w600k_r50).
        model_path: explicit ``.onnx`` file; default: the registry card of ``name``.
        device: None/"auto" (CUDA provider when available, else CPU), "cpu" or "cuda".
        batch_size: crops per onnxruntime call.
    """

    def __init__(
        self,
        name: str = "arcface",
        model_path: str | Path | None = None,
        device: str | None = None,
        batch_size: int = 32,
    ):
        if name not in ARCFACE_MODELS and model_path is None:
            raise ValueError(f"unknown ArcFace model {name!r}; valid: {', '.join(ARCFACE_MODELS)}")
        card, filename = ARCFACE_MODELS.get(name, ("local", Path(str(model_path)).name))
        self.name = name
        self.path = resolve_weights(card, filename, model_path)
        self.weight_files = (Path(self.path),)  # what the analyzer's protocol identifies (sha256)
        self.session = onnx_session(self.path, device)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        out_dim = self.session.get_outputs()[0].shape[-1]
        self.dim = int(out_dim) if isinstance(out_dim, int) else 512
        self.batch_size = max(1, int(batch_size))
        inside = normalises_inside(self.path)
        self.input_mean, self.input_std = (0.0, 1.0) if inside else (127.5, 127.5)
        self.protocol = (
            f"{name}[{self.path.name}]:align5-umeyama-112(arcface_dst),rgb,"
            f"(x-{self.input_mean:g})/{self.input_std:g},l2"
        )

    # -- stages (separately timed by the analyzer)
    def align(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[list[np.ndarray]]:
        """Per image, the 112×112 uint8 crop of each detection."""
        crops = []
        for img, dets in zip(images, detections):
            row = []
            for d in dets:
                lm = d.landmarks5 if d.landmarks5 is not None else landmarks_from_box(d.box)
                row.append(align_face(img, lm))
            crops.append(row)
        return crops

    def embed_aligned(self, crops: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
        """Per image, ``(n, dim)`` float32 L2-normalised embeddings of its aligned crops."""
        return regroup(self.embed_crops([c for row in crops for c in row]), crops)

    def embed(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[np.ndarray]:
        return self.embed_aligned(self.align(images, detections))

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, dim)`` L2-normalised embeddings of 112×112 RGB uint8 crops."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        step = 1 if self.fixed_batch == 1 else self.batch_size
        outs = []
        for start in range(0, len(crops), step):
            batch = np.stack(crops[start : start + step]).astype(np.float32)
            blob = ((batch - self.input_mean) / self.input_std).transpose(0, 3, 1, 2)
            outs.append(self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[0])
        vecs = np.concatenate(outs, 0).astype(np.float32).reshape(len(crops), -1)
        return l2_normalise(vecs)


def l2_normalise(vecs: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (rows of zeros stay zero)."""
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=-1, keepdims=True)
    return (vecs / np.maximum(norms, 1e-12)).astype(np.float32)
