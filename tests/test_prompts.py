"""Relation triplets (``stellar.data.prompts``) and ``stellar prompts triplets``.

The accuracy table below was written by hand, as a person annotating relations would (subject
always "person"; the object is the detectable as given; locations attach to the person), without
tuning each row to the extractor. The measured numbers are printed (run with ``-s``) and written to
the junit/terminal report via ``record_property``; the thresholds are justified where they are asserted.
"""

from __future__ import annotations

import json
import random
import string

import pytest

from stellar.cli import main
from stellar.data.dataset import Prompt, StellarDataset
from stellar.data.prompts import (
    PREDICATES,
    ROLE_WORDS,
    extract_triplets,
    is_role_word,
    predicate_vocabulary,
    resolve_triplets,
)
from stellar.data.samples import DEMO_T_PROMPTS

P = "person"

# (template, detectables, expected triplets as (predicate, object))
T_TABLE: list[tuple[str, list[str], list[tuple[str, str]]]] = [
    ("{} riding a horse in the jungle", ["horse", "jungle"], [("riding", "horse"), ("in", "jungle")]),
    ("{} as an astronaut on the moon", ["astronaut", "moon"], [("on", "moon")]),
    ("{} as a doctor in a hospital", ["doctor", "hospital"], [("in", "hospital")]),
    ("{} as a firefighter standing in front of a fire truck", ["firefighter", "fire truck"], [("in front of", "fire truck")]),
    ("{} holding an umbrella next to a car", ["umbrella", "car"], [("holding", "umbrella"), ("next to", "car")]),
    ("{} eating a pizza at the beach", ["pizza", "beach"], [("eating", "pizza"), ("at", "beach")]),
    ("{} sitting on top of a car", ["car"], [("on top of", "car")]),
    ("{} standing next to a giraffe", ["giraffe"], [("next to", "giraffe")]),
    ("{} wearing a red scarf in the snow", ["scarf", "snow"], [("wearing", "scarf"), ("in", "snow")]),
    ("{} playing with a puppy in a garden", ["puppy", "garden"], [("playing with", "puppy"), ("in", "garden")]),
    ("{} playing chess with a robot", ["chess", "robot"], [("playing", "chess"), ("with", "robot")]),
    ("{} feeding ducks at a pond", ["duck", "pond"], [("feeding", "duck"), ("at", "pond")]),
    ("{} surrounded by balloons", ["balloon"], [("surrounded by", "balloon")]),
    ("{} drinking a cup of tea in a cafe", ["cup", "cafe"], [("drinking", "cup"), ("in", "cafe")]),
    ("{} drinking a cup of tea in a cafe", ["tea", "cafe"], [("drinking", "tea"), ("in", "cafe")]),
    ("{} flying a kite on a hill", ["kite", "hill"], [("flying", "kite"), ("on", "hill")]),
    ("{} in a hot air balloon over the mountains", ["hot air balloon", "mountain"], [("in", "hot air balloon"), ("over", "mountain")]),
    ("{} in a hot-air balloon above a city", ["hot air balloon", "city"], [("in", "hot air balloon"), ("above", "city")]),
    ("{} standing in a field of sunflowers", ["sunflower"], [("standing in", "sunflower")]),
    ("{} lying on a couch with a laptop", ["couch", "laptop"], [("lying on", "couch"), ("with", "laptop")]),
    ("{} leaning against a wall", ["wall"], [("leaning against", "wall")]),
    ("{} carrying a backpack through a forest", ["backpack", "forest"], [("carrying", "backpack"), ("through", "forest")]),
    ("{} driving a red convertible along the coast", ["convertible", "coast"], [("driving", "convertible"), ("along", "coast")]),
    ("{} Swimming with dolphins in the ocean.", ["dolphin", "ocean"], [("swimming with", "dolphin"), ("in", "ocean")]),
    ("{}   holding  a  baby   goat", ["goat"], [("holding", "goat")]),
    ("{} behind a counter in a bakery", ["counter", "bakery"], [("behind", "counter"), ("in", "bakery")]),
    ("{} under an umbrella in the rain", ["umbrella", "rain"], [("under", "umbrella"), ("in", "rain")]),
    ("{} walking on a beach with a dog", ["beach", "dog"], [("walking on", "beach"), ("with", "dog")]),
    ("{} throwing a frisbee to a dog", ["frisbee", "dog"], [("throwing", "frisbee"), ("to", "dog")]),
    ("{} as a chef cooking in a kitchen", ["kitchen"], [("cooking in", "kitchen")]),
    ("{} as a knight on a horse holding a sword", ["knight", "horse", "sword"], [("on", "horse"), ("holding", "sword")]),
    ("{} as a wizard holding a wand", ["wizard", "wand"], [("holding", "wand")]),
    ("{} as a pilot in a cockpit", ["pilot", "cockpit"], [("in", "cockpit")]),
    ("{} as a clown juggling balls", ["clown", "ball"], [("juggling", "ball")]),
    ("{} as a sumo fighter in an arena", ["sumo fighter", "arena"], [("in", "arena")]),
    ("{} as an Egyptian pharaoh next to a pyramid", ["egyptian pharaoh", "pyramid"], [("next to", "pyramid")]),
    ("{} eating a burger and fries", ["burger", "fries"], [("eating", "burger"), ("eating", "fries")]),
    ("{} holding a cat and a dog", ["cat", "dog"], [("holding", "cat"), ("holding", "dog")]),
    ("{} wearing sunglasses and a hat", ["sunglasses", "hat"], [("wearing", "sunglasses"), ("wearing", "hat")]),
    ("{} reading a newspaper on a train", ["newspaper", "train"], [("reading", "newspaper"), ("on", "train")]),
    ("{} in front of the Eiffel Tower", ["Eiffel Tower"], [("in front of", "eiffel tower")]),
    ("{} next to a Christmas tree holding a gift", ["christmas tree", "gift"], [("next to", "christmas tree"), ("holding", "gift")]),
    ("{} riding horses on a ranch", ["horse", "ranch"], [("riding", "horse"), ("on", "ranch")]),
    ("{} with a parrot on their shoulder", ["parrot"], [("with", "parrot")]),
    ("{} pushing a shopping cart in a supermarket", ["shopping cart", "supermarket"], [("pushing", "shopping cart"), ("in", "supermarket")]),
    ("{} sitting at a table with a laptop", ["table", "laptop"], [("sitting at", "table"), ("with", "laptop")]),
    ("{} looking at a painting in a museum", ["painting", "museum"], [("looking at", "painting"), ("in", "museum")]),
    ("{} kicking a soccer ball on a field", ["soccer ball", "field"], [("kicking", "soccer ball"), ("on", "field")]),
    ("{} playing the piano in a concert hall", ["piano", "concert hall"], [("playing", "piano"), ("in", "concert hall")]),
    ("{} hugging a teddy bear", ["teddy bear"], [("hugging", "teddy bear")]),
    ("{} petting a cat on a sofa", ["cat", "sofa"], [("petting", "cat"), ("on", "sofa")]),
    ("{} holding a knife and cutting vegetables", ["knife", "vegetable"], [("holding", "knife"), ("cutting", "vegetable")]),
    ("{} skiing down a snowy mountain", ["mountain"], [("skiing down", "mountain")]),
    ("{} climbing a tree", ["tree"], [("climbing", "tree")]),
    ("{} between two horses", ["horse"], [("between", "horse")]),
    ("{} on a boat near an island", ["boat", "island"], [("on", "boat"), ("near", "island")]),
    ("{} inside a car", ["car"], [("inside", "car")]),
    ("{} carrying boxes into a house", ["box", "house"], [("carrying", "box"), ("into", "house")]),
    ("{} holding knives", ["knife"], [("holding", "knife")]),
    ("{} wearing a T-shirt", ["t-shirt"], [("wearing", "t-shirt")]),
    ("{} rides a bike in the park", ["bike", "park"], [("riding", "bike"), ("in", "park")]),
    ("{} sitting in a firetruck", ["fire truck"], [("sitting in", "fire truck")]),
    ("{} talking to a police officer on the street", ["police officer", "street"], [("talking to", "police officer"), ("on", "street")]),
    ("{} posing next to a doctor", ["doctor"], [("next to", "doctor")]),
    ("{} dressed as a cowboy riding a bull", ["cowboy", "bull"], [("riding", "bull")]),
    ("{} wearing a cowboy hat", ["cowboy hat"], [("wearing", "cowboy hat")]),
    ("{} with a glass of wine at a restaurant", ["glass", "restaurant"], [("with", "glass"), ("at", "restaurant")]),
    ("{} sitting on a chair in front of a fireplace", ["chair", "fireplace"], [("sitting on", "chair"), ("in front of", "fireplace")]),
    ("{} holding an apple", ["apple"], [("holding", "apple")]),
    ("{} sleeping in a tent under the stars", ["tent", "star"], [("sleeping in", "tent"), ("under", "star")]),
    ("{} happily walking a dog along a river", ["dog", "river"], [("walking", "dog"), ("along", "river")]),
    ("{} standing in the middle of a desert", ["desert"], [("in the middle of", "desert")]),
    ("{} jumping over a fence", ["fence"], [("jumping over", "fence")]),
    ("{} waiting for a bus at a bus stop", ["bus", "bus stop"], [("waiting for", "bus"), ("at", "bus stop")]),
    # Held out: written after the rules were frozen; measured once before any change (see the module docstring).
    ("{} as a scientist in a laboratory looking through a microscope", ["scientist", "laboratory", "microscope"], [("in", "laboratory"), ("looking through", "microscope")]),
    ("{} as a soldier standing beside a tank", ["soldier", "tank"], [("beside", "tank")]),
    ("{} holding a bouquet of flowers in a garden", ["bouquet", "garden"], [("holding", "bouquet"), ("in", "garden")]),
    ("{} wearing headphones on a subway train", ["headphones", "subway train"], [("wearing", "headphones"), ("on", "subway train")]),
    ("{} sitting by a campfire with a guitar", ["campfire", "guitar"], [("sitting by", "campfire"), ("with", "guitar")]),
    ("{} running on a treadmill in a gym", ["treadmill", "gym"], [("running on", "treadmill"), ("in", "gym")]),
    ("{} eating noodles with chopsticks", ["noodles", "chopsticks"], [("eating", "noodles"), ("with", "chopsticks")]),
    ("{} as an astronaut floating next to a satellite", ["astronaut", "satellite"], [("next to", "satellite")]),
    ("{} fishing from a boat on a lake", ["boat", "lake"], [("fishing from", "boat"), ("on", "lake")]),
    ("{} holding a smartphone in front of a mirror", ["smartphone", "mirror"], [("holding", "smartphone"), ("in front of", "mirror")]),
    ("{} riding an elephant across a river", ["elephant", "river"], [("riding", "elephant"), ("across", "river")]),
    ("{} sitting on a camel in the desert", ["camel", "desert"], [("sitting on", "camel"), ("in", "desert")]),
    ("{} as a king sitting on a throne", ["king", "throne"], [("sitting on", "throne")]),
    ("{} opening a present next to a fireplace", ["present", "fireplace"], [("opening", "present"), ("next to", "fireplace")]),
    ("{} brushing a horse in a stable", ["horse", "stable"], [("brushing", "horse"), ("in", "stable")]),
    ("{} with a backpack on top of a mountain", ["backpack", "mountain"], [("with", "backpack"), ("on top of", "mountain")]),
    ("{} writing on a chalkboard in a classroom", ["chalkboard", "classroom"], [("writing on", "chalkboard"), ("in", "classroom")]),
    ("{} near a waterfall holding a camera", ["waterfall", "camera"], [("near", "waterfall"), ("holding", "camera")]),
    ("{} as a cop next to a police car", ["cop", "police car"], [("next to", "police car")]),
    ("{} wearing a helmet and riding a motorcycle", ["helmet", "motorcycle"], [("wearing", "helmet"), ("riding", "motorcycle")]),
]  # fmt: skip

# Stellar-H-like free text: (prompt, expected triplets as (predicate, object)).
H_TABLE: list[tuple[str, list[tuple[str, str]]]] = [
    ("a candid photo of {} laughing with friends at a birthday party", [("laughing with", "friends"), ("at", "birthday party")]),
    ("{} standing on a mountain summit at sunrise, wind in their hair", [("standing on", "mountain summit")]),
    ("an oil painting of {} in the style of the Dutch masters", []),
    ("a portrait of {} smiling at sunset", []),
    ("{} reading a book in a cosy library", [("reading", "book"), ("in", "library")]),
    ("{} is walking a golden retriever through a busy street.", [("walking", "golden retriever"), ("through", "street")]),
    ("Photo of {}, holding a sign that says hello, in Times Square", [("holding", "sign"), ("in", "times square")]),
    ("{} wearing a tuxedo and dancing with a partner in a ballroom", [("wearing", "tuxedo"), ("dancing with", "partner"), ("in", "ballroom")]),
    ("A black and white photo of {} sitting on a bench", [("sitting on", "bench")]),
    ("{} surfing a huge wave", [("surfing", "wave")]),
    ("{} as a superhero flying over a city at night", [("flying over", "city")]),
    ("a close-up of {}'s face with freckles", []),
    ("{} holding a bouquet of roses at a wedding", [("holding", "bouquet"), ("at", "wedding")]),
    ("{} in a spacesuit floating above the earth", [("in", "spacesuit"), ("floating above", "earth")]),
    ("a watercolor of {} feeding pigeons in a square in Venice", [("feeding", "pigeons"), ("in", "square")]),
    ("{} with a group of friends around a campfire", [("with", "friends"), ("around", "campfire")]),
    # Held out (as above).
    ("{} walking a dog down a rainy street in Paris", [("walking", "dog"), ("down", "street")]),
    ("a selfie of {} at the top of the Empire State Building", [("on top of", "empire state building")]),
    ("{} sipping coffee on a balcony overlooking the sea", [("sipping", "coffee"), ("on", "balcony")]),
    ("{} practicing yoga on a mat by the ocean", [("practicing", "yoga"), ("on", "mat"), ("by", "ocean")]),
    ("an anime drawing of {} fighting a dragon", [("fighting", "dragon")]),
    ("{} in a kayak paddling through a canyon", [("in", "kayak"), ("paddling through", "canyon")]),
]  # fmt: skip


def _expected(rows):
    return [(P, p, o) for p, o in rows]


def _scores(pairs):
    exact = sum(1 for got, want in pairs if got == want)
    tp = sum(len(set(got) & set(want)) for got, want in pairs)
    n_got = sum(len(got) for got, _ in pairs)
    n_want = sum(len(want) for _, want in pairs)
    return exact / len(pairs), tp / max(n_got, 1), tp / max(n_want, 1)


# ------------------------------------------------------------------ accuracy over the tables
def test_table_sizes():
    assert len(T_TABLE) >= 40 and len(H_TABLE) >= 8


def test_accuracy_on_stellar_t_table(record_property):
    pairs = [(extract_triplets(t, d), _expected(e)) for t, d, e in T_TABLE]
    exact, precision, recall = _scores(pairs)
    wrong = [(t, got) for (t, _, _), (got, want) in zip(T_TABLE, pairs) if got != want]
    print(f"\nStellar-T table: {len(T_TABLE)} prompts, exact {exact:.3f}, triplet precision {precision:.3f}, recall {recall:.3f}")
    for t, got in wrong:
        print(f"  differs: {t!r} -> {got}")
    record_property("t_exact", exact)
    record_property("t_precision", precision)
    record_property("t_recall", recall)
    # Templates are regular (subject, verb/preposition, object, location): a rule set that covers the
    # shapes must get nearly all of them; 90% leaves room for the odd shape without hiding a regression
    # (one broken rule — plurals, compounds, role words, coordination — costs > 10% of the rows).
    assert exact >= 0.90, wrong
    assert precision >= 0.95 and recall >= 0.90


def test_accuracy_on_stellar_h_table(record_property):
    pairs = [(extract_triplets(t), _expected(e)) for t, e in H_TABLE]
    exact, precision, recall = _scores(pairs)
    wrong = [(t, got) for (t, _), (got, want) in zip(H_TABLE, pairs) if got != want]
    print(f"\nStellar-H table: {len(H_TABLE)} prompts, exact {exact:.3f}, triplet precision {precision:.3f}, recall {recall:.3f}")
    for t, got in wrong:
        print(f"  differs: {t!r} -> {got}")
    record_property("h_exact", exact)
    record_property("h_precision", precision)
    record_property("h_recall", recall)
    # Free text: precision matters most (a wrong triplet lowers RFS of a correct image); recall may be
    # lower by design ("fewer, right triplets").
    assert precision >= 0.85, wrong
    assert recall >= 0.70 and exact >= 0.60, wrong


def test_demo_dataset_triplets_are_reproduced_exactly():
    for template, detectables, _, annotated in DEMO_T_PROMPTS:
        assert extract_triplets(template, detectables) == list(annotated), template


def test_demo_dataset_on_disk_reproduced(demo_dataset):
    ds = StellarDataset(demo_dataset)
    prompts = [p for s in ds.subjects.values() for p in s.prompts if p.kind == "T"]
    assert prompts and all(p.triplets is not None for p in prompts)
    for p in prompts:
        assert tuple(extract_triplets(p.template, p.detectables)) == p.triplets


# ------------------------------------------------------------------ rules
def test_issue_example():
    assert extract_triplets("{} riding a horse in the jungle", ["horse", "jungle"]) == [(P, "riding", "horse"), (P, "in", "jungle")]


@pytest.mark.parametrize("role", ROLE_WORDS)
def test_role_words_naming_the_subject_are_skipped(role):
    assert extract_triplets(f"{{}} as a {role} on a boat", [role, "boat"]) == [(P, "on", "boat")]
    assert extract_triplets(f"{{}} as a {role.upper()} on a boat", [role, "boat"]) == [(P, "on", "boat")]


def test_role_word_elsewhere_is_an_object():
    assert extract_triplets("{} shaking hands with a doctor", ["doctor"]) == [(P, "with", "doctor")]
    assert extract_triplets("{} on a boat as a captain", ["boat", "captain"]) == [(P, "on", "boat")]


def test_role_words_constant():
    assert len(ROLE_WORDS) == 24 and "sumo fighter" in ROLE_WORDS and "dj" in ROLE_WORDS
    assert is_role_word("DJ") and is_role_word(" Egyptian  Pharaoh ") and is_role_word("clowns")
    assert not is_role_word("cowboy hat") and not is_role_word("horse") and not is_role_word(None)


@pytest.mark.parametrize("template, detectables, _", [(t, d, e) for t, d, e in T_TABLE[:30]] + [(t, d, None) for t, d, _, _ in DEMO_T_PROMPTS])
def test_filled_prompt_equals_template(template, detectables, _):
    want = extract_triplets(template, detectables)
    assert want, template
    for token in ("a person", "the person", "A Person"):
        assert extract_triplets(template.replace("{}", token), detectables) == want


def test_detectable_forms():
    assert extract_triplets("{} riding horses", ["horse"]) == [(P, "riding", "horse")]
    assert extract_triplets("{} riding a horse", ["horses"]) == [(P, "riding", "horses")]
    assert extract_triplets("{} in a hot-air balloon", ["Hot Air  Balloon"]) == [(P, "in", "hot air balloon")]
    assert extract_triplets("{} holding knives", ["knife"]) == [(P, "holding", "knife")]
    # The longer detectable claims its words: "hat" is not read inside "cowboy hat".
    assert extract_triplets("{} wearing a cowboy hat next to a hat", ["hat", "cowboy hat"]) == [
        (P, "wearing", "cowboy hat"),
        (P, "next to", "hat"),
    ]


def test_detectable_not_in_prompt_or_without_predicate_gives_no_triplet():
    assert extract_triplets("{} riding a horse", ["horse", "zebra"]) == [(P, "riding", "horse")]
    assert extract_triplets("{} horse", ["horse"]) == []


def test_compound_preposition_beats_the_verb_but_simple_ones_join_it():
    assert extract_triplets("{} sitting next to a dog", ["dog"]) == [(P, "next to", "dog")]
    assert extract_triplets("{} sitting on a dog", ["dog"]) == [(P, "sitting on", "dog")]
    assert extract_triplets("{} sitting quietly on a bench", ["bench"]) == [(P, "sitting on", "bench")]


@pytest.mark.parametrize("bad", [None, 3, "", "   ", "{}", "{} {} {}", "!!!", "{} as a", "person", b"{} x", ["{}"]])
def test_odd_input_never_raises(bad):
    assert extract_triplets(bad, ["horse"]) == []  # no detectable in it, or not text at all
    assert extract_triplets(bad) == []


def test_odd_detectables():
    assert extract_triplets("{} riding a horse", [None, 3, "", "horse"]) == [(P, "riding", "horse")]
    assert extract_triplets("{} riding a horse", "horse") == [(P, "riding", "horse")]  # one string = one detectable
    assert extract_triplets("{} riding a horse", None) == extract_triplets("{} riding a horse")  # = Stellar-H rules
    assert extract_triplets("{} riding a horse", 5) == extract_triplets("{} riding a horse")  # unusable: free-text rules


def test_fuzz_random_text_never_raises():
    rng = random.Random(0)
    words = ["{}", "a", "the", "of", "in", "front", "next", "to", "riding", "as", ",", ".", "horse", "'s", "-", "and", "on", "top"]
    for _ in range(500):
        text = " ".join(rng.choice(words + list(string.punctuation)) for _ in range(rng.randint(0, 12)))
        det = rng.sample(["horse", "top", "front", "a", "of", "clown"], rng.randint(0, 3))
        out = extract_triplets(text, det)
        assert all(len(t) == 3 and t[0] == P and all(isinstance(x, str) and x for x in t) for t in out)


def test_deterministic_and_fast():
    import time

    t0 = time.perf_counter()
    for _ in range(20):
        results = [extract_triplets(t, d) for t, d, _ in T_TABLE] + [extract_triplets(t) for t, _ in H_TABLE]
    per_prompt = (time.perf_counter() - t0) / (20 * (len(T_TABLE) + len(H_TABLE)))
    assert results == [extract_triplets(t, d) for t, d, _ in T_TABLE] + [extract_triplets(t) for t, _ in H_TABLE]
    assert per_prompt < 2e-3  # 20k prompts of the full dataset in well under a minute


# ------------------------------------------------------------------ vocabulary and precedence
def test_predicates_vocabulary():
    assert 30 <= len(PREDICATES) <= 80 and len(set(PREDICATES)) == len(PREDICATES)
    demo_predicates = {p for *_, ts in DEMO_T_PROMPTS for _, p, _ in ts}
    assert demo_predicates <= set(PREDICATES)
    vocab = predicate_vocabulary([("person", "Juggling ", "ball"), [("person", "riding", "horse")], "junk", (1, 2)])
    assert vocab == sorted(set(PREDICATES) | {"juggling"})
    assert predicate_vocabulary() == sorted(PREDICATES)


def _prompt(template, detectables=(), triplets=None):
    return Prompt(subject="000", index=0, kind="T", kind_index=0, template=template, detectables=tuple(detectables), triplets=triplets)


def test_annotated_triplets_take_precedence():
    annotated = (("person", "next to", "horse"),)
    assert resolve_triplets(_prompt("{} riding a horse", ["horse"], annotated)) == annotated
    assert resolve_triplets(_prompt("{} riding a horse", ["horse"], ())) == ()  # annotated as none
    assert resolve_triplets(_prompt("{} riding a horse", ["horse"])) == ((P, "riding", "horse"),)


def test_resolve_on_a_dataset_without_annotations(synthetic):
    ds = StellarDataset(synthetic)
    t = [p for s in ds.subjects.values() for p in s.prompts if p.kind == "T"]
    assert all(p.triplets is None for p in t)
    resolved = {p.template: resolve_triplets(p) for p in t}
    assert resolved["{} as a doctor in a hospital"] == ((P, "in", "hospital"),)
    assert resolved["{} holding an umbrella next to a car"] == ((P, "holding", "umbrella"), (P, "next to", "car"))


# ------------------------------------------------------------------ CLI
def test_cli_text(capsys):
    assert main(["prompts", "triplets", "{} riding a horse in the jungle", "--detectables", "horse,jungle"]) == 0
    assert json.loads(capsys.readouterr().out) == [["person", "riding", "horse"], ["person", "in", "jungle"]]
    assert main(["prompts", "triplets", "a person reading a book in a cosy library"]) == 0
    assert json.loads(capsys.readouterr().out) == [["person", "reading", "book"], ["person", "in", "library"]]


def test_cli_dataset(synthetic, capsys):
    assert main(["prompts", "triplets", "--dataset", str(synthetic), "--split", "all"]) == 0
    data = json.loads(capsys.readouterr().out)
    cov = data["coverage"]
    assert cov["prompts_T"] == 20 and cov["annotated"] == 0
    # "{} as a doctor in a hospital": doctor is a role word, not wanted; all four templates fully covered.
    assert cov["T_fully_covered"] == 20 and cov["objects_covered"] == cov["objects_wanted"] == 35
    first = data["prompts"][0]
    assert first["source"] == "extracted" and first["triplets"] == [["person", "riding", "horse"], ["person", "in", "jungle"]]
    assert main(["prompts", "triplets", "--dataset", str(synthetic), "--summary"]) == 0
    assert "prompts" not in json.loads(capsys.readouterr().out)


def test_cli_usage_errors(synthetic, capsys):
    assert main(["prompts", "triplets"]) == 2
    assert "give a prompt" in capsys.readouterr().err
    assert main(["prompts", "triplets", "x {}", "--dataset", str(synthetic)]) == 2
