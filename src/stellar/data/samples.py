"""The real-photo demo dataset: six public-domain / permissively licensed people in the Stellar layout.

:func:`materialize_demo_dataset` writes a small official-layout dataset (DESIGN §5) from face photos
that ship inside Python packages (DESIGN §8), so that the demo (``stellar demo``) and the tests of
the face models and metrics run on real faces without any model hub or image download:

======= ================== ======================================================== ========================
subject person             source                                                   licence
======= ================== ======================================================== ========================
000     Eileen Collins     ``skimage.data.astronaut()``                             NASA, public domain
001     Grace Hopper       ``matplotlib.cbook.get_sample_data('grace_hopper.jpg')`` US Navy, public domain
002     Lav Varshney       ``skimage.data.camera()`` (grey, profile)                CC0 (the photographer)
003     Luis Pedro Coelho  ``mahotas.demos.load('luispedro')``                      shipped with mahotas (MIT) by its author, pictured
004     Barack Obama (×3)  ``face_recognition==1.3.0`` sdist ``tests/test_images/`` US government work, public domain
005     Joe Biden          ``face_recognition==1.3.0`` sdist ``tests/test_images/`` US government work, public domain
======= ================== ======================================================== ========================

Six identities, eight photos; only Barack Obama has more than one photo (0, 1, 2), so only subject
004 exercises SIS across photos. The face_recognition sdist is fetched once with pip's download
(:func:`fetch_face_recognition_sdist`) into ``$STELLAR_HOME/downloads`` (default
``~/.cache/stellar/downloads``), its sha256 is verified against :data:`FACE_RECOGNITION_SDIST_SHA256`
and only the four photos are read from it (in memory; nothing else is unpacked).

Choices (deviations from the official data, written down):

- **Photos.** The JPEG sources are copied byte for byte when they are used whole (Hopper, Coelho,
  Obama 0 and 1). The skimage arrays are encoded as JPEG (quality 95, camera kept grey). Obama 2
  and Biden are full-length portraits with small faces; like CelebAMask-HQ's head-and-shoulders
  crops, we use a 900×900 crop around the head (:attr:`DemoPhoto.crop`, source pixels). Photos are
  not resized to 1024² (the official size): methods and metrics must handle any size.
- **Masks** (``I_bg.png``, palette, subject = 1): a hand-placed ellipse around the head (hair, ears,
  chin; Hopper's cap included), not a segmentation. Coordinates are in source pixels in
  :data:`DEMO_PHOTOS` and were placed by looking at the photos.
- **Attributes.** The eight APS attributes (DESIGN §6.3) were labelled by hand, as CelebA's
  annotators would (±1), from the photos; the reason for each row is in :data:`DEMO_PHOTOS`. Such
  labels are subjective; they exist so that every APS attribute has both classes here, not as
  ground truth about the people. The other 32 CelebA attributes are not labelled (absent).
- **Prompts.** Every subject gets the same twelve Stellar-T-style prompts (:data:`DEMO_T_PROMPTS`,
  with ``detectables``, ``categories`` and our optional ``triplets`` and ``ids``) and three
  Stellar-H-style prompts (:data:`DEMO_H_PROMPTS`), all written for this demo.
- **Splits.** All subjects are numeric 000–005, hence *test* under the official rule.
- **Without the face_recognition photos** (``include_face_recognition=False``, only when asked)
  subjects 004 and 005 are not written: four identities, four photos, none with a second photo.

Writing is idempotent: each file is built in memory and written (atomically: temp file + rename)
only when its bytes differ from what is on disk, so a rerun writes nothing.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageOps

from stellar.data import layout
from stellar.errors import DatasetError, StellarError
from stellar.fileio import json_bytes, write_if_changed
from stellar.settings import is_offline, stellar_home

# ---------------------------------------------------------------------------------------------
# The face_recognition sdist (Obama ×3, Biden)

FACE_RECOGNITION_REQUIREMENT = "face_recognition==1.3.0"
FACE_RECOGNITION_SDIST = "face_recognition-1.3.0.tar.gz"
#: sha256 of ``face_recognition-1.3.0.tar.gz`` as published on PyPI (computed when this was written).
FACE_RECOGNITION_SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
_SDIST_IMAGES = "face_recognition-1.3.0/tests/test_images/"


class DownloadError(StellarError):
    """A file the demo dataset needs cannot be fetched or read."""


class DownloadHashError(DownloadError):
    """A fetched or cached file's sha256 differs from the pinned one."""


def default_download_dir() -> Path:
    return stellar_home() / "downloads"


def fetch_command(cache_dir: str | Path | None = None) -> str:
    """The shell command that puts the face_recognition sdist into ``cache_dir``."""
    target = Path(cache_dir) if cache_dir is not None else default_download_dir()
    return f"pip download --no-deps --no-binary :all: {FACE_RECOGNITION_REQUIREMENT} -d {target}"


def _verify_sdist(path: Path) -> None:
    actual = layout.sha256_file(path)
    if actual != FACE_RECOGNITION_SDIST_SHA256:
        raise DownloadHashError(
            f"{path}: sha256 mismatch: expected {FACE_RECOGNITION_SDIST_SHA256}, got {actual}\n"
            f"  fix: delete the file and fetch it again: {fetch_command(path.parent)}"
        )


def fetch_face_recognition_sdist(cache_dir: str | Path | None = None, *, offline: bool | None = None) -> Path:
    """Path of the verified ``face_recognition-1.3.0.tar.gz`` in ``cache_dir``, fetched with pip if absent.

    Args:
        cache_dir: download cache (default ``$STELLAR_HOME/downloads``).
        offline: never touch the network; default: ``STELLAR_OFFLINE`` / ``HF_HUB_OFFLINE`` set (as for models).

    Raises:
        DownloadHashError: the cached or fetched file's sha256 differs from the pinned one (both
            are named).
        DownloadError: the file is absent and cannot be fetched (offline, pip or the network unavailable) — the
            message gives the exact command that fetches it.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_download_dir()
    path = cache / FACE_RECOGNITION_SDIST
    if path.is_file():
        _verify_sdist(path)
        return path
    if offline is None:
        offline = is_offline()
    hint = (
        f"  fix: run `{fetch_command(cache)}` once with network access, or build the dataset without "
        "the Obama/Biden photos (include_face_recognition=False; `stellar demo --skip-face-recognition`)"
    )
    if offline:
        raise DownloadError(f"{path}: not cached and offline mode is on (STELLAR_OFFLINE / HF_HUB_OFFLINE)\n{hint}")
    cache.mkdir(parents=True, exist_ok=True)
    # pip writes into a private temp folder inside the cache, so a concurrent or interrupted fetch
    # never leaves a partial file under the final name.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".pip-download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "--no-input", "--quiet", FACE_RECOGNITION_REQUIREMENT, "-d", tmp,
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DownloadError(f"{path}: cannot run pip download ({exc})\n{hint}") from None
        fetched = Path(tmp) / FACE_RECOGNITION_SDIST
        if done.returncode != 0 or not fetched.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise DownloadError(f"{path}: pip download failed: {' | '.join(tail) or 'no output'}\n{hint}")
        _verify_sdist(fetched)
        os.replace(fetched, path)
    return path


def _read_sdist_members(sdist: Path, names: list[str]) -> dict[str, bytes]:
    """Bytes of the named ``tests/test_images/`` members, read in memory (no extraction on disk)."""
    wanted = {_SDIST_IMAGES + n: n for n in names}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        out[wanted[member.name]] = f.read()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise DownloadError(f"{sdist}: cannot read the archive ({exc})\n  fix: delete it and run `{fetch_command(sdist.parent)}`") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise DownloadError(f"{sdist}: members missing: {', '.join(missing)}\n  fix: delete it and run `{fetch_command(sdist.parent)}`")
    return out


# ---------------------------------------------------------------------------------------------
# The tables: identities, photos (head ellipse, crop, hand-labelled APS attributes), prompts


@dataclass(frozen=True)
class DemoIdentity:
    """One person of the demo dataset."""

    subject: str
    person: str
    licence: str
    source: str  # where the photos come from (package + function / archive member)
    credit: str  # who took the photo / where it was published


@dataclass(frozen=True)
class DemoPhoto:
    """One photo: where it comes from, how it is framed, its head ellipse and its APS labels.

    ``head`` = (cx, cy, rx, ry) of the head ellipse and ``crop`` = (left, top, right, bottom), both in
    the source image's pixels. ``faces`` counts complete faces; ``partial_faces`` faces cut by the
    border or far out of focus (a detector may or may not find them).
    """

    subject: str
    index: int
    origin: str  # "skimage:astronaut", "matplotlib:grace_hopper.jpg", "mahotas:luispedro.jpg", "face_recognition:obama.jpg"
    head: tuple[int, int, int, int]
    attributes: Mapping[str, int]
    reason: str
    crop: tuple[int, int, int, int] | None = None
    faces: int = 1
    partial_faces: int = 0
    grey: bool = False

    @property
    def original_filename(self) -> str:
        kind, name = self.origin.split(":", 1)
        if kind == "skimage":
            return f"skimage.data.{name}()"
        if kind == "matplotlib":
            return f"matplotlib.cbook.get_sample_data('{name}')"
        if kind == "mahotas":
            return f"mahotas.demos.load('{Path(name).stem}')"
        return f"{FACE_RECOGNITION_SDIST}:{_SDIST_IMAGES}{name}"

    @property
    def needs_face_recognition(self) -> bool:
        return self.origin.startswith("face_recognition:")


_PD_FR = "face_recognition==1.3.0 sdist, tests/test_images/"
DEMO_IDENTITIES: tuple[DemoIdentity, ...] = (
    DemoIdentity("000", "Eileen Collins", "public domain (NASA)", "skimage.data.astronaut()", "NASA Great Images database"),
    DemoIdentity("001", "Grace Hopper", "public domain (US Navy)", "matplotlib sample data grace_hopper.jpg", "US Navy official portrait"),
    DemoIdentity("002", "Lav Varshney", "CC0", "skimage.data.camera()", "photographed by Lav Varshney, CC0 (scikit-image)"),
    DemoIdentity("003", "Luis Pedro Coelho", "MIT (mahotas)", "mahotas.demos.load('luispedro')", "the mahotas author's own photo, shipped with mahotas"),
    DemoIdentity("004", "Barack Obama", "public domain (US government work)", _PD_FR + "obama.jpg, obama2.jpg, obama3.jpg", "official White House photographs"),
    DemoIdentity("005", "Joe Biden", "public domain (US government work)", _PD_FR + "biden.jpg", "official White House photograph"),
)  # fmt: skip


def _labels(young: int, male: int, cheek: int, pointy: int, narrow: int, chin: int, lips: int, nose: int) -> dict[str, int]:
    return dict(zip(layout.APS_ATTRIBUTES, (young, male, cheek, pointy, narrow, chin, lips, nose)))


#: Photos in subject/index order. Labels: Young, Male, High_Cheekbones, Pointy_Nose, Narrow_Eyes,
#: Double_Chin, Big_Lips, Big_Nose (CelebA ±1), hand-labelled from the photos.
DEMO_PHOTOS: tuple[DemoPhoto, ...] = (
    #                                               Yng Mal Chk Pnt Nar Chn Lip Nos
    DemoPhoto("000", 0, "skimage:astronaut", (222, 88, 72, 80), _labels(+1, -1, +1, +1, +1, -1, -1, -1),
              "woman around 40; broad smile lifts the cheeks and narrows the eyes; slim, pointed nose; thin lips"),
    DemoPhoto("001", 0, "matplotlib:grace_hopper.jpg", (262, 185, 112, 155), _labels(-1, -1, -1, -1, -1, +1, -1, +1),
              "elderly woman; closed-mouth neutral face; loose skin under the chin; broad, rounded nose; thin lips"),
    DemoPhoto("002", 0, "skimage:camera", (210, 130, 48, 68), _labels(+1, +1, -1, +1, +1, -1, -1, -1),
              "young man in profile, squinting into the viewfinder; straight, pointed nose; no smile", grey=True),
    DemoPhoto("003", 0, "mahotas:luispedro.jpg", (152, 175, 122, 170), _labels(+1, +1, -1, +1, -1, -1, -1, +1),
              "man around 30, neutral face; long, prominent nose with a pointed tip; open eyes; medium lips"),
    DemoPhoto("004", 0, "face_recognition:obama.jpg", (495, 225, 150, 200), _labels(-1, +1, +1, -1, +1, -1, +1, +1),
              "greying middle-aged man; broad smile raises the cheekbones and narrows the eyes; broad nose; full lips"),
    DemoPhoto("004", 1, "face_recognition:obama2.jpg", (365, 370, 175, 210), _labels(-1, +1, -1, -1, -1, -1, +1, +1),
              "middle-aged man speaking, no smile; eyes wide open; broad nose; full lips", partial_faces=1),
    DemoPhoto("004", 2, "face_recognition:obama3.jpg", (750, 425, 175, 210), _labels(-1, +1, -1, -1, -1, -1, +1, +1),
              "middle-aged man, closed-mouth half smile; relaxed open eyes; broad nose; full lips", crop=(300, 0, 1200, 900)),
    DemoPhoto("005", 0, "face_recognition:biden.jpg", (550, 330, 170, 245), _labels(-1, +1, -1, +1, +1, -1, -1, +1),
              "white-haired older man, lips pressed together; squinting eyes; long nose with a pointed tip; thin lips", crop=(70, 0, 970, 900)),
)  # fmt: skip

#: Stellar-T-style prompts: (template, detectables, categories, triplets). Written for this demo.
DEMO_T_PROMPTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[tuple[str, str, str], ...]], ...] = (
    ("{} riding a horse in the jungle", ("horse", "jungle"), ("animal", "location"),
     (("person", "riding", "horse"), ("person", "in", "jungle"))),
    ("{} as an astronaut on the moon", ("astronaut", "moon"), ("profession", "location"),
     (("person", "on", "moon"),)),
    ("{} holding a cup of coffee next to a laptop", ("cup", "laptop"), ("object", "object"),
     (("person", "holding", "cup"), ("person", "next to", "laptop"))),
    ("{} playing a guitar on a stage", ("guitar", "stage"), ("instrument", "location"),
     (("person", "playing", "guitar"), ("person", "on", "stage"))),
    ("{} walking a dog in a park", ("dog", "park"), ("animal", "location"),
     (("person", "walking", "dog"), ("person", "in", "park"))),
    ("{} reading a book under a tree", ("book", "tree"), ("object", "nature"),
     (("person", "reading", "book"), ("person", "under", "tree"))),
    ("{} sitting on a bench with a cat", ("bench", "cat"), ("furniture", "animal"),
     (("person", "sitting on", "bench"), ("person", "with", "cat"))),
    ("{} riding a bicycle along the beach", ("bicycle", "beach"), ("vehicle", "location"),
     (("person", "riding", "bicycle"), ("person", "along", "beach"))),
    ("{} cooking pasta in a kitchen", ("pasta", "kitchen"), ("food", "location"),
     (("person", "cooking", "pasta"), ("person", "in", "kitchen"))),
    ("{} wearing a cowboy hat and holding a lasso", ("cowboy hat", "lasso"), ("clothing", "object"),
     (("person", "wearing", "cowboy hat"), ("person", "holding", "lasso"))),
    ("{} painting a canvas with a brush", ("canvas", "brush"), ("art", "object"),
     (("person", "painting", "canvas"), ("person", "with", "brush"))),
    ("{} as a firefighter standing in front of a fire truck", ("firefighter", "fire truck"), ("profession", "vehicle"),
     (("person", "in front of", "fire truck"),)),
)  # fmt: skip

#: Stellar-H-style (free-form, human-written) prompts. Written for this demo.
DEMO_H_PROMPTS: tuple[str, ...] = (
    "a candid photo of {} laughing with friends at a birthday party",
    "{} standing on a mountain summit at sunrise, wind in their hair",
    "an oil painting of {} in the style of the Dutch masters",
)

#: Longest photo side kept; the largest source used whole is 1200 px (obama2.jpg).
MAX_SIDE = 1200
JPEG_QUALITY = 95


def demo_identities(*, include_face_recognition: bool = True) -> dict[str, DemoIdentity]:
    """subject id -> :class:`DemoIdentity` (person, licence, source) of the demo dataset."""
    photos = demo_photos(include_face_recognition=include_face_recognition)
    subjects = {p.subject for p in photos}
    return {i.subject: i for i in DEMO_IDENTITIES if i.subject in subjects}


def demo_photos(*, include_face_recognition: bool = True) -> tuple[DemoPhoto, ...]:
    """The :class:`DemoPhoto` rows written (all eight, or the four package photos)."""
    return tuple(p for p in DEMO_PHOTOS if include_face_recognition or not p.needs_face_recognition)


# ---------------------------------------------------------------------------------------------
# Building the files


def _source_image(photo: DemoPhoto, sdist_members: Mapping[str, bytes]) -> tuple[bytes | None, Image.Image]:
    """(JPEG bytes when the source is a JPEG file, else None; the decoded image)."""
    kind, name = photo.origin.split(":", 1)
    if kind == "skimage":
        try:
            import skimage.data
        except ImportError:
            raise _missing("scikit-image") from None
        return None, Image.fromarray(getattr(skimage.data, name)())
    if kind == "matplotlib":
        try:
            from matplotlib import cbook
        except ImportError:
            raise _missing("matplotlib") from None
        data = Path(cbook.get_sample_data(name, asfileobj=False)).read_bytes()
    elif kind == "mahotas":
        try:
            import mahotas.demos
        except ImportError:
            raise _missing("mahotas") from None
        # mahotas.demos.load('luispedro') decodes this very file; we take its bytes.
        data = Path(mahotas.demos.image_path(name)).read_bytes()
    else:
        data = sdist_members[name]
    im = Image.open(io.BytesIO(data))
    im.load()
    return data, im


def _missing(package: str) -> StellarError:
    from stellar.errors import MissingDependencyError

    return MissingDependencyError(package, "fixtures", "The demo dataset")


def _photo_bytes(photo: DemoPhoto, sdist_members: Mapping[str, bytes]) -> tuple[bytes, tuple[float, float, float], tuple[int, int]]:
    """(JPEG bytes of the photo, (offset x, offset y, scale) mapping source -> photo pixels, photo size)."""
    raw, im = _source_image(photo, sdist_members)
    exif_rotated = raw is not None and im.getexif().get(0x0112, 1) not in (1, None)
    x0, y0 = (photo.crop[0], photo.crop[1]) if photo.crop else (0, 0)
    if raw is not None and photo.crop is None and max(im.size) <= MAX_SIDE and not exif_rotated:
        return raw, (0.0, 0.0, 1.0), im.size  # used whole: the original bytes
    im = ImageOps.exif_transpose(im)
    im = im.convert("L" if photo.grey else "RGB")
    if photo.crop:
        im = im.crop(photo.crop)
    scale = min(1.0, MAX_SIDE / max(im.size))
    if scale < 1.0:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), (float(x0), float(y0), scale), im.size


def head_mask(photo: DemoPhoto, size: tuple[int, int], transform: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Bool (H, W) mask of the head ellipse of ``photo`` in a photo of ``size`` = (W, H).

    ``transform`` = (x0, y0, s) maps source pixels to photo pixels: p = (q - (x0, y0)) · s.
    """
    x0, y0, s = transform
    cx, cy, rx, ry = photo.head
    cx, cy, rx, ry = (cx - x0) * s, (cy - y0) * s, rx * s, ry * s
    yy, xx = np.mgrid[: size[1], : size[0]]
    return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0


def _mask_png(mask: np.ndarray) -> bytes:
    im = Image.fromarray(mask.astype(np.uint8), "P")
    im.putpalette([0, 0, 0, 255, 255, 255])
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _prompt_files() -> tuple[dict, dict]:
    t = {
        "prompts": [p for p, _, _, _ in DEMO_T_PROMPTS],
        "detectables": [list(d) for _, d, _, _ in DEMO_T_PROMPTS],
        "categories": [list(c) for _, _, c, _ in DEMO_T_PROMPTS],
        "triplets": [[list(t) for t in ts] for _, _, _, ts in DEMO_T_PROMPTS],
        "ids": [f"demo-t{i:02d}" for i in range(len(DEMO_T_PROMPTS))],
    }
    h = {"prompts": list(DEMO_H_PROMPTS), "ids": [f"demo-h{i:02d}" for i in range(len(DEMO_H_PROMPTS))]}
    return t, h


def materialize_demo_dataset(
    root: str | Path,
    *,
    cache_dir: str | Path | None = None,
    include_face_recognition: bool = True,
    progress: bool = True,
    offline: bool | None = None,
) -> Path:
    """Write the real-photo demo dataset (official Stellar layout) under ``root``; return ``root``.

    Args:
        root: dataset folder to create or update (subjects ``000``–``005``).
        cache_dir: where the face_recognition sdist is cached (default ``$STELLAR_HOME/downloads``).
        include_face_recognition: include Barack Obama (×3) and Joe Biden from the face_recognition
            sdist. ``False`` builds the four package-only subjects; it is never done implicitly.
        progress: show a progress bar.
        offline: never fetch the sdist (default: ``STELLAR_OFFLINE`` / ``HF_HUB_OFFLINE`` set); it
            must then be cached.

    Idempotent: a second call writes nothing. The result loads with ``StellarDataset(root)`` and
    ``check()`` reports no error (four single-photo subjects are warnings: SIS = IPS for them).

    Raises:
        DownloadError: the sdist is needed but cannot be fetched or fails its sha256 check.
        MissingDependencyError: scikit-image / matplotlib / mahotas missing (``stellar-bench[fixtures]``).
    """
    from tqdm.auto import tqdm

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetError("exists and is not a folder", root, "pass a folder path for the demo dataset")
    photos = demo_photos(include_face_recognition=include_face_recognition)
    members: dict[str, bytes] = {}
    if include_face_recognition:
        sdist = fetch_face_recognition_sdist(cache_dir, offline=offline)
        members = _read_sdist_members(sdist, [p.origin.split(":", 1)[1] for p in photos if p.needs_face_recognition])
    identities = demo_identities(include_face_recognition=include_face_recognition)
    prompts_t, prompts_h = _prompt_files()
    for photo in tqdm(photos, desc="demo dataset", unit="photo", disable=not progress):
        folder = root / photo.subject
        data, transform, size = _photo_bytes(photo, members)
        mask = head_mask(photo, size, transform)
        identity = identities[photo.subject]
        write_if_changed(folder / f"{photo.index}.jpg", data)
        write_if_changed(folder / layout.mask_name(photo.index), _mask_png(mask))
        record = {
            "attributes": dict(photo.attributes),
            "finegrained_attributes": {},
            "identity": identity.person,
            "original_filename": photo.original_filename,
            "licence": identity.licence,
            "labelling_note": photo.reason,
        }
        write_if_changed(folder / layout.attributes_name(photo.index), json_bytes(record))
    for sid in identities:
        write_if_changed(root / sid / layout.PROMPTS_T_FILE, json_bytes(prompts_t))
        write_if_changed(root / sid / layout.PROMPTS_H_FILE, json_bytes(prompts_h))
    objects = sorted({d for _, ds, _, _ in DEMO_T_PROMPTS for d in ds})
    write_if_changed(root / layout.OBJECTS_FILE, ("\n".join(objects) + "\n").encode("utf-8"))
    credits = [
        {"subject": i.subject, "person": i.person, "licence": i.licence, "source": i.source, "credit": i.credit}
        for i in identities.values()
    ]
    write_if_changed(root / "CREDITS.json", json_bytes(credits))
    return root
