"""Robust image decoding shared by every layer.

One function, :func:`load_image`, turns any image file a user may hand us into an 8-bit RGB
``PIL.Image`` with the orientation a viewer shows, or raises :class:`~stellar.errors.ImageDecodeError`
naming the file. Handled on purpose:

- EXIF orientation (phones write rotated pixels plus a tag) -> pixels transposed;
- greyscale, palette, 1-bit -> RGB; RGBA / LA / palette-with-transparency -> composited on white
  (a generated PNG with an alpha channel is meant to be seen on a background, and face detectors
  need three channels);
- 16-bit and 32-bit integer / float greyscale ("I;16", "I", "F") -> rescaled to 8 bits by the
  type's range (not clipped, which would saturate a 16-bit photo to white);
- CMYK / YCbCr / LAB -> RGB through PIL's converters;
- very large images (a 10k x 10k photo decodes; PIL's bomb *warning* is silenced locally, never
  globally; its hard limit, 2 x ``PIL.Image.MAX_IMAGE_PIXELS`` ≈ 179 MP, and ``max_pixels`` refuse
  larger ones with a clear error rather than exhausting memory);
- zero-byte, truncated, non-image files -> ``ImageDecodeError`` with the reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stellar.errors import ImageDecodeError

#: Extensions recognised as images, lower case, with the dot.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own hard limit with its default settings


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            scale = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        else:
            top = 65535.0 if mode.startswith("I;16") or arr.max() <= 65535 else float(arr.max())
            scale = arr.astype(np.float64) / top
        grey = np.clip(np.round(scale * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode ``path`` into an 8-bit RGB image, upright as EXIF says.

    Args:
        path: image file (PNG, JPEG, WebP, or anything PIL decodes).
        max_pixels: images with more pixels are refused (memory guard).
        draft_size: for JPEG, let libjpeg decode at a reduced scale no smaller than this size;
            the whole stream is still read, so truncation is still detected. Used by validation.

    Raises:
        ImageDecodeError: the file is empty, missing, truncated, not an image or too large.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise ImageDecodeError(path, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    raise ImageDecodeError(
                        path, f"{im.width}x{im.height} exceeds the limit of {max_pixels} pixels"
                    )
                if draft_size is not None and im.format == "JPEG":
                    im.draft("RGB", draft_size)
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(path, f"too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # PIL raises OSError("image file is truncated ...") and friends.
        raise ImageDecodeError(path, str(exc) or type(exc).__name__) from None


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
