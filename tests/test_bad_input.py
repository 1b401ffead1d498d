"""Bad input: odd and broken images, malformed datasets, unsafe names, ambiguous generated sets.

Every odd-but-valid image decodes to the right upright 8-bit RGB pixels; every broken file is a
typed error or a recorded problem naming the file — through ``load_image``, ``stellar dataset
check`` and ``stellar generated check``.
"""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stellar.cli import main
from stellar.data import GeneratedSet, StellarDataset, layout
from stellar.errors import DatasetError, ImageDecodeError
from stellar.images import load_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


# ------------------------------------------------------------------ writers of odd and broken files
def png16(path, arr):
    """Write a 16-bit PNG by hand (PIL cannot write 16-bit RGB): grey (H,W), grey+alpha (H,W,2), RGB (H,W,3)."""
    arr = np.asarray(arr, np.uint16)
    color_type = {2: 0, 3: {2: 4, 3: 2, 4: 6}.get(arr.shape[-1])}[arr.ndim]
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def noise(size=(64, 48), seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def truncated(path, fmt):
    buf = io.BytesIO()
    noise((96, 96)).save(buf, fmt)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def marked(orientation, path):
    """A 40x20 blue image with a red 10x10 top-left corner, stored with EXIF ``orientation``."""
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, quality=95)
    return path


def close(pixel, colour, tol=40):
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour))


# ------------------------------------------------------------------ load_image
@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        (lambda p: truncated(p, "JPEG"), "truncated"),
        (lambda p: truncated(p, "PNG"), "truncated"),
        (lambda p: p.write_text("this is not an image"), "not a recognised image format"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "png"),
    ],
    ids=["zero-byte", "truncated-jpeg", "truncated-png", "text", "bad-png-header"],
)
@pytest.mark.parametrize("draft", [None, (32, 32)])
def test_broken_files_raise_image_decode_error_naming_the_file(tmp_path, make, reason, draft):
    path = tmp_path / "broken.png"
    make(path)
    with pytest.raises(ImageDecodeError) as info:
        load_image(path, draft_size=draft)
    assert info.value.path == path and str(path) in str(info.value)
    assert reason.lower() in str(info.value).lower()


def test_missing_file_is_an_image_decode_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        load_image(tmp_path / "nope.jpg")


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red
    arr[0, 1] = (255, 0, 0, 0)  # transparent -> white
    arr[0, 2] = (0, 0, 0, 128)  # half black -> mid grey
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == RED and out.getpixel((1, 0)) == (255, 255, 255)
    assert all(126 <= v <= 128 for v in out.getpixel((2, 0)))


def test_palette_with_transparency_is_composited(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png", transparency=0)
    out = load_image(tmp_path / "p.png")
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (0, 255, 0)


@pytest.mark.parametrize("mode", ["L", "1", "LA"])
def test_greyscale_becomes_three_equal_channels(tmp_path, mode):
    img = Image.new(mode, (4, 4), {"L": 77, "1": 1, "LA": (77, 255)}[mode])
    img.save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    expected = {"L": 77, "1": 255, "LA": 77}[mode]
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (expected,) * 3


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 257, 1000]], np.uint16)
    out = np.asarray(load_image(png16(tmp_path / "g16.png", values)))
    assert out.dtype == np.uint8 and out.shape == (1, 5, 3)
    assert out[0, :, 0].tolist() == [0, 128, 255, 1, 4] and (out[..., 0] == out[..., 2]).all()
    Image.fromarray(values).save(tmp_path / "pil16.png")  # PIL's own I;16 writer
    assert np.asarray(load_image(tmp_path / "pil16.png"))[0, :, 1].tolist() == [0, 128, 255, 1, 4]


def test_16_bit_colour_and_alpha(tmp_path):
    rgb = np.zeros((1, 2, 3), np.uint16)
    rgb[0, 0] = (65535, 32768, 0)
    rgb[0, 1] = (257, 0, 65535)
    out = np.asarray(load_image(png16(tmp_path / "rgb16.png", rgb)))
    assert out[0, 0].tolist() == [255, 128, 0] and out[0, 1].tolist() == [1, 0, 255]
    rgba = np.zeros((1, 1, 4), np.uint16)
    rgba[0, 0] = (65535, 0, 0, 32768)  # half red over white
    px = np.asarray(load_image(png16(tmp_path / "rgba16.png", rgba)))[0, 0].tolist()
    assert px[0] == 255 and 125 <= px[1] <= 129 and px[1] == px[2]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = load_image(tmp_path / "c.jpg")
    assert out.mode == "RGB" and close(out.getpixel((8, 8)), RED, 10)


@pytest.mark.parametrize(
    "orientation,size,red_at,blue_at",
    [
        (1, (40, 20), (5, 5), (35, 15)),
        (3, (40, 20), (35, 15), (5, 5)),  # 180°
        (6, (20, 40), (15, 5), (5, 5)),  # stored rotated: viewer turns 90° clockwise, top-left -> top-right
        (8, (20, 40), (5, 35), (5, 5)),  # 90° counter-clockwise, top-left -> bottom-left
    ],
)
def test_exif_orientation_is_applied(tmp_path, orientation, size, red_at, blue_at):
    out = load_image(marked(orientation, tmp_path / "r.jpg"))
    assert out.size == size
    assert close(out.getpixel(red_at), RED) and close(out.getpixel(blue_at), BLUE)


def test_very_large_image_decodes(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (10_000, 10_000), (10, 200, 30)).save(path, quality=90)
    out = load_image(path)
    assert out.size == (10_000, 10_000) and close(out.getpixel((9_999, 9_999)), (10, 200, 30), 4)
    del out
    small = load_image(path, draft_size=(256, 256))  # validation decodes at a reduced scale
    assert 256 <= min(small.size) < 10_000
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        load_image(path, max_pixels=50_000_000)


# ------------------------------------------------------------------ through `stellar dataset check`
def check_json(root, capsys, *extra):
    rc = main(["dataset", "check", str(root), "--json", *extra])
    data = json.loads(capsys.readouterr().out)
    return rc, data["summary"], data["problems"]


def errors_by_path(problems):
    out = {}
    for p in problems:
        if p["severity"] == "error":
            out.setdefault(p["path"], []).append(p["message"])
    return out


def test_dataset_check_reports_each_broken_photo_with_its_path(synthetic, capsys):
    (synthetic / "000" / "0.jpg").write_bytes(b"")
    truncated(synthetic / "001" / "1.jpg", "JPEG")
    (synthetic / "002" / "0.jpg").write_text("not an image")
    (synthetic / "200" / "1_bg.png").write_bytes(b"\x89PNG broken")
    rc, summary, problems = check_json(synthetic, capsys)
    assert rc == 1
    errors = errors_by_path(problems)
    assert "empty" in errors[str(synthetic / "000" / "0.jpg")][0]
    assert "truncated" in errors[str(synthetic / "001" / "1.jpg")][0].lower()
    assert "not a recognised image" in errors[str(synthetic / "002" / "0.jpg")][0]
    assert "cannot decode mask" in errors[str(synthetic / "200" / "1_bg.png")][0]
    assert len(errors) == 4 and all(p["fix"] for p in problems)
    assert summary["photos"] == 10  # the files are still counted: the check names them, it does not hide them
    rc, _, problems = check_json(synthetic, capsys, "--no-decode")
    assert rc == 0 and not errors_by_path(problems)  # without decoding, bytes are not looked at


def test_dataset_check_accepts_odd_but_valid_photos(tmp_path, capsys):
    from stellar.testing import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "d", 1)
    folder = root / "000"
    (folder / "0.jpg").unlink()
    (folder / "1.jpg").unlink()
    (folder / "0_bg.png").unlink()
    (folder / "1_bg.png").unlink()
    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[50:250, 50:250, 3] = 255
    Image.fromarray(rgba, "RGBA").save(folder / "0.png")
    marked(6, folder / "1.jpg")
    for i, make in enumerate(
        [
            lambda p: png16(p.with_suffix(".png"), np.full((300, 300), 40000)),
            lambda p: Image.new("CMYK", (300, 300), (0, 255, 255, 0)).save(p),
            lambda p: Image.new("RGB", (10_000, 10_000), (1, 2, 3)).save(p, quality=80),
        ],
        start=2,
    ):
        make(folder / f"{i}.jpg")
        (folder / layout.attributes_name(i)).write_text((folder / layout.attributes_name(0)).read_text())
    rc, summary, problems = check_json(root, capsys)
    assert summary["photos"] == 5
    assert not errors_by_path(problems), problems
    assert rc == 0
    warnings = [p for p in problems if p["severity"] == "warning"]
    assert [p["path"] for p in warnings] == [str(folder / "1.jpg")] and "very small" in warnings[0]["message"]


def write_prompts(folder, name, data):
    if isinstance(data, bytes):
        (folder / name).write_bytes(data)
    else:
        (folder / name).write_text(data if isinstance(data, str) else json.dumps(data))


@pytest.mark.parametrize(
    "name,data,message",
    [
        (layout.PROMPTS_T_FILE, '{"prompts": ["{} x"', "invalid JSON at line 1"),
        (layout.PROMPTS_H_FILE, b'{"prompts": ["caf\xe9 {}"]}', "not UTF-8 text"),
        (layout.PROMPTS_T_FILE, {"prompts": ["a horse"], "detectables": [["horse"]]}, "has 0 '{}' placeholders"),
        (layout.PROMPTS_H_FILE, {"prompts": ["{} and {}"]}, "has 2 '{}' placeholders"),
        (layout.PROMPTS_T_FILE, {"prompts": ["{} a", "{} b"], "detectables": [["x"]]}, "'detectables' has 1 entries but there are 2"),
        (layout.PROMPTS_T_FILE, {"prompts": ["{} a"], "detectables": [["x"]], "categories": [[], []]}, "'categories' has 2 entries"),
        (layout.PROMPTS_T_FILE, {"prompts": [3]}, "prompt 0 is not a string"),
        (layout.PROMPTS_T_FILE, {"text": []}, "expected a JSON object with a 'prompts' list"),
    ],
)
def test_dataset_check_reports_bad_prompts_files(synthetic, capsys, name, data, message):
    write_prompts(synthetic / "001", name, data)
    rc, _, problems = check_json(synthetic, capsys, "--no-decode")
    errors = errors_by_path(problems)
    assert rc == 1 and list(errors) == [str(synthetic / "001" / name)]
    assert message in errors[str(synthetic / "001" / name)][0]
    with pytest.raises(DatasetError, match="001/" + name):
        StellarDataset(synthetic)


def test_dataset_check_reports_structure_problems(synthetic, capsys):
    lonely = synthetic / "003"  # prompts but no photos
    lonely.mkdir()
    write_prompts(lonely, layout.PROMPTS_H_FILE, {"prompts": ["{} x"]})
    noise().save(lonely / "IMG_1.jpg")
    for bad in ("a..b", "bad name", "x-y", "back\\slash"):  # '..', space, '-', a path separator on Windows
        folder = synthetic / bad
        folder.mkdir()
        noise().save(folder / "0.jpg")
    noise().save(synthetic / "000" / "0.png")  # a second file for photo 0
    (synthetic / "002" / "1_attributes.json").write_text(json.dumps({"attributes": {"Young": 1, "Male": "yes"}}))
    (synthetic / layout.SPLITS_FILE).write_text(json.dumps({"test": ["000", "ghost"], "val": ["000"]}))
    rc, _, problems = check_json(synthetic, capsys, "--no-decode")
    errors = errors_by_path(problems)
    assert rc == 1
    assert "subject has no photos" in errors[str(lonely)][0]
    assert "IMG_1.jpg" in next(p["fix"] for p in problems if p["path"] == str(lonely))
    for bad in ("a..b", "bad name", "x-y", "back\\slash"):
        assert "invalid subject folder name" in errors[str(synthetic / bad)][0]
    assert "second file for photo 0" in errors[str(synthetic / "000" / "0.png")][0]
    attr = " ".join(errors[str(synthetic / "002" / "1_attributes.json")])
    assert "'Male' has value 'yes'" in attr and "missing APS attribute(s)" in attr
    splits = " ".join(errors[str(synthetic / layout.SPLITS_FILE)])
    assert "listed in two splits" in splits and "unknown subject 'ghost'" in splits


def test_duplicate_photo_index_does_not_duplicate_jobs(synthetic):
    noise().save(synthetic / "000" / "0.png")
    ds = StellarDataset(synthetic, strict=False)
    names = [j.name for j in ds.jobs("test")]
    assert len(names) == len(set(names)) == 3 * 2 * 6
    assert ds.subject("000").photos[0].path.name == "0.jpg"


# ------------------------------------------------------------------ through GeneratedSet / `generated check`
def fill(folder, jobs, ext=".png", size=(32, 32)):
    folder.mkdir(exist_ok=True)
    for j in jobs:
        Image.new("RGB", size, (j.prompt.index * 20, 0, 0)).save(folder / f"{j.name}{ext}")


def test_generated_set_reports_duplicates_unknown_subjects_and_bad_names(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    fill(gen, ds.jobs("test"))
    Image.new("RGB", (8, 8)).save(gen / "000-0-00.jpg")  # a second image for job 000-0-00
    for stem in ("999-0-00", "000-5-00", "000-0-77", "portrait"):
        Image.new("RGB", (8, 8)).save(gen / f"{stem}.png")
    (gen / "001-0-01.json").write_text(json.dumps({"save_name": "../001-0-01"}))
    (gen / "001-0-02.json").write_text(json.dumps({"save_name": "sub/001-0-02.png"}))
    (gen / "002-0-00.json").write_text("{broken")
    gs = GeneratedSet(gen, ds)
    errors = {}
    for p in gs.problems():
        if p.severity == "error":
            errors.setdefault(p.path, []).append(p.message)
    assert "2 files claim job 000-0-00" in errors[str(gen / "000-0-00.jpg")][0]
    assert "unknown subject '999'" in errors[str(gen / "999-0-00.png")][0]
    assert "has no photo 5" in errors[str(gen / "000-5-00.png")][0]
    assert "prompt index 77" in errors[str(gen / "000-0-77.png")][0]
    assert "not a job name" in errors[str(gen / "portrait.png")][0]
    assert "path separator or '..'" in errors[str(gen / "001-0-01.json")][0]
    assert "path separator or '..'" in errors[str(gen / "001-0-02.json")][0]
    assert "not valid JSON" in errors[str(gen / "002-0-00.json")][0]
    s = gs.summary()
    assert s["duplicates"] == 1 and s["unmatched"] == 4 and s["matched"] == s["expected"] - 1
    assert "001-0-01" in gs.report.matched  # an unusable sidecar falls back on the name, with a warning


def test_global_prompt_index_names_are_matched(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    offsets = ds.global_prompt_offsets("test")
    assert offsets == {"000": 0, "001": 6, "002": 12}
    gen = tmp_path / "gen"
    gen.mkdir()
    for j in ds.jobs("test"):
        Image.new("RGB", (8, 8)).save(gen / f"{j.subject}-{j.photo.index}-{offsets[j.subject] + j.prompt.index:02d}.png")
    gs = GeneratedSet(gen, ds)
    assert not [p for p in gs.problems() if p.severity == "error"]
    assert gs.summary()["matched_by"] == {"sidecar": 0, "name": 12, "global-name": 24}
    assert gs.report.matched["002-1-03"].path.name == "002-1-15.png"


def test_sidecars_match_by_image_path_and_prompt(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    gen.mkdir()
    jobs = ds.jobs("test", kinds=("H",))
    for k, j in enumerate(jobs):
        Image.new("RGB", (8, 8)).save(gen / f"img_{k:04d}.png")  # names say nothing
        prompt = j.prompt.template if k % 2 else j.prompt.fill("a person")
        image_path = f"C:\\data\\STELLAR\\{j.subject}\\{j.photo.index}.jpg" if k % 3 == 0 else f"/data/STELLAR/{j.subject}/{j.photo.index}.jpg"
        (gen / f"img_{k:04d}.json").write_text(json.dumps({"prompt": prompt, "image_path": image_path, "cfg": 7.5}))
    gs = GeneratedSet(gen, ds, kinds=("H",))
    assert not [p for p in gs.problems() if p.severity == "error"]
    assert gs.summary()["matched_by"]["sidecar"] == len(jobs) == 12
    assert [gs.report.matched[j.name].path.name for j in jobs] == [f"img_{k:04d}.png" for k in range(12)]


def test_seed_suffixes_are_inferred_and_missing_seeds_reported(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    jobs = ds.jobs("test", kinds=("T",), seeds=3)
    fill(gen, jobs[:-1])  # the last job's seed 2 is missing
    gs = GeneratedSet(gen, ds, kinds=("T",))
    assert gs.seeds == 3 and gs.summary()["matched"] == len(jobs) - 1
    assert [j.name for j in gs.report.missing] == [jobs[-1].name] and jobs[-1].name.endswith("-s2")
    assert gs.problems(allow_missing=True)[-1].severity == "warning"


def test_generated_check_decodes_and_reports_bad_images(synthetic, tmp_path, capsys):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    jobs = ds.jobs("test", kinds=("H",))
    fill(gen, jobs)
    (gen / f"{jobs[0].name}.png").write_bytes(b"")
    truncated(gen / f"{jobs[1].name}.png", "PNG")
    rgba = np.zeros((16, 16, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(gen / f"{jobs[2].name}.png")  # odd but valid
    png16(gen / f"{jobs[3].name}.png", np.full((16, 16), 50000))
    rc = main(["generated", "check", "--dataset", str(synthetic), "--generated", str(gen), "--kinds", "H", "--json"])
    data = json.loads(capsys.readouterr().out)
    bad = {p["path"]: p["message"] for p in data["problems"] if p["severity"] == "error"}
    assert rc == 1 and set(bad) == {str(gen / f"{jobs[0].name}.png"), str(gen / f"{jobs[1].name}.png")}
    assert "empty" in bad[str(gen / f"{jobs[0].name}.png")] and "truncated" in bad[str(gen / f"{jobs[1].name}.png")].lower()
    assert data["summary"]["matched"] == 12


# ------------------------------------------------------------------ issue 9: the match is reported, sidecars cross-checked
def evaluate_without_models(synthetic, gen, out, *extra):
    """`stellar evaluate` with no model at all (CLIP-T skipped): only the match and the run files are exercised."""
    return main(["evaluate", "--dataset", str(synthetic), "--generated", str(gen), "--out", str(out), "--metrics", "clip_t", "--clip", "none", *extra])


def test_stray_seed_suffix_among_correct_names_refuses_and_names_the_file(synthetic, tmp_path, capsys):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    fill(gen, ds.jobs("test"))  # 36 correct single-seed names
    Image.new("RGB", (8, 8)).save(gen / "002-1-05-s3.png")  # one stray name used to make the set "4 seeds"
    with pytest.raises(DatasetError, match=r"disagree on seeds.*002-1-05-s3\.png") as info:
        GeneratedSet(gen, ds)
    assert "--seeds" in str(info.value)
    assert evaluate_without_models(synthetic, gen, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "002-1-05-s3.png" in err and "Traceback" not in err and not (tmp_path / "run").exists()
    gs = GeneratedSet(gen, ds, seeds=1)  # the user decides: the stray is unmatched, with the reason
    assert len(gs) == 36 and gs.report.unmatched == [(gen / "002-1-05-s3.png", "seed suffix -s3 in a set of 1 seed per job")]


def test_evaluate_prints_the_match_report_before_evaluating(synthetic, tmp_path, capsys):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    jobs = ds.jobs("test")
    fill(gen, jobs[1:])  # job 0 has no image
    Image.new("RGB", (8, 8)).save(gen / f"{jobs[1].name}.jpg")  # job 1 twice
    Image.new("RGB", (8, 8)).save(gen / "holiday.png")  # unmatched
    (gen / f"{jobs[2].name}.json").write_text("{broken")  # broken sidecar
    assert evaluate_without_models(synthetic, gen, tmp_path / "run") == 0
    err = capsys.readouterr().err
    assert f"matched {len(jobs) - 2}/{len(jobs)} jobs" in err
    assert "unmatched files 1, jobs without image 1, duplicated jobs 1, broken sidecars 1" in err
    assert "holiday.png" in err and f"2 files claim job {jobs[1].name}" in err and "not valid JSON" in err
    assert f"job(s) have no image: {jobs[0].name}" in err


def sidecar(gen, stem, **meta):
    (gen / f"{stem}.json").write_text(json.dumps(meta))


def test_sidecar_prompt_disagreeing_with_the_dataset_is_reported_not_matched(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    jobs = ds.jobs("test", kinds=("H",))
    fill(gen, jobs)
    a, b, c, d = jobs[0], jobs[1], jobs[2], jobs[3]
    sidecar(gen, a.name, save_name=a.name, prompt=b.prompt.fill())  # made for another prompt
    sidecar(gen, b.name, prompt=b.prompt.fill("A  PERSON"), template=c.prompt.template)  # its template is another one
    sidecar(gen, c.name, prompt=c.prompt.fill("sks man"), image_path=f"/data/STELLAR/{c.subject}/{c.photo.index + 1}.jpg")
    sidecar(gen, d.name, save_name=d.name, prompt=d.prompt.fill("sks   woman"), template=d.prompt.template)  # agrees
    gs = GeneratedSet(gen, ds, kinds=("H",))
    errors = {p.path: p.message for p in gs.problems() if p.severity == "error" and "disagrees" in p.message}
    assert set(errors) == {str(gen / f"{j.name}.json") for j in (a, b, c)}
    assert f"is not job {a.name}'s" in errors[str(gen / f"{a.name}.json")] and "prompt" in errors[str(gen / f"{a.name}.json")]
    assert "template" in errors[str(gen / f"{b.name}.json")]
    assert "image_path" in errors[str(gen / f"{c.name}.json")]
    assert {a.name, b.name, c.name}.isdisjoint(gs.report.matched) and d.name in gs.report.matched
    assert {j.name for j in gs.report.missing} == {a.name, b.name, c.name}  # scored as jobs without image
    assert gs.summary()["sidecar_conflicts"] == 3


def test_sidecar_save_name_reassigning_a_file_to_another_job_is_reported(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    jobs = ds.jobs("test", kinds=("H",))
    fill(gen, [j for j in jobs if j.name != jobs[1].name])
    sidecar(gen, jobs[0].name, save_name=jobs[1].name)
    gs = GeneratedSet(gen, ds, kinds=("H",))
    assert gs.report.matched[jobs[1].name].path.name == f"{jobs[0].name}.png"
    warned = [p for p in gs.problems() if p.severity == "warning" and "re-assigns" in p.message]
    assert [p.path for p in warned] == [str(gen / f"{jobs[0].name}.json")]
    assert f"to job {jobs[1].name}, its file name to job {jobs[0].name}" in warned[0].message
    assert [j.name for j in gs.report.missing] == [jobs[0].name]
    assert "re-assigned by save_name 1" in gs.match_text()


def test_unread_formats_sub_folders_and_orphan_sidecars_in_a_generated_set_are_reported(synthetic, tmp_path):
    import os

    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    jobs = ds.jobs("test", kinds=("H",))
    fill(gen, jobs[3:])
    for job, ext in zip(jobs, (".bmp", ".gif", ".tif")):
        Image.new("RGB", (8, 8)).save(gen / f"{job.name}{ext}")
    (gen / "more").mkdir()
    Image.new("RGB", (8, 8)).save(gen / "more" / f"{jobs[0].name}.png")
    sidecar(gen, "lonely", save_name=jobs[0].name)
    Image.new("RGB", (8, 8)).save(os.fsdecode(os.fsencode(gen) + b"/caf\xe9.png"))
    (gen / ".DS_Store").write_bytes(b"\0")
    gs = GeneratedSet(gen, ds, kinds=("H",))
    found = {p.path: p for p in gs.problems(allow_missing=True) if "ignored" in p.message}
    for job, ext in zip(jobs, (".bmp", ".gif", ".tif")):
        assert found[str(gen / f"{job.name}{ext}")].severity == "error" and f"{ext} images are not read" in found[str(gen / f"{job.name}{ext}")].message
    assert found[str(gen / "more")].severity == "warning" and "flat folder" in found[str(gen / "more")].message
    assert found[str(gen / "lonely.json")].severity == "warning"
    assert found[str(gen) + "/caf\\xe9.png"].severity == "error" and "not valid UTF-8" in found[str(gen) + "/caf\\xe9.png"].message
    assert len(found) == 6 and gs.summary()["ignored"] == 6
    json.dumps([p.to_dict() for p in gs.problems()], ensure_ascii=False).encode("utf-8")  # writable as UTF-8 JSON
    assert gs.fingerprint().startswith("sha256:")


# ------------------------------------------------------------------ issue 9: silently ignored dataset inputs
def test_mask_and_attributes_left_behind_by_a_deleted_photo_are_reported(synthetic, capsys):
    (synthetic / "001" / "1.jpg").unlink()
    rc, _, problems = check_json(synthetic, capsys, "--no-decode")
    left = {p["path"]: p for p in problems if "ignored" in p["message"]}
    assert set(left) == {str(synthetic / "001" / "1_bg.png"), str(synthetic / "001" / "1_attributes.json")}
    assert all(p["severity"] == "warning" and "no photo 1" in p["message"] and "1.jpg" in p["fix"] for p in left.values())
    assert rc == 0


def test_empty_detectables_on_a_t_prompt_is_reported(synthetic, capsys):
    write_prompts(synthetic / "000", layout.PROMPTS_T_FILE, {"prompts": ["{} with a horse", "{} alone"], "detectables": [["horse"], []]})
    _, _, problems = check_json(synthetic, capsys, "--no-decode")
    hits = [p for p in problems if "empty 'detectables'" in p["message"]]
    assert [p["path"] for p in hits] == [str(synthetic / "000" / layout.PROMPTS_T_FILE)] and "(index 1)" in hits[0]["message"]
    assert hits[0]["severity"] == "warning"


def test_subject_with_zero_prompts_is_reported(synthetic, capsys):
    write_prompts(synthetic / "002", layout.PROMPTS_T_FILE, {"prompts": []})
    write_prompts(synthetic / "002", layout.PROMPTS_H_FILE, {"prompts": []})
    _, _, problems = check_json(synthetic, capsys, "--no-decode")
    hits = [p for p in problems if p["path"] == str(synthetic / "002")]
    assert len(hits) == 1 and "zero prompts" in hits[0]["message"] and hits[0]["severity"] == "warning"


# ------------------------------------------------------------------ issue 9: one message and an exit status, never a traceback
def one_error(capsys):
    """The command's stderr; it holds exactly one ``error:`` message and no traceback."""
    err = capsys.readouterr().err
    assert [line.startswith("error: ") for line in err.splitlines()].count(True) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def complete_run(synthetic, tmp_path, capsys):
    """A finished run directory (no model: only the match and the results files)."""
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    fill(gen, ds.jobs("test"))
    out = tmp_path / "run"
    assert evaluate_without_models(synthetic, gen, out) == 0
    capsys.readouterr()
    return gen, out


def disk_fails(monkeypatch, err):
    """Every atomic writer of the package (results, reports, caches) raises ``OSError(err)`` as a full or read-only disk does."""
    import errno
    import os
    import sys

    from stellar import fileio

    def failing(path, data):
        raise OSError(err, os.strerror(err), str(path))

    original = fileio.atomic_write_bytes
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("stellar") and getattr(module, "atomic_write_bytes", None) is original:
            monkeypatch.setattr(module, "atomic_write_bytes", failing)
    return errno


@pytest.mark.parametrize("argv", [["evaluate", "--batch-size", "0"], ["evaluate", "--workers", "-1"], ["evaluate", "--seeds", "0"], ["faces", "detect", "--batch-size", "0"], ["jobs", "export", "--seeds", "0"]])
def test_batch_size_zero_and_other_non_positive_counts_are_usage_errors(synthetic, tmp_path, capsys, argv):
    base = {"evaluate": ["--dataset", str(synthetic), "--generated", str(tmp_path), "--out", str(tmp_path / "run")], "faces": [str(tmp_path / "x.png")], "jobs": ["--dataset", str(synthetic)]}
    with pytest.raises(SystemExit) as info:
        main([*argv, *base[argv[0]]])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[-2]}: must be ≥" in err and "Traceback" not in err


def test_out_an_existing_file_is_one_message_naming_it(synthetic, tmp_path, capsys):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    fill(gen, ds.jobs("test"))
    (tmp_path / "afile").write_text("notes")
    assert evaluate_without_models(synthetic, gen, tmp_path / "afile") == 2
    assert f"{tmp_path / 'afile'}: is a file, not a run directory" in one_error(capsys)
    assert (tmp_path / "afile").read_text() == "notes"
    assert main(["jobs", "export", "--dataset", str(synthetic), "--out", str(tmp_path / "afile" / "jobs.jsonl")]) == 1  # a file in place of a folder
    assert "a file stands where a folder is needed" in one_error(capsys)


@pytest.mark.parametrize("name,data", [("run.json", b"{truncated"), ("summary.json", b"[1, 2]"), ("per_image.parquet", b"PAR1 not really")])
def test_corrupt_run_files_are_named_not_a_traceback(complete_run, capsys, name, data):
    gen, out = complete_run
    (out / name).write_bytes(data)
    assert main(["report", str(out)]) == 1
    err = one_error(capsys)
    assert f"{out / name}: corrupt" in err and "fix: move" in err


def test_corrupt_part_file_or_run_json_stops_a_resume_with_its_name(complete_run, synthetic, capsys):
    gen, out = complete_run
    part = next((out / "parts").glob("*/*.parquet"))
    part.write_bytes(part.read_bytes()[:40])  # truncated
    assert evaluate_without_models(synthetic, gen, out) == 1
    assert f"{part}: corrupt Parquet table" in one_error(capsys)
    (out / "run.json").write_text("")
    assert evaluate_without_models(synthetic, gen, out) == 1
    assert f"{out / 'run.json'}: corrupt results file" in one_error(capsys)


def test_full_disk_is_one_message_naming_the_file(synthetic, tmp_path, capsys, monkeypatch):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    fill(gen, ds.jobs("test"))
    errno = disk_fails(monkeypatch, 28)  # ENOSPC
    assert errno.ENOSPC == 28
    assert evaluate_without_models(synthetic, gen, tmp_path / "run") == 1
    err = one_error(capsys)
    assert str(tmp_path / "run") in err and "No space left on device" in err and "the disk is full" in err


def test_read_only_output_is_one_message_naming_the_file(complete_run, tmp_path, capsys, monkeypatch):
    _, out = complete_run
    disk_fails(monkeypatch, 30)  # EROFS (tests run as root, where chmod does not stop writes)
    assert main(["report", str(out), "--out", str(tmp_path / "table.md")]) == 1
    err = one_error(capsys)
    assert f"{tmp_path / 'table.md'}: Read-only file system" in err and "write the output to a writable folder" in err


def test_non_utf8_names_in_a_generated_set_and_as_arguments(synthetic, tmp_path, capsys):
    import os

    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    fill(gen, ds.jobs("test"))
    Image.new("RGB", (8, 8)).save(os.fsdecode(os.fsencode(gen) + b"/caf\xe9.png"))
    assert evaluate_without_models(synthetic, gen, tmp_path / "run") == 0
    assert "caf\\xe9.png" in capsys.readouterr().err
    run = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    assert any("caf\\xe9.png" in p["path"] for p in run["match_problems"])
    latin = os.fsdecode(os.fsencode(tmp_path) + b"/g\xe9n")
    os.rename(gen, latin)
    assert evaluate_without_models(synthetic, latin, tmp_path / "run2") == 2
    assert "g\\xe9n: the generated argument is not valid UTF-8" in one_error(capsys)


def test_non_utf8_names_and_symlink_loops_in_dataset_import(tmp_path, capsys):
    import os

    people = tmp_path / "people"
    for who in ("ann", "bob"):
        (people / who).mkdir(parents=True)
        for k in range(2):
            noise((300, 300), seed=k).save(people / who / f"{k}.jpg")
    os.symlink(people / "ann", people / "ann" / "loop")  # a folder linking to itself
    os.symlink(people / "self", people / "self")  # a link to itself
    os.symlink(people / "bob" / "x.jpg", people / "bob" / "x.jpg")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("{} riding a horse\n")
    assert main(["dataset", "import", "--subjects", str(people), "--prompts", str(prompts), "--out", str(tmp_path / "ds")]) == 0
    printed = capsys.readouterr().out
    assert f"{people / 'self'}: symbolic link that loops or points nowhere" in printed
    assert f"{people / 'bob' / 'x.jpg'}: symbolic link that loops or points nowhere" in printed
    assert len(StellarDataset(tmp_path / "ds").subjects) == 2
    noise((300, 300)).save(os.fsdecode(os.fsencode(people) + b"/ann/caf\xe9.jpg"))
    assert main(["dataset", "import", "--subjects", str(people), "--prompts", str(prompts), "--out", str(tmp_path / "ds2")]) == 2
    err = one_error(capsys)
    assert "ann/caf\\xe9.jpg: name is not valid UTF-8" in err and "rename it" in err and not (tmp_path / "ds2").exists()


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(synthetic, capsys, monkeypatch):
    import stellar.data.dataset as dataset_module

    def broken(self, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(dataset_module.StellarDataset, "summary", broken)
    assert main(["dataset", "check", str(synthetic), "--no-decode"]) == 1
    err = one_error(capsys)
    assert "internal error: ValueError: boom" in err and "--debug" in err
    assert main(["--debug", "dataset", "check", str(synthetic), "--no-decode"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().endswith("report it with that traceback")


def test_sidecar_prompt_filled_with_any_subject_token_is_matched_by_image_path(synthetic, tmp_path):
    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    gen.mkdir()
    jobs = ds.jobs("test", kinds=("H",))
    for k, j in enumerate(jobs):
        Image.new("RGB", (8, 8)).save(gen / f"img_{k:04d}.png")
        sidecar(gen, f"img_{k:04d}", prompt=j.prompt.fill("a  SKS person"), image_path=f"{j.subject}/{j.photo.index}.jpg")
    gs = GeneratedSet(gen, ds, kinds=("H",))
    assert not [p for p in gs.problems() if p.severity == "error"]
    assert [gs.report.matched[j.name].path.name for j in jobs] == [f"img_{k:04d}.png" for k in range(len(jobs))]


@pytest.mark.parametrize("where", ["dataset", "dataset/sub", "generated"])
def test_evaluate_out_inside_an_input_folder_is_refused(synthetic, tmp_path, capsys, where):
    """`--out` = the dataset (or inside it, or the generated set) wrote run files into the input and
    changed its fingerprint; it is refused before anything is read or written."""
    gen = tmp_path / "generated"
    gen.mkdir()
    out = {"dataset": synthetic, "dataset/sub": synthetic / "sub", "generated": gen}[where]
    before = sorted(p.name for p in out.parent.iterdir()) if out.exists() else None
    code = main(["evaluate", "--dataset", str(synthetic), "--generated", str(gen), "--out", str(out), "--faces", "offline", "--clip", "none", "--force"])
    err = capsys.readouterr().err
    assert code == 2
    assert "inside --" in err and "fix:" in err
    assert not (out / "run.json").exists() and not (out / "parts").exists()
    if before is not None:
        assert sorted(p.name for p in out.parent.iterdir()) == before
