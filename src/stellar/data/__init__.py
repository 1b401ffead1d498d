"""On-disk formats and their readers/writers (DESIGN §3, §5)."""

from stellar.data.dataset import Job, Photo, Prompt, StellarDataset, Subject
from stellar.data.generated import GeneratedSet
from stellar.data.problems import Problem

__all__ = ["GeneratedSet", "Job", "Photo", "Problem", "Prompt", "StellarDataset", "Subject"]
