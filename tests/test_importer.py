"""``stellar dataset import``: folders of photos + prompts (+ attributes CSV) -> a valid Stellar layout."""

import csv
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from stellar.cli import main
from stellar.data import StellarDataset, layout
from stellar.data.dataset import load_mask
from stellar.data.importer import MANIFEST_FILE, import_subjects, read_prompts, sanitise_subject_id
from stellar.errors import DatasetError

APS = list(layout.APS_ATTRIBUTES)


def photo(path, size=(80, 64), seed=0, **save):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, **save)
    return arr


def make_people(root, spec=None):
    """spec: folder -> number of JPEG photos (named img1.jpg, img2.jpg, ...)."""
    spec = spec or {"alice": 2, "bob": 2}
    for k, (name, n) in enumerate(spec.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            photo(folder / f"img{i + 1}.jpg", seed=10 * k + i)
    return root


def listing(root):
    """{relative path: sha256} of every file under root (the 'input unmodified' witness)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def loaded(out):
    ds = StellarDataset(out)  # strict: raises on any error
    assert [p for p in ds.check() if p.severity == "error"] == []
    return ds


@pytest.fixture
def people(tmp_path):
    return make_people(tmp_path / "people")


# ------------------------------------------------------------------ prompts formats
def test_txt_prompts_one_per_line_become_h(tmp_path, people):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# my prompts\n{} reading a book\n\n  {} at the beach  \n")
    report = import_subjects(people, prompts, tmp_path / "out")
    ds = loaded(tmp_path / "out")
    assert list(ds.subjects) == ["alice", "bob"]
    assert [p.template for p in ds.subject("alice").prompts] == ["{} reading a book", "{} at the beach"]
    assert {p.kind for p in ds.subject("alice").prompts} == {"H"}
    assert not (tmp_path / "out" / "alice" / layout.PROMPTS_T_FILE).exists()
    jobs = ds.jobs("test")
    assert len(jobs) == 2 * 2 * 2 and jobs[0].name == "alice-0-00" and jobs[-1].name == "bob-1-01"
    assert (report.prompts_T, report.prompts_H, report.photos, report.jobs_H) == (0, 2, 4, 8)
    text = str(report)
    assert "2 subject(s)" in text and "jobs T 0, H 8, total 8" in text


@pytest.mark.parametrize(
    "data",
    [
        [
            {"prompt": "{} riding a horse", "detectables": ["horse"], "categories": ["animal"]},
            "{} smiling",
            {"prompt": "{} near a car", "detectables": "car", "kind": "H"},
        ],
        {"prompts": ["{} riding a horse", "{} smiling"], "detectables": [["horse"], []], "categories": [["animal"], []]},
    ],
    ids=["list", "columnar"],
)
def test_json_prompts_split_by_detectables_and_kind(tmp_path, people, data):
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(data))
    import_subjects(people, prompts, tmp_path / "out")
    s = loaded(tmp_path / "out").subject("bob")
    t, h = s.prompts_of("T"), s.prompts_of("H")
    assert [p.template for p in t] == ["{} riding a horse"]
    assert t[0].detectables == ("horse",) and t[0].categories == ("animal",) and t[0].index == 0
    assert h[0].template == "{} smiling" and h[0].index == 1
    if isinstance(data, list):  # explicit kind H wins over detectables, which are kept
        assert h[1].template == "{} near a car" and h[1].detectables == ("car",)
    objects = (tmp_path / "out" / layout.OBJECTS_FILE).read_text().split()
    assert objects == ["horse"]


def test_csv_prompts_lists_kinds_and_subject_restriction(tmp_path, people):
    prompts = tmp_path / "p.csv"
    with open(prompts, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Prompt", "detectables", "categories", "kind", "subject"])
        w.writerow(["{} riding a horse in the jungle", "horse; jungle", "animal;location", "", ""])
        w.writerow(["{} eating pizza", "pizza", "food", "h", ""])
        w.writerow(["{}, only for alice", "", "", "", "alice"])
        w.writerow(["", "", "", "", ""])
    report = import_subjects(people, prompts, tmp_path / "out")
    ds = loaded(tmp_path / "out")
    a, b = ds.subject("alice"), ds.subject("bob")
    assert a.prompts[0].detectables == ("horse", "jungle") and a.prompts[0].categories == ("animal", "location")
    assert [p.kind for p in a.prompts] == ["T", "H", "H"] and len(b.prompts) == 2
    assert a.prompts[2].template == "{}, only for alice"
    assert report.prompts_T == 1 and report.prompts_H == 2 and report.jobs_H == 2 * 2 + 2 * 1


@pytest.mark.parametrize(
    "name,content,where",
    [
        ("p.txt", "{} fine\nno placeholder here\n", "line 2"),
        ("p.txt", "{} and {} twice\n", "line 1"),
        ("p.csv", "prompt\n{} ok\n{} {} bad\n", "row 3"),
        ("p.json", json.dumps(["{} ok", "bad"]), "item 1"),
        ("p.json", json.dumps({"prompts": ["{} a", "{} b"], "detectables": [["x"]]}), "'detectables' has 1 entries"),
        ("p.json", '["{} ok",', "invalid JSON at line 1"),
        ("p.json", json.dumps([{"prompt": "{} x", "kind": "Z"}]), "kind 'Z'"),
        ("p.csv", "text\n{} ok\n", "no 'prompt' column"),
        ("p.json", json.dumps({"prompt": "x"}), "'prompts' must be a list"),
        ("p.txt", "# only a comment\n", "no prompts found"),
    ],
)
def test_bad_prompts_file_is_an_error_naming_file_and_place(tmp_path, people, name, content, where):
    prompts = tmp_path / name
    prompts.write_text(content)
    with pytest.raises(DatasetError) as info:
        import_subjects(people, prompts, tmp_path / "out")
    text = str(info.value)
    assert str(prompts) in text and where in text and "nothing was written" in text
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no temp leftovers


def test_read_prompts_warns_on_repeats(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("{} x\n{} y\n{} x\n")
    specs, problems = read_prompts(p)
    assert len(specs) == 3
    assert [(x.severity, "line 3" in x.message and "line 1" in x.message) for x in problems] == [("warning", True)]


def test_unknown_subject_in_prompts_is_an_error(tmp_path, people):
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,subject\n{} x,carol\n")
    with pytest.raises(DatasetError, match="row 2: unknown subject 'carol'"):
        import_subjects(people, prompts, tmp_path / "out")


# ------------------------------------------------------------------ attributes
def write_attributes(path, rows, columns=APS):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject", "photo", *columns])
        w.writerows(rows)
    return path


def test_attributes_csv_by_file_name_or_index_and_0_1_values(tmp_path, people):
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    attrs = write_attributes(
        tmp_path / "a.csv",
        [
            ["alice", "img1.jpg", *[1, 0, 1, 0, 1, 0, 1, 0]],
            ["alice", "1", *[-1] * 8],
            ["bob", "IMG2.JPG", *[1] * 8],  # file names match case-insensitively
        ],
        columns=[a.lower() for a in APS],  # attribute names too
    )
    report = import_subjects(people, prompts, tmp_path / "out", attributes_csv=attrs)
    ds = loaded(tmp_path / "out")
    a0, a1 = ds.subject("alice").photos
    assert a0.attributes == dict(zip(APS, [1, -1, 1, -1, 1, -1, 1, -1]))
    assert a1.attributes == dict.fromkeys(APS, -1)
    assert a0.original_filename == "img1.jpg" and a0.identity == "alice"
    b0, b1 = ds.subject("bob").photos
    assert b0.attributes_path is None and b1.attributes == dict.fromkeys(APS, 1)
    missing = [w for w in report.warnings if "no row for bob/img1.jpg" in w.message]
    assert len(missing) == 1 and missing[0].path == str(attrs)
    assert sum(s.attributes for s in report.subjects) == 3


@pytest.mark.parametrize(
    "rows,columns,message",
    [
        ([["carol", "img1.jpg", *[1] * 8]], APS, "row 2: unknown subject 'carol'"),
        ([["alice", "img9.jpg", *[1] * 8]], APS, "row 2: subject 'alice' has no photo 'img9.jpg'"),
        ([["alice", "7", *[1] * 8]], APS, "has no photo 7"),
        ([["alice", "img1.jpg", "yes", *[1] * 7]], APS, "row 2: Young = 'yes'"),
        ([["alice", "img1.jpg", *[1] * 8], ["alice", "0", *[1] * 8]], APS, "row 3: photo 'img1.jpg' of 'alice' already given in row 2"),
        ([["alice", "img1.jpg", *[1] * 7]], APS[:-1], "missing APS attribute column(s): Big_Nose"),
    ],
)
def test_bad_attributes_csv_is_an_error_naming_the_row(tmp_path, people, rows, columns, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    attrs = write_attributes(tmp_path / "a.csv", rows, columns)
    with pytest.raises(DatasetError) as info:
        import_subjects(people, prompts, tmp_path / "out", attributes_csv=attrs)
    assert str(attrs) in str(info.value) and message in str(info.value)
    assert not (tmp_path / "out").exists()


def test_ambiguous_numeric_photo_name_is_refused(tmp_path):
    people = tmp_path / "people"
    (people / "s1").mkdir(parents=True)
    photo(people / "s1" / "1.jpg")  # 1-based numbering by the user: "1" could be this file or index 1
    photo(people / "s1" / "2.jpg", seed=1)
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    attrs = write_attributes(tmp_path / "a.csv", [["s1", "1", *[1] * 8]])
    with pytest.raises(DatasetError, match="ambiguous"):
        import_subjects(people, prompts, tmp_path / "out", attributes_csv=attrs)


def test_empty_aps_cell_leaves_the_photo_without_attributes(tmp_path, people):
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    attrs = write_attributes(tmp_path / "a.csv", [["alice", "img1.jpg", "", *[1] * 7]])
    report = import_subjects(people, prompts, tmp_path / "out", attributes_csv=attrs)
    assert loaded(tmp_path / "out").subject("alice").photos[0].attributes_path is None
    assert any("empty APS attribute(s) Young" in w.message for w in report.warnings)


# ------------------------------------------------------------------ photos and masks
def test_masks_become_palette_bg_files(tmp_path):
    people = tmp_path / "people"
    (people / "p").mkdir(parents=True)
    photo(people / "p" / "a.jpg", size=(80, 64))
    photo(people / "p" / "b.png", size=(80, 64), seed=1)
    photo(people / "p" / "c.jpg", size=(80, 64), seed=2)
    m = np.zeros((64, 80), np.uint8)
    m[10:40, 20:50] = 255
    Image.fromarray(m).save(people / "p" / "a_mask.png")  # greyscale 0/255
    rgba = np.zeros((32, 40, 4), np.uint8)  # half size, same aspect ratio -> resized; alpha marks the subject
    rgba[5:20, 10:25, 3] = 255
    Image.fromarray(rgba, "RGBA").save(people / "p" / "b_bg.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(people / "p" / "c_mask.png")  # wrong size -> skipped
    Image.fromarray(m).save(people / "p" / "zzz_mask.png")  # no photo zzz -> skipped
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    report = import_subjects(people, prompts, tmp_path / "out")
    ds = loaded(tmp_path / "out")
    a, b, c = ds.subject("p").photos
    assert len(ds.subject("p").photos) == 3  # masks are not photos
    with Image.open(a.mask_path) as im:
        assert im.mode == "P" and set(np.unique(np.asarray(im))) == {0, 1}
    assert (load_mask(a) == (m > 0)).all()
    mb = load_mask(b)
    assert mb.shape == (64, 80) and mb[10:40, 20:50].all() and mb.sum() == 30 * 30
    assert c.mask_path is None
    reasons = dict(report.skipped)
    assert "mask is 10x10 but the photo is 80x64" in reasons[str(people / "p" / "c_mask.png")]
    assert "without a photo" in reasons[str(people / "p" / "zzz_mask.png")]
    assert report.masks == 2


def test_single_photo_warns_and_undecodable_photo_is_skipped(tmp_path):
    people = make_people(tmp_path / "people", {"solo": 1, "pair": 3})
    bad = people / "pair" / "img2.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    (people / "pair" / "notes.txt").write_text("not a photo")
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    report = import_subjects(people, prompts, tmp_path / "out")
    ds = loaded(tmp_path / "out")
    pair = ds.subject("pair")
    assert [p.index for p in pair.photos] == [0, 1]  # img1 -> 0, img3 -> 1
    manifest = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())
    assert manifest["photos"]["pair"] == {"0.jpg": "img1.jpg", "1.jpg": "img3.jpg"}
    reasons = dict(report.skipped)
    assert "truncated" in reasons[str(bad)].lower() and "not an image" in reasons[str(people / "pair" / "notes.txt")]
    assert any(w.path == str(people / "solo") and "one photo" in w.message for w in report.warnings)
    assert str(bad) in str(report) and len(ds.jobs("test")) == 1 + 2


def test_subject_left_without_photos_is_an_error(tmp_path):
    people = make_people(tmp_path / "people", {"ok": 2, "empty": 0})
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    with pytest.raises(DatasetError) as info:  # found before any photo is decoded
        import_subjects(people, prompts, tmp_path / "out")
    assert f"{people / 'empty'}: subject folder has no photos" in str(info.value)
    (people / "empty").rmdir()
    make_people(people, {"broken": 1})
    (people / "broken" / "img1.jpg").write_bytes(b"")
    with pytest.raises(DatasetError) as info:  # found while decoding
        import_subjects(people, prompts, tmp_path / "out")
    assert f"{people / 'broken'}: no photo of this subject could be decoded" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_odd_photos_are_normalised_to_upright_rgb_jpeg(tmp_path):
    folder = tmp_path / "people" / "p"
    folder.mkdir(parents=True)
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90° clockwise
    img.save(folder / "1_rotated.jpg", exif=exif, quality=95)
    Image.fromarray(np.full((30, 30), 65535, np.uint16)).save(folder / "2_grey16.png")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(folder / "3_cmyk.jpg")
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    import_subjects(folder.parent, prompts, tmp_path / "out")
    photos = loaded(tmp_path / "out").subject("p").photos
    with Image.open(photos[0].path) as im:
        assert im.size == (20, 40) and im.mode == "RGB" and im.format == "JPEG"
        r, g, b = im.getpixel((15, 5))  # the red corner moved top-right
        assert r > 200 and g < 60 and b < 60
        assert im.getexif().get(0x0112) is None
    with Image.open(photos[1].path) as im:
        assert im.mode == "RGB" and min(im.getpixel((15, 15))) >= 250
    with Image.open(photos[2].path) as im:
        r, g, b = im.getpixel((8, 8))
        assert r > 230 and g < 30 and b < 30


def test_link_hard_links_upright_rgb_jpegs_only(tmp_path):
    folder = tmp_path / "people" / "p"
    folder.mkdir(parents=True)
    photo(folder / "a.jpg", quality=90)
    photo(folder / "b.png", seed=1)
    exif = Image.Exif()
    exif[0x0112] = 8
    photo(folder / "c.jpg", seed=2, exif=exif)
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    report = import_subjects(folder.parent, prompts, tmp_path / "out", link=True)
    out = tmp_path / "out" / "p"
    assert os.path.samefile(out / "0.jpg", folder / "a.jpg")
    assert not os.path.samefile(out / "1.jpg", folder / "b.png")
    assert not os.path.samefile(out / "2.jpg", folder / "c.jpg")
    assert (report.linked, report.encoded) == (1, 2)
    loaded(tmp_path / "out")


@pytest.mark.parametrize("link", [False, True])
def test_input_folder_is_never_modified(tmp_path, link):
    people = make_people(tmp_path / "people", {"a": 2, "b..c": 1, "d": 2})
    (people / "a" / "img1_mask.png").write_bytes(b"broken mask")
    (people / "d" / "img2.jpg").write_bytes(b"")
    prompts = people / "prompts.txt"  # may live inside the input folder
    prompts.write_text("{} x\n")
    attrs = write_attributes(people / "attributes.csv", [["a", "img1.jpg", *[1] * 8]])
    before = listing(people)
    dirs_before = sorted(p for p in people.rglob("*") if p.is_dir())
    report = import_subjects(people, prompts, tmp_path / "out", attributes_csv=attrs, link=link)
    assert listing(people) == before
    assert sorted(p for p in people.rglob("*") if p.is_dir()) == dirs_before
    assert str(people / "prompts.txt") not in dict(report.skipped)  # the prompts file is not a stray file
    loaded(tmp_path / "out")


def test_jobs_of_imported_synthetic_dataset_round_trip(tmp_path, synthetic):
    """An official-layout folder imports as itself: {i}.jpg photos, {i}_bg.png masks, same jobs."""
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(json.loads((synthetic / "000" / layout.PROMPTS_T_FILE).read_text())))
    out = tmp_path / "out"
    report = import_subjects(synthetic, prompts, out, split="val")
    src, ds = StellarDataset(synthetic), loaded(out)
    assert list(ds.subjects) == list(src.subjects) and {s.split for s in ds.subjects.values()} == {"val"}
    assert ds.jobs("test") == [] and len(ds.jobs("val")) == 5 * 2 * 4
    for sid in ds.subjects:
        for a, b in zip(src.subject(sid).photos, ds.subject(sid).photos):
            assert (load_mask(a) == load_mask(b)).all()
            with Image.open(a.path) as x, Image.open(b.path) as y:
                assert x.size == y.size and np.abs(np.asarray(x, int) - np.asarray(y, int)).mean() < 8
    assert [j.name for j in ds.jobs("val")[:2]] == ["000-0-00", "000-0-01"]
    assert report.masks == 10 and report.renamed == ()
    skipped = {os.path.basename(p) for p, _ in report.skipped}
    assert {"objects.txt", "0_attributes.json", "prompts_t.json"} <= skipped


# ------------------------------------------------------------------ names, reruns, refusals
def test_invalid_folder_names_are_sanitised_and_reported(tmp_path):
    people = make_people(tmp_path / "people", {"José M": 2, "a..b": 1, "-x": 1, "x": 1, "my-friend": 1})
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    report = import_subjects(people, prompts, tmp_path / "out")
    renamed = dict(report.renamed)
    assert renamed == {"José M": "Jose_M", "a..b": "a.b", "-x": "x_2", "my-friend": "my_friend"}
    ds = loaded(tmp_path / "out")
    assert set(ds.subjects) == {"Jose_M", "a.b", "x", "x_2", "my_friend"}
    for job in ds.jobs("test"):
        assert layout.parse_job_name(job.name).subject == job.subject
    assert "renamed subject folder 'José M' -> 'Jose_M'" in str(report)


@pytest.mark.parametrize("name", ["..", "../../etc", "a/b", "..\\evil", "", "ü"])
def test_sanitise_subject_id_is_always_valid(name):
    assert layout.is_valid_subject_id(sanitise_subject_id(name))


def test_rerun_is_a_no_op_and_changed_inputs_are_refused(tmp_path, people):
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    out = tmp_path / "out"
    first = import_subjects(people, prompts, out)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = import_subjects(people, prompts, out)
    assert again.up_to_date and not first.up_to_date and "nothing written" in str(again)
    assert again.subjects == first.subjects
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp
    prompts.write_text("{} y\n")
    with pytest.raises(DatasetError, match="imported from other inputs"):
        import_subjects(people, prompts, out)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        import_subjects(people, prompts, other)
    assert (other / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    import_subjects(people, prompts, empty)  # an existing empty folder is fine
    loaded(empty)


def test_output_inside_the_input_is_refused(tmp_path, people):
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    with pytest.raises(DatasetError, match="inside the subjects folder"):
        import_subjects(people, prompts, people / "out")
    assert not (people / "out").exists()


def test_numeric_subjects_follow_the_chosen_split(tmp_path):
    people = make_people(tmp_path / "people", {"250": 2, "007": 2})
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    import_subjects(people, prompts, tmp_path / "out", split="test")
    ds = loaded(tmp_path / "out")
    assert {s.split for s in ds.subjects.values()} == {"test"} and len(ds.jobs("test")) == 4
    assert json.loads((tmp_path / "out" / layout.SPLITS_FILE).read_text()) == {"test": ["007", "250"], "val": []}


def test_cli_import_prints_the_report_and_errors_exit_2(tmp_path, people, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("{} x\n")
    rc = main(["dataset", "import", "--subjects", str(people), "--prompts", str(prompts), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "imported: 2 subject(s)" in out and "total 4" in out
    bad = tmp_path / "bad.txt"
    bad.write_text("no subject\n")
    rc = main(["dataset", "import", "--subjects", str(people), "--prompts", str(bad), "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert rc == 2 and "line 1" in err and "exactly one is required" in err
