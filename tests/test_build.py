"""``stellar dataset build``: miniature CelebAMask-HQ and CelebA-Dialog sources -> official layout."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from celebamask_fixtures import (
    EXPECTED,
    FINEGRAINED_NAMES,
    PHOTOS,
    attribute_values,
    expected_labels,
    finegrained_values,
    make_celeba_dialog,
    make_celebamask_hq,
    write_gated,
)
from PIL import Image

from stellar.cli import main
from stellar.data import StellarDataset
from stellar.data import build as build_module
from stellar.data.build import PALETTE, UNKNOWN_LABEL, build_dataset, labels_from_part_masks, part_mask_paths, plan_build
from stellar.data.dataset import load_mask
from stellar.data.layout import CELEBA_ATTRIBUTES
from stellar.data.problems import count
from stellar.errors import DatasetError


def snapshot(*roots: Path) -> dict[str, tuple]:
    """(size, mtime, inode count-independent content hash) of every file and folder under ``roots``."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            d = Path(dirpath)
            out[str(d)] = ("dir", d.stat().st_mtime_ns, tuple(sorted(dirnames + filenames)))
            for name in filenames:
                p = d / name
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns, st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def output_listing(out: Path) -> dict[str, tuple]:
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}


def mask_values(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "P"
        return np.asarray(im)


def assert_built_content(out: Path, source_images: Path, *, finegrained: bool) -> StellarDataset:
    ds = StellarDataset(out)  # strict: raises on any error
    assert list(ds.subjects) == list(EXPECTED)
    for sid, (identity, split, indices) in EXPECTED.items():
        subject = ds.subject(sid)
        assert subject.split == split
        assert [p.index for p in subject.photos] == list(range(len(indices)))
        for photo, k in zip(subject.photos, indices):
            assert photo.identity == identity
            assert photo.original_filename == f"{k}.jpg"
            # byte-identical photo, not a re-encoding
            assert photo.path.read_bytes() == (source_images / f"{k}.jpg").read_bytes()
            assert photo.attributes == dict(zip(CELEBA_ATTRIBUTES, attribute_values(k)))
            record = json.loads(photo.attributes_path.read_text())
            assert list(record) == ["attributes", "finegrained_attributes", "identity", "original_filename"]
            assert list(record["attributes"]) == list(CELEBA_ATTRIBUTES)
            if finegrained and k != 4:
                assert photo.finegrained_attributes == dict(zip(FINEGRAINED_NAMES, finegrained_values(k)))
            else:
                assert photo.finegrained_attributes == {}
            values = mask_values(photo.mask_path)
            np.testing.assert_array_equal(values, expected_labels(k))
            np.testing.assert_array_equal(load_mask(photo), expected_labels(k) > 0)
    prompts_t = json.loads((out / "000" / "prompts_t.json").read_text())
    assert prompts_t["prompts"][0] == "{} riding a horse 000" and prompts_t["detectables"] == [["horse"], ["umbrella"]]
    assert [p.template for p in ds.subject("001").prompts_of("H")] == ["a portrait of {} number 001"]
    assert ds.subject("002").prompts_of("H") == () and not (out / "002" / "prompts_h.json").exists()
    assert ds.objects == ["horse", "umbrella"]
    # 2 test + 1 val subjects: the official 000-199 rule would call 002 test, so splits.json says so.
    assert json.loads((out / "splits.json").read_text()) == {"test": ["000", "001"], "val": ["002"]}
    assert count(ds.check(), "error") == 0
    return ds


def test_builds_original_celebamask_hq_layout(tmp_path):
    src = make_celebamask_hq(tmp_path)
    before = snapshot(src.root, src.gated, src.celeba_identity.parent)
    out = tmp_path / "STELLAR"
    report = build_dataset(src.root, src.gated, out, celeba_identity=src.celeba_identity)
    assert_built_content(out, src.root / "CelebA-HQ-img", finegrained=False)
    assert snapshot(src.root, src.gated, src.celeba_identity.parent) == before
    assert report.source_layout == "CelebAMask-HQ"
    assert (report.subjects, report.test_subjects, report.val_subjects) == (3, 2, 1)
    assert (report.photos_copied, report.photos_linked, report.photos_up_to_date) == (6, 0, 0)
    assert (report.masks_written, report.masks_missing) == (6, 0)
    # 6 attribute files + 3 prompts_t + 2 prompts_h + objects.txt + splits.json
    assert report.files_written == 13 and report.written == 25
    assert report.warnings == ()
    text = str(report)
    assert "subjects 3 (test 2, val 1)" in text and "copied 6" in text and "0 warning(s)" in text


def test_builds_celeba_dialog_layout_with_finegrained_labels(tmp_path):
    src = make_celeba_dialog(tmp_path)
    before = snapshot(src.root, src.gated)
    out = tmp_path / "STELLAR"
    report = build_dataset(src.root, src.gated, out)
    assert report.source_layout == "CelebA-Dialog"
    assert_built_content(out, src.root / "image", finegrained=True)
    assert snapshot(src.root, src.gated) == before
    # CelebA-HQ 4 has no fine-grained row (as 5380 in the real release): a warning, not an error.
    assert len(report.warnings) == 1 and "4.jpg" in report.warnings[0].message
    # the written palette is the CelebA-Dialog colour list
    with Image.open(out / "000" / "0_bg.png") as im:
        assert im.getpalette()[: 3 * len(PALETTE)] == [v for c in PALETTE for v in c]


def test_both_layouts_give_the_same_dataset(tmp_path):
    a, b = make_celebamask_hq(tmp_path / "a"), make_celeba_dialog(tmp_path / "b")
    build_dataset(a.root, a.gated, tmp_path / "out_a", celeba_identity=a.celeba_identity)
    build_dataset(b.root, b.gated, tmp_path / "out_b")
    for rel in ["000/0.jpg", "000/1_bg.png", "001/1.jpg", "002/0_bg.png", "000/prompts_t.json", "001/prompts_h.json"]:
        assert (tmp_path / "out_a" / rel).read_bytes() == (tmp_path / "out_b" / rel).read_bytes(), rel


def test_rerun_is_a_no_op(tmp_path):
    src = make_celeba_dialog(tmp_path)
    out = tmp_path / "STELLAR"
    first = build_dataset(src.root, src.gated, out)
    listing = output_listing(out)
    second = build_dataset(src.root, src.gated, out)
    assert second.written == 0 and second.up_to_date == first.written == 25
    assert (second.photos_up_to_date, second.masks_up_to_date, second.files_up_to_date) == (6, 6, 13)
    assert output_listing(out) == listing  # same inodes, same mtimes: nothing was rewritten
    assert "0 file(s) written, 25 up to date" in str(second)


def test_rerun_repairs_a_changed_output_file_only(tmp_path):
    src = make_celebamask_hq(tmp_path)
    out = tmp_path / "STELLAR"
    build_dataset(src.root, src.gated, out, celeba_identity=src.celeba_identity)
    (out / "001" / "1.jpg").write_bytes(b"corrupt")
    labels = mask_values(out / "002" / "0_bg.png").copy()
    labels[0, 0] = 7
    Image.fromarray(labels, "P").save(out / "002" / "0_bg.png")
    (out / "000" / "0_attributes.json").write_text("{}")
    (out / "splits.json").write_text('{"test": ["000", "001", "002"]}')
    report = build_dataset(src.root, src.gated, out, celeba_identity=src.celeba_identity)
    assert (report.photos_copied, report.masks_written, report.files_written) == (1, 1, 2)
    assert_built_content(out, src.root / "CelebA-HQ-img", finegrained=False)


def test_link_hard_links_photos_and_leaves_source_alone(tmp_path):
    src = make_celeba_dialog(tmp_path)
    before = snapshot(src.root, src.gated)
    out = tmp_path / "STELLAR"
    report = build_dataset(src.root, src.gated, out, link=True)
    assert (report.photos_linked, report.photos_copied) == (6, 0)
    for sid, (_, _, indices) in EXPECTED.items():
        for i, k in enumerate(indices):
            assert os.stat(out / sid / f"{i}.jpg").st_ino == os.stat(src.root / "image" / f"{k}.jpg").st_ino
    again = build_dataset(src.root, src.gated, out, link=True)
    assert again.written == 0 and again.photos_up_to_date == 6
    after = snapshot(src.root, src.gated)
    # A new hard link changes the photos' link count (st_nlink) and ctime only: size, mtime, mode and bytes are the same.
    assert after == before


def test_link_over_a_copied_output_becomes_links(tmp_path):
    src = make_celeba_dialog(tmp_path)
    out = tmp_path / "STELLAR"
    build_dataset(src.root, src.gated, out)
    report = build_dataset(src.root, src.gated, out, link=True)
    assert report.photos_linked == 6 and report.files_written == 0 and report.masks_written == 0
    assert os.stat(out / "000" / "0.jpg").st_ino == os.stat(src.root / "image" / "9.jpg").st_ino


def test_link_falls_back_to_copy_across_file_systems(tmp_path, monkeypatch):
    src = make_celeba_dialog(tmp_path)

    def refuse(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(build_module.os, "link", refuse)
    out = tmp_path / "STELLAR"
    report = build_dataset(src.root, src.gated, out, link=True)
    assert (report.photos_linked, report.photos_copied) == (0, 6)
    assert sum("hard-link" in w.message for w in report.warnings) == 1
    assert os.stat(out / "000" / "0.jpg").st_ino != os.stat(src.root / "image" / "9.jpg").st_ino
    assert (out / "000" / "0.jpg").read_bytes() == (src.root / "image" / "9.jpg").read_bytes()


def test_nested_colour_masks_and_rgb_masks_are_found_and_decoded(tmp_path):
    src = make_celeba_dialog(tmp_path, nested_masks=True, rgb_mask_for=7)
    out = tmp_path / "STELLAR"
    report = build_dataset(src.root, src.gated, out)
    assert report.masks_written == 6
    expected = expected_labels(7)
    expected[0, 0] = UNKNOWN_LABEL  # the off-palette pixel stays subject
    np.testing.assert_array_equal(mask_values(out / "001" / "1_bg.png"), expected)
    np.testing.assert_array_equal(mask_values(out / "001" / "0_bg.png"), expected_labels(2))
    assert any("outside the CelebA-Dialog palette" in w.message and "7.png (1 px)" in w.message for w in report.warnings)


def test_part_masks_combine_later_parts_over_earlier(tmp_path):
    src = make_celebamask_hq(tmp_path)
    parts = part_mask_paths(src.root / "CelebAMask-HQ-mask-anno", 2005)
    assert [p.name for _, p in parts] == ["02005_skin.png", "02005_l_eye.png", "02005_hair.png", "02005_cloth.png"]
    labels = labels_from_part_masks(parts)
    np.testing.assert_array_equal(labels, expected_labels(2005))
    assert (labels == 13).sum() > 0  # hair drawn over the skin mask that also covers it


def test_missing_mask_is_a_warning_and_no_bg_file(tmp_path):
    src = make_celebamask_hq(tmp_path)
    for p in (src.root / "CelebAMask-HQ-mask-anno" / "0").glob("00011_*.png"):
        p.unlink()
    out = tmp_path / "STELLAR"
    report = build_dataset(src.root, src.gated, out, celeba_identity=src.celeba_identity)
    assert report.masks_missing == 1 and report.masks_written == 5
    assert not (out / "002" / "1_bg.png").exists()
    assert any("00011_*.png" in w.message for w in report.warnings)
    StellarDataset(out)


def test_identity_without_two_photos_keeps_all_and_warns(tmp_path):
    src = make_celeba_dialog(tmp_path)
    rows = ["7.jpg,test", "1.jpg,test", "2.jpg,test", "9.jpg,test", "4.jpg,val"]  # 2880 x3, 900 x1, 100 x1
    t = {s: {"prompts": ["{} at the beach"]} for s in ("000", "001", "002")}
    write_gated(src.gated, ids_rows=rows, t=t, h={"000": ["{} smiling"], "001": ["{} waving"]})
    out = tmp_path / "STELLAR"
    report = build_dataset(src.root, src.gated, out)
    ds = StellarDataset(out, strict=False)
    assert [p.original_filename for p in ds.subject("001").photos] == ["1.jpg", "2.jpg", "7.jpg"]
    assert [p.original_filename for p in ds.subject("000").photos] == ["9.jpg"]
    messages = [w.message for w in report.warnings]
    assert any("identity 2880 has 3 photo(s)" in m for m in messages)
    assert any("identity 900 has 1 photo(s)" in m for m in messages)
    assert any("identity 100 has 1 photo(s)" in m for m in messages)


def test_cli_builds_end_to_end_then_check_passes(tmp_path, capsys):
    src = make_celebamask_hq(tmp_path)
    out = tmp_path / "STELLAR"
    argv = ["dataset", "build", "--celebahq", str(src.root), "--stellar-files", str(src.gated), "--out", str(out)]
    assert main(argv + ["--celeba-identity", str(src.celeba_identity), "--link"]) == 0
    printed = capsys.readouterr().out
    assert "subjects 3 (test 2, val 1)" in printed and "hard-linked 6" in printed
    assert main(["dataset", "check", str(out)]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    # without the CelebA identity file the original release cannot be grouped: exit 2, actionable message
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "identity_CelebA.txt" in err and "--celeba-identity" in err


# ------------------------------------------------------------------------------------ input errors
def _ids(*rows: str) -> list[str]:
    return list(rows)


ERROR_CASES = {
    "index not in source": (
        dict(ids_rows=_ids("9.jpg,test", "2005.jpg,test", "2.jpg,test", "7.jpg,test", "4.jpg,val", "11.jpg,val", "12345.jpg,val")),
        ["celebahq_ids.txt:8", "12345.jpg is not in"],
    ),
    "malformed line": (
        dict(ids_rows=_ids("9.jpg,test", "2005.jpg;test", "2.jpg,test", "7.jpg,test", "4.jpg,val", "11.jpg,val")),
        ["celebahq_ids.txt:3", "malformed line '2005.jpg;test'"],
    ),
    "unknown split": (
        dict(ids_rows=_ids("9.jpg,test", "2005.jpg,train", "2.jpg,test", "7.jpg,test", "4.jpg,val", "11.jpg,val")),
        ["celebahq_ids.txt:3"],
    ),
    "duplicate": (
        dict(ids_rows=_ids("9.jpg,test", "2005.jpg,test", "2.jpg,test", "7.jpg,test", "4.jpg,val", "11.jpg,val", "9.jpg,test")),
        ["celebahq_ids.txt:8", "listed again (first on line 2)"],
    ),
    "split conflict": (
        dict(ids_rows=_ids("9.jpg,test", "2005.jpg,val", "2.jpg,test", "7.jpg,test", "4.jpg,val", "11.jpg,val")),
        ["identity 900 is listed under both splits"],
    ),
    "prompts for unknown subject": (
        dict(t={s: {"prompts": ["{} x"]} for s in ("000", "001", "002", "007")}),
        ["stellar_t.json", "subject(s) that the build does not produce: 007"],
    ),
    "prompts missing a subject": (
        dict(t={s: {"prompts": ["{} x"]} for s in ("000", "002")}),
        ["stellar_t.json", "no prompts for subject(s) 001"],
    ),
    "H prompts missing a test subject": (
        dict(h={"000": {"prompts": ["{} x"]}}),
        ["stellar_h.json", "no prompts for subject(s) 001"],
    ),
    "prompt without placeholder": (
        dict(t={s: {"prompts": ["a horse" if s == "001" else "{} x"]} for s in ("000", "001", "002")}),
        ["stellar_t.json ['001']", "exactly one '{}'"],
    ),
    "detectables length": (
        dict(t={s: {"prompts": ["{} x", "{} y"], "detectables": [["x"]]} for s in ("000", "001", "002")}),
        ["'detectables' must be a list with one entry per prompt (2)"],
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_input_errors_name_file_and_line_and_write_nothing(tmp_path, case):
    src = make_celeba_dialog(tmp_path)
    gated_kwargs, fragments = ERROR_CASES[case]
    write_gated(src.gated, **gated_kwargs)
    before = snapshot(src.root, src.gated)
    out = tmp_path / "STELLAR"
    with pytest.raises(DatasetError) as exc:
        build_dataset(src.root, src.gated, out)
    text = str(exc.value)
    assert "nothing was written" in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    assert not out.exists()
    assert snapshot(src.root, src.gated) == before


def test_malformed_attribute_row_names_its_line(tmp_path):
    src = make_celeba_dialog(tmp_path)
    path = src.root / "classification_label" / "CelebAMask-HQ-attribute-anno.txt"
    lines = path.read_text().splitlines()
    row = next(i for i, ln in enumerate(lines) if ln.startswith("9.jpg"))
    lines[row] = lines[row].replace("-1", "2", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"CelebAMask-HQ-attribute-anno.txt:{row + 1}: .* is not a ±1 label"):
        plan_build(src.root, src.gated)


def test_missing_attribute_row_and_identity_are_errors(tmp_path):
    src = make_celeba_dialog(tmp_path)
    path = src.root / "classification_label" / "CelebAMask-HQ-attribute-anno.txt"
    path.write_text("\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("11.jpg")) + "\n")
    ident = src.root / "identity" / "identity_CelebA-HQ.txt"
    ident.write_text("\n".join(ln for ln in ident.read_text().splitlines() if not ln.startswith("2005.jpg")) + "\n")
    with pytest.raises(DatasetError) as exc:
        plan_build(src.root, src.gated)
    text = str(exc.value)
    assert "no row for 11.jpg (listed in celebahq_ids.txt line 2)" in text
    assert "no identity for 2005.jpg" in text


def test_celeba_identity_missing_from_celeba_file(tmp_path):
    src = make_celebamask_hq(tmp_path)
    rows = [ln for ln in src.celeba_identity.read_text().splitlines() if not ln.startswith("005333.jpg")]  # HQ 9
    src.celeba_identity.write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"no identity for CelebA file 005333.jpg \(= CelebA-HQ 9.jpg\)"):
        plan_build(src.root, src.gated, celeba_identity=src.celeba_identity)


@pytest.mark.parametrize(
    "remove, fragment",
    [
        ("CelebA-HQ-img", "no photo folder: expected"),
        ("CelebAMask-HQ-attribute-anno.txt", "no CelebA attribute file"),
        ("CelebAMask-HQ-mask-anno", "no segmentation masks"),
        ("CelebA-HQ-to-CelebA-mapping.txt", "CelebA-HQ to CelebA mapping"),
    ],
)
def test_missing_source_inputs_say_what_was_expected_where(tmp_path, remove, fragment):
    import shutil

    src = make_celebamask_hq(tmp_path)
    target = src.root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetError) as exc:
        build_dataset(src.root, src.gated, tmp_path / "STELLAR", celeba_identity=src.celeba_identity)
    assert fragment in str(exc.value) and "fix:" in str(exc.value)
    assert not (tmp_path / "STELLAR").exists()


def test_missing_gated_file(tmp_path):
    src = make_celeba_dialog(tmp_path)
    (src.gated / "stellar_h.json").unlink()
    with pytest.raises(DatasetError, match="missing stellar_h.json"):
        build_dataset(src.root, src.gated, tmp_path / "STELLAR")


def test_output_inside_source_is_refused(tmp_path):
    src = make_celeba_dialog(tmp_path)
    before = snapshot(src.root)
    with pytest.raises(DatasetError, match="inside the source folder"):
        build_dataset(src.root, src.gated, src.root / "STELLAR")
    assert snapshot(src.root) == before


def test_identity_numbering_uses_full_photo_set(tmp_path):
    """Identities come from the source, not from celebahq_ids.txt: HQ 1 (identity 2880, not listed) stays out."""
    src = make_celeba_dialog(tmp_path)
    plan = plan_build(src.root, src.gated)
    used = {p.celebahq_index for s in plan.subjects for p in s.photos}
    assert used == {k for k, (_, split) in PHOTOS.items() if split} and 1 not in used
