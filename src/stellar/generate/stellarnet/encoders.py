"""Masked subject encoding: photo + subject mask -> CLIP vision CLS features of several layers.

Preprocessing (ours, documented): the mask is applied at the photo's own resolution, setting every
pixel outside the subject to CLIP's mean colour — i.e. exactly 0 after CLIP normalisation, so the
background carries no signal — then the square centre crop is resized (bicubic, antialiased) to
the encoder's input size and normalised with CLIP's mean/std. Masking *before* resizing makes the
features exactly independent of the background pixels (a resize after masking only mixes subject
pixels with the constant fill). OpenAI CLIP resizes the shortest side then centre-crops; for the
square Stellar photos this is the same.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

#: OpenAI CLIP normalisation (also used by OpenCLIP ViT-bigG).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _center_square(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return arr[top : top + s, left : left + s]


def masked_pixels(image: Image.Image, mask: np.ndarray | None, size: int) -> torch.Tensor:
    """One photo -> normalised CLIP input (3, size, size) with the background set to the mean colour.

    Args:
        image: RGB photo.
        mask: bool (H, W) subject mask at any resolution (resized nearest to the photo), or None = all subject.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != rgb.shape[:2]:
            m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(image.size, Image.NEAREST)) > 0
        rgb = np.where(m[..., None], rgb, np.asarray(CLIP_MEAN, dtype=np.float32))
    rgb = _center_square(rgb)
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (t - mean) / std


class SubjectFeatureExtractor:
    """CLS tokens of chosen hidden layers of a ``transformers`` CLIP vision model.

    Args:
        encoder: a ``CLIPVisionModel`` (or ``CLIPVisionModelWithProjection``).
        layers: hidden-state indices (0 = embeddings, i = output of layer i).
    """

    def __init__(self, encoder, layers: Sequence[int]):
        self.encoder = encoder
        n = encoder.config.num_hidden_layers
        bad = [i for i in layers if not 0 <= int(i) <= n]
        if bad:
            raise ValueError(f"vision layers {bad} out of range: the encoder has hidden states 0..{n}")
        self.layers = tuple(int(i) for i in layers)

    @property
    def image_size(self) -> int:
        return int(self.encoder.config.image_size)

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def preprocess(self, images: Sequence[Image.Image], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        """Masked, normalised batch (B, 3, S, S) on the CPU in float32."""
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        return torch.stack([masked_pixels(im, m, self.image_size) for im, m in zip(images, masks)])

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, L, d) CLS tokens of the chosen layers."""
        param = next(self.encoder.parameters())
        out = self.encoder(pixel_values=pixels.to(param.device, param.dtype), output_hidden_states=True)
        return torch.stack([out.hidden_states[i][:, 0] for i in self.layers], dim=1)

    def __call__(self, images: Sequence[Image.Image], masks: Sequence[np.ndarray | None]) -> torch.Tensor:
        return self.features(self.preprocess(images, masks))
