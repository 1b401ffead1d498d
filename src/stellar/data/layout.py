"""Names, paths and fingerprints of the on-disk formats (DESIGN §5).

The official Stellar layout::

    STELLAR/objects.txt
    STELLAR/NNN/0.jpg 1.jpg              subject photos
    STELLAR/NNN/0_bg.png 1_bg.png        subject masks (palette; subject = value > 0), optional
    STELLAR/NNN/0_attributes.json ...    {"attributes": {CelebA name: ±1}, "finegrained_attributes",
                                          "identity", "original_filename"}
    STELLAR/NNN/prompts_t.json           {"prompts", "detectables", "categories"[, "triplets", "ids"]}
    STELLAR/NNN/prompts_h.json           {"prompts"[, "triplets", "ids"]}   (test subjects only)

Our optional extension: ``STELLAR/splits.json`` = ``{"test": [subject, ...], "val": [...]}``,
written by ``stellar dataset import``; when absent the official rule applies (see
:func:`official_split`).

A job is (subject, photo, prompt index[, seed]); its name is ``SSS-I-PP[-sK]``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

#: The eight CelebA attributes the APS metric probes (DESIGN §6.3).
APS_ATTRIBUTES: tuple[str, ...] = (
    "Young",
    "Male",
    "High_Cheekbones",
    "Pointy_Nose",
    "Narrow_Eyes",
    "Double_Chin",
    "Big_Lips",
    "Big_Nose",
)

#: The 40 CelebA binary attributes, in the order of ``list_attr_celeba.txt``.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip

PROMPTS_T_FILE = "prompts_t.json"
PROMPTS_H_FILE = "prompts_h.json"
OBJECTS_FILE = "objects.txt"
SPLITS_FILE = "splits.json"
PLACEHOLDER = "{}"
DEFAULT_SUBJECT_TOKEN = "a person"
KINDS = ("T", "H")
SPLITS = ("test", "val")

_PHOTO_RE = re.compile(r"^(\d+)\.(jpg|jpeg|png|webp)$", re.IGNORECASE)
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
_JOB_NAME_RE = re.compile(r"^(?P<subject>[A-Za-z0-9][A-Za-z0-9_.]*)-(?P<photo>\d+)-(?P<prompt>\d+)(?:-s(?P<seed>\d+))?$")


def photo_index_of(filename: str) -> int | None:
    """``"1.jpg"`` -> 1; anything else (``"1_bg.png"``, ``"x.jpg"``) -> None."""
    m = _PHOTO_RE.match(filename)
    return int(m.group(1)) if m else None


def mask_name(photo_index: int) -> str:
    return f"{photo_index}_bg.png"


def attributes_name(photo_index: int) -> str:
    return f"{photo_index}_attributes.json"


def is_valid_subject_id(name: str) -> bool:
    """Subject folder names: letters, digits, ``_`` and ``.``, not starting with ``.`` (no ``/``, no ``..``)."""
    return bool(_SUBJECT_RE.match(name)) and ".." not in name


def official_split(subject_id: str) -> str:
    """Official rule: numeric subjects 000–199 are *test*, 200–399 *val*; anything else is *test*."""
    if subject_id.isdigit():
        n = int(subject_id)
        if 200 <= n < 400:
            return "val"
    return "test"


def job_name(subject: str, photo: int, prompt_index: int, seed: int | None = None) -> str:
    """Official job name ``SSS-I-PP`` (prompt index zero-padded to ≥2 digits), ``-sK`` for seed K.

    >>> job_name("007", 1, 3)
    '007-1-03'
    >>> job_name("007", 1, 3, seed=2)
    '007-1-03-s2'
    """
    name = f"{subject}-{photo}-{prompt_index:02d}"
    if seed is not None:
        name += f"-s{seed}"
    return name


@dataclass(frozen=True)
class ParsedName:
    subject: str
    photo: int
    prompt: int
    seed: int | None


def parse_job_name(name: str) -> ParsedName | None:
    """Inverse of :func:`job_name`; ``None`` when ``name`` does not have that shape."""
    m = _JOB_NAME_RE.match(name)
    if not m:
        return None
    seed = m.group("seed")
    return ParsedName(m.group("subject"), int(m.group("photo")), int(m.group("prompt")), int(seed) if seed else None)


def fill_prompt(template: str, subject_token: str = DEFAULT_SUBJECT_TOKEN) -> str:
    """Replace the subject placeholder ``{}`` with ``subject_token`` (text metrics use "a person")."""
    return template.replace(PLACEHOLDER, subject_token, 1)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_fingerprint(root: str | Path, files: list[Path]) -> str:
    """Stable fingerprint of a file set: sha256 over sorted (relative path, content sha256) lines.

    Independent of file times, absolute location and listing order, so the same dataset copied
    elsewhere has the same fingerprint and any changed byte changes it.
    """
    root = Path(root)
    h = hashlib.sha256()
    for rel in sorted(p.relative_to(root).as_posix() for p in files):
        h.update(f"{rel}\t{sha256_file(root / rel)}\n".encode("utf-8", "surrogateescape"))  # non-UTF-8 names too
    return "sha256:" + h.hexdigest()
