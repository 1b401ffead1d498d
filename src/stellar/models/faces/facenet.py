"""FaceNet identity embeddings: Inception-ResNet-v1 (512-d) on 160×160 MTCNN crops.

Architecture: Inception-ResNet-v1 (C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017) with the FaceNet
embedding head (F. Schroff, D. Kalenichenko, J. Philbin, "FaceNet", CVPR 2015) as trained by
D. Sandberg's ``facenet`` (model ``20180402-114759``, VGGFace2) and converted to PyTorch by
facenet-pytorch: stem -> 5 × Block35 (scale 0.17) -> Mixed_6a -> 10 × Block17 (0.10) -> Mixed_7a
-> 5 × Block8 (0.20) -> Block8 (no ReLU) -> global average pool -> Linear(1792, 512, no bias) ->
BatchNorm1d -> L2 normalisation. BatchNorm uses TensorFlow's ``eps = 0.001``. The module is
always used in eval mode (running BN statistics; facenet's dropout before the linear layer is the
identity at inference and is omitted).

Weights: parameter names and shapes equal facenet-pytorch's ``InceptionResnetV1`` so the released
checkpoint ``20180402-114759-vggface2.pt`` (registry card ``facenet-vggface2``) loads unchanged.
That checkpoint also holds the VGGFace2 classifier ``logits.weight`` (8631×512) and ``logits.bias``;
they are not part of the embedding, so :func:`load_facenet_weights` drops them (and reports them in
its return value) and loads everything else with ``strict=True``. BatchNorm ``num_batches_tracked``
buffers missing from a checkpoint are filled with zeros (they do not affect eval-mode outputs).

Preprocessing (:func:`extract_faces`), exactly facenet-pytorch's ``extract_face`` with
``post_process=True``: for a box ``(x1, y1, x2, y2)`` and a margin ``m`` given in output pixels,
``mx = m * (x2 - x1) / (S - m)`` (likewise ``my``), crop the integer box
``int(max(x1 - mx/2, 0)), int(max(y1 - my/2, 0)), int(min(x2 + mx/2, W)), int(min(y2 + my/2, H))``
(``int`` truncates; float32 arithmetic like the reference), resize the crop to ``S×S`` (S = 160)
with PIL's bilinear filter (which antialiases when downscaling), and standardise
``(x - 127.5) / 128`` per channel value (``fixed_image_standardization``). Default margin 0, as
facenet-pytorch's ``MTCNN``. Deviation: a degenerate box whose integer crop is empty is widened
to one pixel (facenet-pytorch would fail there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from stellar.errors import StellarError
from stellar.models.faces._torch import load_exact, read_state_dict, resolve_device
from stellar.models.faces.base import Detection

CARD_NAME = "facenet-vggface2"
WEIGHTS_FILE = "20180402-114759-vggface2.pt"
EMBEDDING_DIM = 512
_WEIGHTS_FIX = (
    f"run `stellar models fetch {CARD_NAME}` (file {WEIGHTS_FILE}, facenet-pytorch release v2.2.9), "
    "or pass weights=PATH"
)
#: keys of the released checkpoint that the embedding does not use (the VGGFace2 classifier)
CLASSIFIER_KEYS = ("logits.weight", "logits.bias")


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as TensorFlow) -> ReLU; ``BasicConv2d`` in facenet."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.1, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _branch(*layers: nn.Module) -> nn.Module:
    # A one-layer branch is the layer itself (checkpoint key "branch0.conv.weight"), a longer one a
    # Sequential ("branch1.0.conv.weight"): this is the naming the released weights use.
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


class InceptionResidual(nn.Module):
    """Inception-ResNet block: parallel branches, concatenated, 1×1 conv back to the input width,
    scaled residual sum ``relu(x + scale * conv(concat(branches)))`` (ReLU optional)."""

    def __init__(self, branches: Sequence[nn.Module], concat_channels: int, channels: int, scale: float, relu: bool = True):
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i}", branch)
        self.n_branches = len(branches)
        self.conv2d = nn.Conv2d(concat_channels, channels, kernel_size=1, stride=1)
        self.scale = scale
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], dim=1)
        out = self.conv2d(out) * self.scale + x
        return F.relu(out) if self.relu else out


class InceptionReduction(nn.Module):
    """Grid-reduction block (Mixed_6a / Mixed_7a): parallel stride-2 branches, concatenated."""

    def __init__(self, branches: Sequence[nn.Module]):
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i}", branch)
        self.n_branches = len(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], dim=1)


def block35(scale: float = 0.17) -> InceptionResidual:
    """35×35 grid block (Inception-ResNet-A), 256 channels."""
    c = ConvBNReLU
    return InceptionResidual(
        [
            _branch(c(256, 32, 1)),
            _branch(c(256, 32, 1), c(32, 32, 3, padding=1)),
            _branch(c(256, 32, 1), c(32, 32, 3, padding=1), c(32, 32, 3, padding=1)),
        ],
        96,
        256,
        scale,
    )


def block17(scale: float = 0.10) -> InceptionResidual:
    """17×17 grid block (Inception-ResNet-B), 896 channels, factorised 1×7 / 7×1 convolutions."""
    c = ConvBNReLU
    return InceptionResidual(
        [
            _branch(c(896, 128, 1)),
            _branch(c(896, 128, 1), c(128, 128, (1, 7), padding=(0, 3)), c(128, 128, (7, 1), padding=(3, 0))),
        ],
        256,
        896,
        scale,
    )


def block8(scale: float = 0.20, relu: bool = True) -> InceptionResidual:
    """8×8 grid block (Inception-ResNet-C), 1792 channels, factorised 1×3 / 3×1 convolutions."""
    c = ConvBNReLU
    return InceptionResidual(
        [
            _branch(c(1792, 192, 1)),
            _branch(c(1792, 192, 1), c(192, 192, (1, 3), padding=(0, 1)), c(192, 192, (3, 1), padding=(1, 0))),
        ],
        384,
        1792,
        scale,
        relu=relu,
    )


class InceptionResnetV1(nn.Module):
    """Inception-ResNet-v1 FaceNet embedder: ``(N, 3, 160, 160)`` standardised crops -> ``(N, 512)``
    unit vectors. Parameter names match facenet-pytorch's ``InceptionResnetV1(classify=False)``."""

    def __init__(self) -> None:
        super().__init__()
        c = ConvBNReLU
        self.conv2d_1a = c(3, 32, 3, stride=2)
        self.conv2d_2a = c(32, 32, 3)
        self.conv2d_2b = c(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = c(64, 80, 1)
        self.conv2d_4a = c(80, 192, 3)
        self.conv2d_4b = c(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*[block35(0.17) for _ in range(5)])
        self.mixed_6a = InceptionReduction(
            [
                _branch(c(256, 384, 3, stride=2)),
                _branch(c(256, 192, 1), c(192, 192, 3, padding=1), c(192, 256, 3, stride=2)),
                nn.MaxPool2d(3, stride=2),
            ]
        )
        self.repeat_2 = nn.Sequential(*[block17(0.10) for _ in range(10)])
        self.mixed_7a = InceptionReduction(
            [
                _branch(c(896, 256, 1), c(256, 384, 3, stride=2)),
                _branch(c(896, 256, 1), c(256, 256, 3, stride=2)),
                _branch(c(896, 256, 1), c(256, 256, 3, padding=1), c(256, 256, 3, stride=2)),
                nn.MaxPool2d(3, stride=2),
            ]
        )
        self.repeat_3 = nn.Sequential(*[block8(0.20) for _ in range(5)])
        self.block8 = block8(1.0, relu=False)
        self.last_linear = nn.Linear(1792, EMBEDDING_DIM, bias=False)
        self.last_bn = nn.BatchNorm1d(EMBEDDING_DIM, eps=0.001, momentum=0.1, affine=True)
        self.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-normalisation 512-d features (``last_bn`` output)."""
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(x))))
        x = self.block8(self.repeat_3(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.last_bn(self.last_linear(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(x), p=2, dim=1)


def load_facenet_weights(model: InceptionResnetV1, state: Mapping[str, torch.Tensor], source: str | Path = "<state dict>") -> list[str]:
    """Load a facenet-pytorch ``InceptionResnetV1`` state dict (with or without ``logits.*``).

    Returns the checkpoint keys that were dropped (the classifier, see the module docstring).
    Any other difference in names or shapes is a :class:`~stellar.models.faces._torch.WeightsFileError`.
    """
    dropped = [k for k in state if k in CLASSIFIER_KEYS]
    cleaned = {k: v for k, v in state.items() if k not in CLASSIFIER_KEYS}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in cleaned:
            cleaned[key] = torch.zeros_like(value)
    load_exact(model, cleaned, source, "InceptionResnetV1 (FaceNet)", _WEIGHTS_FIX)
    return dropped


def crop_box(box: np.ndarray, width: int, height: int, image_size: int = 160, margin: float = 0) -> tuple[int, int, int, int]:
    """Integer crop rectangle ``(left, top, right, bottom)`` of facenet-pytorch's ``extract_face``."""
    b = np.asarray(box, dtype=np.float32)
    # float32 like the reference, whose boxes are float32 numpy arrays
    mx = np.float32(margin) * (b[2] - b[0]) / np.float32(image_size - margin)
    my = np.float32(margin) * (b[3] - b[1]) / np.float32(image_size - margin)
    left = int(max(b[0] - mx / 2, 0))
    top = int(max(b[1] - my / 2, 0))
    right = int(min(b[2] + mx / 2, width))
    bottom = int(min(b[3] + my / 2, height))
    # degenerate boxes: keep at least one pixel inside the image (documented deviation)
    left, top = min(left, width - 1), min(top, height - 1)
    return left, top, max(right, left + 1), max(bottom, top + 1)


def extract_faces(image: np.ndarray | Image.Image, boxes: Sequence[np.ndarray], image_size: int = 160, margin: float = 0) -> torch.Tensor:
    """Crop, resize and standardise faces: ``(n, 3, S, S)`` float32 in ``(x - 127.5) / 128`` units."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    width, height = pil.size
    out = torch.empty((len(boxes), 3, image_size, image_size), dtype=torch.float32)
    for i, box in enumerate(boxes):
        rect = crop_box(box, width, height, image_size, margin)
        face = pil.crop(rect).resize((image_size, image_size), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(face, dtype=np.float32).transpose(2, 0, 1).copy())
        out[i] = (pixels - 127.5) / 128.0
    return out


class FaceNetEmbedder:
    """FaceNet (InceptionResnetV1, VGGFace2) embedder (implements
    :class:`~stellar.models.faces.base.FaceEmbedder`, ``dim = 512``).

    Args:
        device: ``None``/``"auto"`` (cuda if available, else cpu), or a torch device.
        weights: ``None`` to resolve the ``facenet-vggface2`` card through the model registry, or a
            path to a facenet-pytorch ``InceptionResnetV1`` state dict.
        batch_size: face crops per forward pass.
        margin: crop margin in output pixels (facenet-pytorch's ``MTCNN(margin=...)``; default 0).
        image_size: crop size (160 for the released weights).
    """

    name = CARD_NAME
    dim = EMBEDDING_DIM

    def __init__(
        self,
        device: str | torch.device | None = None,
        weights: str | Path | None = None,
        batch_size: int = 32,
        margin: float = 0,
        image_size: int = 160,
    ) -> None:
        if batch_size < 1:
            raise StellarError(f"FaceNet batch_size must be >= 1, got {batch_size}")
        if not 0 <= margin < image_size:
            raise StellarError(f"FaceNet margin must be in [0, image_size), got {margin}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.margin = margin
        self.image_size = int(image_size)
        if weights is None:
            from stellar.models.registry import resolve_file  # lazy: the registry may fetch files

            weights = resolve_file(CARD_NAME, WEIGHTS_FILE)
        self.weights = str(weights)
        self.weight_files = (Path(weights),)  # what the analyzer's protocol identifies (sha256)
        state = read_state_dict(weights, "InceptionResnetV1 (FaceNet)", _WEIGHTS_FIX)
        self.model = InceptionResnetV1()
        self.dropped_keys = load_facenet_weights(self.model, state, weights)
        self.model.to(self.device).eval()
        #: the crop/standardisation protocol, for cache keys and result metadata
        self.protocol = f"facenet-pytorch extract_face margin={margin} size={image_size} bilinear, (x-127.5)/128"

    @torch.inference_mode()
    def embed_crops(self, crops: torch.Tensor) -> np.ndarray:
        """Embed standardised crops ``(n, 3, S, S)`` -> ``(n, 512)`` float32 unit vectors."""
        outs = [
            self.model(crops[i : i + self.batch_size].to(self.device)).float().cpu()
            for i in range(0, crops.shape[0], self.batch_size)
        ]
        if not outs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(outs).numpy().astype(np.float32, copy=False)

    def embed(self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]) -> list[np.ndarray]:
        """One ``(n_faces, 512)`` float32 L2-normalised array per image (``(0, 512)`` without faces)."""
        if len(images) != len(detections):
            raise StellarError(f"embed() got {len(images)} images but {len(detections)} detection lists")
        crops = [
            extract_faces(img, [d.box for d in dets], self.image_size, self.margin)
            for img, dets in zip(images, detections)
        ]
        counts = [c.shape[0] for c in crops]
        all_emb = self.embed_crops(torch.cat(crops) if crops else torch.zeros((0, 3, self.image_size, self.image_size)))
        out, start = [], 0
        for n in counts:
            out.append(all_emb[start : start + n])
            start += n
        return out
