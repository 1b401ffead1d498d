"""``stellar prompts triplets``: the relation triplets RFS scores, for one prompt or a whole dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stellar.commands._common import print_json, split_list
from stellar.errors import StellarError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prompts", help="prompt utilities (relation triplets)")
    psub = p.add_subparsers(dest="prompts_command", metavar="ACTION")
    psub.required = True
    t = psub.add_parser(
        "triplets",
        help="relation triplets (person, predicate, object) of a prompt, or of every prompt of a dataset",
        description=(
            "Print the relation triplets RFS scores, as JSON. With TEXT: the triplets extracted from it "
            "('{}' or 'a person' = the subject). With --dataset: per prompt, the annotated triplets when the "
            "dataset has them, else the extracted ones, and the coverage of the Stellar-T objects."
        ),
    )
    t.add_argument("text", nargs="?", default=None, help='prompt, e.g. "{} riding a horse in the jungle"')
    t.add_argument("--detectables", default=None, help="the prompt's objects, comma separated (Stellar-T); none: free-text rules")
    t.add_argument("--dataset", type=Path, default=None, help="Stellar-layout dataset folder: triplets of all its prompts")
    t.add_argument("--split", default="test", choices=["test", "val", "all"], help="with --dataset (default: test)")
    t.add_argument("--kinds", default="T,H", help="with --dataset: prompt kinds, T, H or T,H (default)")
    t.add_argument("--summary", action="store_true", help="with --dataset: print only the coverage counts")
    t.set_defaults(func=cmd_triplets)


def cmd_triplets(args: argparse.Namespace) -> int:
    from stellar.data.prompts import extract_triplets

    if (args.text is None) == (args.dataset is None):
        raise StellarError(
            "give a prompt TEXT or --dataset D (not both)\n"
            '  fix: stellar prompts triplets "{} riding a horse in the jungle" --detectables horse,jungle'
        )
    if args.text is not None:
        triplets = extract_triplets(args.text, split_list(args.detectables))
        print(json.dumps([list(t) for t in triplets], ensure_ascii=False))
        return 0
    print_json(dataset_triplets(args.dataset, args.split, split_list(args.kinds), summary_only=args.summary))
    return 0


def dataset_triplets(root: Path, split: str, kinds: list[str], *, summary_only: bool = False) -> dict:
    """Per-prompt triplets of a dataset and their coverage (what ``--dataset`` prints).

    Coverage counts Stellar-T prompts only (Stellar-H prompts have no detectables): ``objects_wanted``
    = detectables that are not role words, ``objects_covered`` = those that are the object of a
    triplet, ``T_fully_covered`` = prompts whose every wanted object is covered,
    ``T_with_triplets`` = prompts with at least one triplet.
    """
    from stellar.data.dataset import StellarDataset
    from stellar.data.prompts import resolve_triplets, triplet_coverage

    ds = StellarDataset(root)
    rows: list[dict] = []
    cov = {"prompts_T": 0, "prompts_H": 0, "annotated": 0, "T_with_triplets": 0, "T_fully_covered": 0,
           "objects_wanted": 0, "objects_covered": 0, "H_with_triplets": 0}  # fmt: skip
    for subject in ds.split_subjects(split):
        for prompt in subject.prompts_of(kinds):
            triplets = resolve_triplets(prompt)
            annotated = prompt.triplets is not None
            cov["annotated"] += annotated
            if prompt.kind == "T":
                covered, wanted = triplet_coverage(prompt, triplets)
                cov["prompts_T"] += 1
                cov["T_with_triplets"] += bool(triplets)
                cov["T_fully_covered"] += covered == wanted
                cov["objects_wanted"] += wanted
                cov["objects_covered"] += covered
            else:
                cov["prompts_H"] += 1
                cov["H_with_triplets"] += bool(triplets)
            if not summary_only:
                rows.append(
                    {
                        "subject": prompt.subject,
                        "index": prompt.index,
                        "kind": prompt.kind,
                        "template": prompt.template,
                        "detectables": list(prompt.detectables),
                        "source": "annotated" if annotated else "extracted",
                        "triplets": [list(t) for t in triplets],
                    }
                )
    out: dict = {"dataset": str(root), "split": split, "coverage": cov}
    if not summary_only:
        out["prompts"] = rows
    return out
