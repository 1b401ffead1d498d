import json

import pytest

from stellar.data import StellarDataset
from stellar.data.dataset import load_mask
from stellar.data.layout import job_name, parse_job_name
from stellar.errors import DatasetError


def test_loads_subjects_photos_prompts_and_splits(synthetic):
    ds = StellarDataset(synthetic)
    assert list(ds.subjects) == ["000", "001", "002", "200", "201"]
    assert [s.split for s in ds.subjects.values()] == ["test"] * 3 + ["val"] * 2
    s = ds.subject("001")
    assert [p.index for p in s.photos] == [0, 1]
    assert s.photos[0].attributes["Young"] in (1, -1) and len(s.photos[0].attributes) == 40
    assert [p.kind for p in s.prompts] == ["T"] * 4 + ["H"] * 2
    assert [p.index for p in s.prompts] == list(range(6))
    assert s.prompts[0].detectables == ("horse", "jungle")
    assert s.prompts[0].fill() == "a person riding a horse in the jungle"
    assert ds.subject("200").prompts_of("H") == ()


def test_jobs_official_order_names_and_counts(synthetic):
    ds = StellarDataset(synthetic)
    jobs = ds.jobs("test")
    assert len(jobs) == 3 * 2 * 6
    assert [j.name for j in jobs[:7]] == ["000-0-00", "000-0-01", "000-0-02", "000-0-03", "000-0-04", "000-0-05", "000-1-00"]
    assert len(ds.jobs("val")) == 2 * 2 * 4
    h = ds.jobs("test", kinds=("H",))
    assert {j.prompt.index for j in h} == {4, 5} and h[0].name == "000-0-04"
    seeded = ds.jobs("test", kinds=("T",), seeds=3)
    assert len(seeded) == 3 * 2 * 4 * 3 and seeded[1].name == "000-0-00-s1"
    assert len(ds.jobs("all")) == len(jobs) + 16


def test_job_name_round_trip_and_padding():
    assert job_name("000", 1, 7) == "000-1-07"
    assert job_name("000", 1, 123) == "000-1-123"
    p = parse_job_name("012-1-07-s3")
    assert (p.subject, p.photo, p.prompt, p.seed) == ("012", 1, 7, 3)
    assert parse_job_name("../000-1-07") is None


def test_mask_subject_is_value_above_zero_and_resizes(synthetic):
    ds = StellarDataset(synthetic)
    photo = ds.subject("000").photos[0]
    m = load_mask(photo)
    assert m.dtype == bool and m.shape == (128, 128) and 0 < m.mean() < 1
    big = load_mask(photo, size=(256, 256))
    assert big.shape == (256, 256) and abs(big.mean() - m.mean()) < 0.02


def test_absent_mask_is_whole_image(synthetic):
    (synthetic / "000" / "0_bg.png").unlink()
    ds = StellarDataset(synthetic)
    photo = ds.subject("000").photos[0]
    assert photo.mask_path is None and load_mask(photo).all()


def test_fingerprint_stable_and_content_sensitive(synthetic, tmp_path):
    import shutil

    a = StellarDataset(synthetic).fingerprint()
    copy = tmp_path / "copy"
    shutil.copytree(synthetic, copy)
    assert StellarDataset(copy).fingerprint() == a
    p = copy / "001" / "prompts_t.json"
    data = json.loads(p.read_text())
    data["prompts"][0] = "{} riding a camel in the desert"
    p.write_text(json.dumps(data))
    assert StellarDataset(copy).fingerprint() != a


def test_only_aps_attributes_is_valid(synthetic):
    from stellar.data.layout import APS_ATTRIBUTES

    p = synthetic / "000" / "0_attributes.json"
    p.write_text(json.dumps({"attributes": {a: 1 for a in APS_ATTRIBUTES}}))
    ds = StellarDataset(synthetic)
    assert set(ds.subject("000").photos[0].attributes) == set(APS_ATTRIBUTES)


def test_non_numeric_subjects_are_all_test(tmp_path):
    from stellar.testing import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "d", 2, first_id=250)
    (root / "250").rename(root / "alice")
    (root / "251").rename(root / "bob")
    ds = StellarDataset(root)
    assert [s.split for s in ds.subjects.values()] == ["test", "test"]
    # they were val-range templates (no H prompts) - jobs come from T only
    assert ds.jobs("test")[0].name == "alice-0-00"


def test_strict_load_raises_with_every_error_named(synthetic):
    (synthetic / "001" / "prompts_t.json").write_text("{not json")
    (synthetic / "002" / "0_attributes.json").write_text(json.dumps({"attributes": {"Young": 1}}))
    with pytest.raises(DatasetError) as info:
        StellarDataset(synthetic)
    text = str(info.value)
    assert "001/prompts_t.json" in text and "invalid JSON" in text
    assert "002/0_attributes.json" in text and "Male" in text
    assert "stellar dataset check" in text


def test_seed_suffix_beyond_the_seed_count_is_not_matched(synthetic, tmp_path):
    from PIL import Image

    from stellar.data import GeneratedSet

    ds = StellarDataset(synthetic)
    gen = tmp_path / "gen"
    gen.mkdir()
    Image.new("RGB", (8, 8)).save(gen / "000-0-00-s3.png")
    gs = GeneratedSet(gen, ds, seeds=1)
    assert len(gs) == 0 and gs.report.unmatched[0][0].name == "000-0-00-s3.png"
    assert len(GeneratedSet(gen, ds, seeds=4)) == 1
