"""Prompt utilities: relation triplets (subject, predicate, object) for RFS, the predicate vocabulary,
and the person-role words GOA skips (DESIGN §6.5, §6.6).

>>> extract_triplets("{} riding a horse in the jungle", ["horse", "jungle"])
[('person', 'riding', 'horse'), ('person', 'in', 'jungle')]
>>> extract_triplets("{} as an astronaut on the moon", ["astronaut", "moon"])
[('person', 'on', 'moon')]
>>> extract_triplets("a person reading a book in a cosy library")   # Stellar-H: no detectables
[('person', 'reading', 'book'), ('person', 'in', 'library')]

The extractor is rule based (no model, no download, deterministic, microseconds per prompt). The
paper defines RFS but never released how its triplets were obtained; these rules are our choice,
written down here so a number is reproducible from the code:

**Input.** A template (``{}`` = the subject) or a filled prompt (the subject is "a person", "the
person" or "person", as :func:`stellar.data.layout.fill_prompt` writes it); both give the same
triplets. Text is lower-cased, hyphens read as spaces ("hot-air balloon" = "hot air balloon"),
punctuation is kept only as clause marks. Anything that is not text gives ``[]``; nothing raises.

**Subject.** Always ``"person"``: every triplet relates the person to something (locations too, as
in the issue's example ``(person, in, jungle)``), because RFS grounds the person box and the object
box and scores the relation of that pair.

**Stellar-T (``detectables`` given).** Each detectable is located in the prompt after the subject
(word by word, tolerating regular and common irregular plurals in either direction — "horses" for
"horse", "knives" for "knife", "fries" for "fry" — and a compound written as one word, "firetruck"
for "fire truck"; longer detectables claim their words first so "cowboy hat" is not read as
"hat"). The object of the triplet is the detectable *as given* (lower case, single spaces), since
that is the label GOA's detector grounds. The predicate is read from the words between the
subject, or the previous detectable, and this one: the *last* predicate unit there, where a unit is

- a fixed multiword preposition, kept whole: "in front of", "next to", "on top of", "in the middle
  of", "close to", "far from", "out of", ... (:data:`_COMPOUND_PREPOSITIONS`);
- a verb, optionally with a particle and/or a simple preposition after it: "riding", "sitting on",
  "playing with", "standing in", "looking at", "skiing down". Verbs are gerunds (any ``-ing`` word
  of ≥ 5 letters outside a list of ``-ing`` nouns such as "building", "evening"), a few
  participles ("dressed in", "surrounded by", "seated at") and the finite forms of common verbs,
  which are normalised to the gerund ("rides" → "riding"). When a verb is followed by a multiword
  preposition, the preposition wins ("standing in front of" → "in front of"), because it is the
  spatial relation that a picture can show and the CLIP relation scorer can contrast;
- a simple preposition: "in", "on", "at", "under", "with", "behind", "along", "over", ...
  ("of" only inside the fixed phrases above: "a cup of coffee" joins cup and coffee).

Articles, determiners, possessives, numbers, adjectives and filler adverbs ("happily", "just") in
between are ignored. When the words between two detectables hold no unit but a conjunction ("a
burger and fries"), the second detectable takes the previous predicate. A detectable with no unit
before it, or not found after the subject, gives no triplet: fewer, right triplets beat many wrong
ones.

**Role words.** A detectable that names the subject itself is not an object and gives no triplet:
one right after "as", "dressed as", "is", "like" ... ("{} as a clown", "{} dressed as a pirate"), or
a role word of :data:`ROLE_WORDS` (DESIGN §6.5, the list GOA skips) placed right after the subject.
A role word elsewhere *is* an object ("{} standing next to a doctor" → ``(person, next to,
doctor)``). It still advances the anchor, so the next detectable's phrase starts after it
("{} as an astronaut on the moon" → ``(person, on, moon)``).

**Stellar-H (no detectables).** Starting at the subject, each predicate unit is followed by the
noun phrase after it (determiners and common adjectives dropped; "X of Y" gives Y for quantities
— "a group of friends" → "friends" — and X otherwise — "a cup of coffee" → "cup"). A triplet is
kept only when its object is a concrete, boxable thing of one to three words: times, weather,
styles, abstract words and body parts ("at sunset", "in the style of ...", "in their hair") are
dropped. The chain stops at the end of the sentence, at a relative clause ("that", "which",
"where": they describe the object, not the person) and at a comma not followed by a predicate
(", wind in their hair" has another subject). A possessive subject ("{}'s face") gives ``[]``.

Measured on the hand-written table of ``tests/test_prompts.py`` (numbers printed by that test).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

Triplet = tuple[str, str, str]

#: The subject of every triplet.
SUBJECT = "person"

#: Person-role words that name the subject itself (DESIGN §6.5): GOA never queries them, and the
#: triplet extractor never makes them the object of a relation when they name the subject.
ROLE_WORDS: tuple[str, ...] = (
    "clown", "businessman", "doctor", "nurse", "cop", "policeman", "firefighter", "fireman",
    "soldier", "captain", "admiral", "scientist", "knight", "dj", "egyptian pharaoh", "king",
    "emperor", "astronaut", "cowboy", "wizard", "pilot", "pope", "president", "sumo fighter",
)  # fmt: skip

#: Built-in predicate vocabulary: the alternatives the RFS relation scorer contrasts a triplet's
#: predicate with (softmax over "a person <predicate> a <object>"). Spatial relations first, then
#: actions. :func:`predicate_vocabulary` adds the predicates of a dataset's triplets.
PREDICATES: tuple[str, ...] = (
    # spatial
    "in", "on", "at", "under", "above", "below", "behind", "in front of", "next to", "near",
    "beside", "on top of", "inside", "outside", "along", "across", "through", "around", "between",
    "against", "over", "with", "by", "into", "far from", "in the middle of",
    # posture and motion
    "sitting on", "sitting in", "sitting at", "standing on", "standing in", "lying on",
    "leaning against", "walking on", "walking in", "swimming in", "climbing", "jumping over",
    # actions on objects
    "riding", "holding", "wearing", "eating", "drinking", "playing", "playing with", "reading",
    "cooking", "painting", "carrying", "driving", "feeding", "hugging", "petting", "looking at",
    "walking", "throwing", "catching", "kicking", "pushing", "pulling", "touching", "using",
    "flying", "talking to", "watching",
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Word classes (lower case). Kept small and explicit: each list is a rule of the module docstring.

_DETERMINERS = frozenset(
    "a an the this that these those his her their its my your our some any each every another "
    "one two three four five six seven eight nine ten several many few lots lot 's".split()
)
_FILLERS = frozenset(
    "is are was were be being been who just also still right together alone very really quite "
    "then now while and or but so as well there here".split()
)
_CONJUNCTIONS = frozenset({"and", "or", "plus", "&", ","})
_PARTICLES = ("up", "down", "off", "out", "away", "back")
_SIMPLE_PREPOSITIONS = frozenset(
    "in on at under above below beneath underneath behind beside besides near by with without "
    "along alongside across through into onto over around among amongst between against atop "
    "inside outside within toward towards to from past amid opposite upon for via up down".split()
)
#: Fixed multiword prepositions -> their canonical form (kept whole).
_COMPOUND_PREPOSITIONS: dict[tuple[str, ...], str] = {
    tuple(k.split()): v
    for k, v in {
        "in front of": "in front of", "in the front of": "in front of", "on top of": "on top of",
        "on the top of": "on top of", "at the top of": "on top of", "next to": "next to",
        "close to": "close to", "near to": "near", "far from": "far from", "far away from": "far from",
        "away from": "away from", "out of": "out of", "inside of": "inside", "outside of": "outside",
        "in back of": "behind", "at the back of": "behind", "by the side of": "beside",
        "on the side of": "beside", "in the middle of": "in the middle of", "in middle of": "in the middle of",
        "in the center of": "in the middle of", "in the centre of": "in the middle of",
        "at the foot of": "at the foot of", "on the edge of": "on the edge of", "at the edge of": "on the edge of",
        "in between": "between", "on board": "on", "on board of": "on", "aboard": "on",
        "surrounded by": "surrounded by",
    }.items()
}  # fmt: skip
_COMPOUND_KEYS = sorted(_COMPOUND_PREPOSITIONS, key=len, reverse=True)  # longest match first

#: Participles that take a preposition like a verb does ("dressed in", "surrounded by").
_PARTICIPLES = frozenset("dressed seated perched wrapped covered buried tangled trapped parked".split())
#: Finite forms of common verbs -> gerund ("rides a horse" = "riding a horse").
_VERB_GERUNDS: dict[str, str] = {
    "ride": "riding", "hold": "holding", "wear": "wearing", "eat": "eating", "drink": "drinking",
    "play": "playing", "walk": "walking", "sit": "sitting", "stand": "standing", "read": "reading",
    "cook": "cooking", "paint": "painting", "carry": "carrying", "drive": "driving", "feed": "feeding",
    "hug": "hugging", "pet": "petting", "watch": "watching", "look": "looking", "throw": "throwing",
    "catch": "catching", "kick": "kicking", "push": "pushing", "pull": "pulling", "use": "using",
    "climb": "climbing", "swim": "swimming", "dance": "dancing", "lie": "lying", "lean": "leaning",
    "touch": "touching", "fly": "flying", "hike": "hiking", "run": "running", "jump": "jumping",
    "write": "writing", "sleep": "sleeping", "talk": "talking", "wait": "waiting", "pose": "posing",
    "kiss": "kissing", "chase": "chasing", "cut": "cutting", "open": "opening", "fix": "fixing",
}  # fmt: skip
# Finite forms -> gerund. Base forms only where they are hardly ever nouns in prompts ("a ride", "a
# stand", "a drink" are nouns); third-person forms except those that read as plural nouns ("drinks").
_BASE_VERBS = frozenset({"hold", "wear", "eat", "sit", "carry", "ride"})
_NOUN_LIKE_FORMS = frozenset(
    "watches plays flies cuts kisses looks dances poses paints drinks cooks kicks pulls pushes hugs jumps "
    "runs walks touches catches uses pets stands drives feeds throws sleeps hikes chases waits talks opens "
    "fixes climbs swims reads".split()
)
_VERB_FORMS: dict[str, str] = {}
for _lemma, _gerund in _VERB_GERUNDS.items():
    if _lemma in _BASE_VERBS:
        _VERB_FORMS[_lemma] = _gerund
    if _lemma.endswith("y") and _lemma[-2] not in "aeiou":
        _third = _lemma[:-1] + "ies"
    elif _lemma.endswith(("s", "sh", "ch", "x", "z")):
        _third = _lemma + "es"
    else:
        _third = _lemma + "s"
    if _third not in _NOUN_LIKE_FORMS:
        _VERB_FORMS[_third] = _gerund
_VERB_FORMS.update({"lies": "lying", "rode": "riding", "held": "holding", "wore": "wearing", "ate": "eating"})

#: ``-ing`` words that are nouns or prepositions, not verbs.
_ING_NOUNS = frozenset(
    "building buildings ceiling clothing evening morning something anything nothing everything "
    "being sting thing string spring swing during wedding pudding stocking stockings earring earrings sibling siblings "
    "duckling dumpling icing railing lightning offspring awning lining viking vikings darling herring "
    "king ring wing thing sing bring sling ping ding wring sterling pudding ceiling "
    "stuffing frosting filling seating housing flooring setting landing ending beginning gathering "
    "clearing crossing"
    .split()
)  # fmt: skip
#: Leading adjectives dropped from Stellar-H objects ("a cosy library" -> "library").
_ADJECTIVES = frozenset(
    "big small large little tiny huge giant old young new beautiful cozy cosy busy crowded quiet "
    "empty dark bright sunny snowy rainy foggy misty cloudy stormy red orange yellow green blue "
    "purple pink brown black white grey gray colorful colourful vintage modern ancient famous "
    "lush wild cute fluffy tall short long wide narrow wooden shiny calm peaceful rustic "
    "majestic bustling serene tropical hot cold warm cool fresh delicious favorite favourite fancy "
    "elegant abandoned lovely magnificent massive enormous steep rocky sandy grassy dense deep".split()
)
#: Head words of noun phrases that are not boxable objects (time, weather, style, abstract, body).
_NON_OBJECTS = frozenset(
    "sunrise sunset dawn dusk night day daytime noon midnight morning afternoon evening twilight "
    "time moment hour year years century winter summer spring autumn fall season weekend "
    "rain snow fog mist wind storm sunlight sunshine moonlight light lights shadow shadows darkness "
    "weather air sky style manner way mood fashion spirit color colour colors colours theme "
    "background foreground distance front side middle center centre top bottom edge "
    "photo photograph picture portrait image shot view scene close closeup "
    "hair face eyes eye head hand hands arm arms mouth lips nose ear ears shoulder shoulders "
    "fingers finger feet foot leg legs body skin smile expression freckles beard "
    "himself herself themselves itself me him her them it us you someone somebody everyone "
    "anyone person people love joy happiness peace silence thought thoughts dream dreams "
    "order lot lots kind sort type part".split()
)
#: "X of Y" heads whose object is Y ("a group of friends" -> friends).
_QUANTIFIERS = frozenset(
    "group groups bunch pile stack crowd herd flock pack pair couple number set collection variety "
    "swarm team line row handful lots lot plenty dozen dozens hundreds thousands "
    "kind sort type".split()
)
#: Words that, right before a detectable, make it name the subject ("as a clown").
_SUBJECT_NAMING_ENDINGS = frozenset({"as", "is", "are", "be", "being", "becoming", "become", "like"})
#: Words that end a Stellar-H chain: a relative clause describes the object, not the person.
_RELATIVES = frozenset({"that", "which", "where", "whose", "whom", "when"})
_SENTENCE_ENDS = frozenset({".", ";", "!", "?", ":"})

_SUBJ = "\x00subj"  # the placeholder token; cannot collide with a word
# Words are Unicode letters and digits ("café", "jalapeño", "Zürich"), not only ASCII: ``[^\W_]`` is
# \w without the underscore. Text is NFC-normalised first, so a decomposed "e" + combining accent is
# one letter and the same word as the composed form.
_TOKEN_RE = re.compile(r"\x00subj|[^\W_]+|'s\b|[,.;:!?&]")


def normalize_query(text: str) -> str:
    """The one normal form of a detector query, GOA query and triplet element (DESIGN §6.5–6.6).

    Unicode NFC, lower case, whitespace collapsed to single spaces, trimmed. GOA queries, the objects
    of extracted *and* annotated triplets and the "person" query all go through it, so one object is
    one detector query whatever its spelling ("Eiffel Tower", "eiffel  tower"): two spellings of one
    object would tie in the (lower-casing) detector tokenizer, and the arg-max labelling would give
    every box to one of them. The user's spelling is kept only for display.

    >>> normalize_query("  Eiffel   Tower ")
    'eiffel tower'
    >>> normalize_query("Cafe\u0301") == normalize_query("café")
    True
    """
    return " ".join(unicodedata.normalize("NFC", str(text)).lower().split())


def _tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text)
    text = text.replace("{}", f" {_SUBJ} ").lower().replace("’", "'").replace("-", " ").replace("_", " ")
    return _TOKEN_RE.findall(text)


def _variants(word: str) -> set[str]:
    """Plural forms of ``word`` (regular rules and a few irregular nouns)."""
    out = {word, word + "s", word + "es"}
    if word.endswith("y"):
        out.add(word[:-1] + "ies")
    if word.endswith("f"):
        out.add(word[:-1] + "ves")
    if word.endswith("fe"):
        out.add(word[:-2] + "ves")
    irregular = {"man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
                 "goose": "geese", "tooth": "teeth", "foot": "feet", "ox": "oxen", "die": "dice"}  # fmt: skip
    if word in irregular:
        out.add(irregular[word])
    return out


def _same_word(a: str, b: str) -> bool:
    return a == b or b in _variants(a) or a in _variants(b)


def _match_at(tokens: list[str], i: int, words: tuple[str, ...]) -> int:
    """Length (in tokens) of a match of ``words`` at ``tokens[i]``, or 0."""
    k = len(words)
    if i + k <= len(tokens) and all(_same_word(tokens[i + j], words[j]) for j in range(k)):
        return k
    if k > 1 and i < len(tokens) and _same_word(tokens[i], "".join(words)):  # "firetruck" = "fire truck"
        return 1
    return 0


def _is_gerund(word: str) -> bool:
    return len(word) >= 5 and word.endswith("ing") and word not in _ING_NOUNS


def _verb(word: str) -> str | None:
    """The normalised verb (gerund) of ``word``, or None if it is not a verb we recognise."""
    if _is_gerund(word) or word in _PARTICIPLES:
        return word
    return _VERB_FORMS.get(word)


def _is_filler(word: str) -> bool:
    return word in _FILLERS or word in _DETERMINERS or (len(word) > 4 and word.endswith("ly") and word not in
                                                        {"family", "belly", "jelly", "lily", "rally", "holly", "bully"})


def _compound_at(tokens: list[str], i: int) -> tuple[int, str] | None:
    for key in _COMPOUND_KEYS:
        if tuple(tokens[i : i + len(key)]) == key:
            return len(key), _COMPOUND_PREPOSITIONS[key]
    return None


def _units(tokens: list[str], start: int, stop: int) -> list[tuple[int, int, str]]:
    """Predicate units ``(begin, end, predicate)`` in ``tokens[start:stop]`` (see the module docstring)."""
    units: list[tuple[int, int, str]] = []
    i = start
    while i < stop:
        word = tokens[i]
        compound = _compound_at(tokens[:stop], i)
        if compound:
            units.append((i, i + compound[0], compound[1]))
            i += compound[0]
            continue
        verb = _verb(word)
        if verb is not None:
            j = i + 1
            while j < stop and _is_filler(tokens[j]) and tokens[j] not in _SIMPLE_PREPOSITIONS:
                j += 1
            if j < stop and _compound_at(tokens[:stop], j):  # "standing in front of" -> "in front of"
                i = j
                continue
            parts = [verb]
            if j < stop and tokens[j] in _PARTICLES and not (j + 1 < stop and _compound_at(tokens[:stop], j + 1)):
                parts.append(tokens[j])
                j += 1
            if j < stop and tokens[j] in _SIMPLE_PREPOSITIONS and not _compound_at(tokens[:stop], j):
                parts.append(tokens[j])
                j += 1
            if len(parts) > 1:
                units.append((i, j, " ".join(parts)))
                i = j
            else:
                units.append((i, i + 1, verb))
                i += 1
            continue
        if word in _SIMPLE_PREPOSITIONS:
            units.append((i, i + 1, word))
        i += 1
    return units


def _find_subject(tokens: list[str]) -> tuple[int, int] | None:
    """Span of the subject: the ``{}`` placeholder, else the first "(a|the) person"."""
    if _SUBJ in tokens:
        i = tokens.index(_SUBJ)
        return i, i + 1
    for i, word in enumerate(tokens):
        if word == "person":
            begin = i - 1 if i > 0 and tokens[i - 1] in {"a", "the", "this", "that"} else i
            return begin, i + 1
    return None


def _clean_detectables(detectables: Any) -> list[tuple[str, tuple[str, ...]]]:
    if isinstance(detectables, str):
        detectables = [detectables]
    try:
        items = list(detectables or ())
    except TypeError:
        return []
    out: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for d in items:
        if not isinstance(d, str):
            continue
        name = normalize_query(d)
        words = tuple(w for w in _tokens(name) if w[0].isalnum())
        if words and name not in seen:
            seen.add(name)
            out.append((name, words))
    return out


def is_role_word(word: str) -> bool:
    """Whether ``word`` is one of :data:`ROLE_WORDS` (case, spacing and a plural ``s`` ignored)."""
    if not isinstance(word, str):
        return False
    name = " ".join(word.lower().replace("-", " ").split())
    return name in ROLE_WORDS or (name.endswith("s") and name[:-1] in ROLE_WORDS) or name in {"djs", "dj's"}


def _names_subject(tokens: list[str], gap_start: int, begin: int, name: str, after_subject: bool) -> bool:
    content = [w for w in tokens[gap_start:begin] if w not in _DETERMINERS and w not in {",", "up"}]
    if content and content[-1] in _SUBJECT_NAMING_ENDINGS:
        return True
    return not content and after_subject and is_role_word(name)


def extract_triplets(prompt: str, detectables: Sequence[str] = ()) -> list[Triplet]:
    """Relation triplets ``(person, predicate, object)`` of a prompt, in prompt order.

    Args:
        prompt: a template (``{}`` = the subject) or a filled prompt ("a person ...").
        detectables: the prompt's objects (Stellar-T). Empty: Stellar-H rules (noun phrases after
            known predicates, kept only when confident).

    Returns:
        A list of ``(subject, predicate, object)`` string tuples, subject always ``"person"``; ``[]``
        for input that is not text. Rules: module docstring.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        return []
    try:
        tokens = _tokens(prompt)
        found = _find_subject(tokens)
        if found is not None and found[1] < len(tokens) and tokens[found[1]] == "'s":
            return []  # "{}'s face": a possession, not a relation of the person
        start = found[1] if found else 0
        objects = _clean_detectables(detectables)
        if objects:
            return _extract_t(tokens, start, objects, found is not None)
        return _extract_h(tokens, start)
    except (ValueError, TypeError, IndexError, KeyError, RecursionError):  # pragma: no cover - never expected
        # A rule-based helper must never stop an evaluation over a strange prompt.
        return []


def _extract_t(tokens: list[str], start: int, objects: list[tuple[str, tuple[str, ...]]], has_subject: bool) -> list[Triplet]:
    claimed = [False] * len(tokens)
    spans: list[tuple[int, int, str]] = []
    # Longest detectables claim their words first ("cowboy hat" before "hat").
    for name, words in sorted(objects, key=lambda o: -len(o[1])):
        for i in range(start, len(tokens)):
            n = _match_at(tokens, i, words)
            if n and not any(claimed[i : i + n]):
                for j in range(i, i + n):
                    claimed[j] = True
                spans.append((i, i + n, name))
                break
    spans.sort()
    triplets: list[Triplet] = []
    anchor, previous = start, None
    for begin, end, name in spans:
        if _names_subject(tokens, anchor, begin, name, anchor == start and has_subject):
            anchor = end
            continue
        units = _units(tokens, anchor, begin)
        predicate = units[-1][2] if units else None
        if predicate is None and previous is not None and any(t in _CONJUNCTIONS for t in tokens[anchor:begin]):
            predicate = previous  # "eating a burger and fries"
        if predicate is not None:
            triplet = (SUBJECT, predicate, name)
            if triplet not in triplets:
                triplets.append(triplet)
            previous = predicate
        anchor = end
    return triplets


def _noun_phrase(tokens: list[str], i: int) -> tuple[list[str], int]:
    """Content words of the noun phrase starting at ``tokens[i]`` and the index after it."""
    while i < len(tokens) and (tokens[i] in _DETERMINERS or tokens[i].isdigit()):
        i += 1
    words: list[str] = []
    while i < len(tokens):
        w = tokens[i]
        if (w in _SIMPLE_PREPOSITIONS or w in _CONJUNCTIONS or w in _RELATIVES or w in _SENTENCE_ENDS
                or w in _FILLERS or w in _DETERMINERS or w == "of" or w == _SUBJ or _verb(w) is not None
                or _compound_at(tokens, i)):  # fmt: skip
            break
        words.append(w)
        i += 1
    return words, i


def _object_of(tokens: list[str], i: int) -> tuple[str | None, int]:
    """The boxable object of the noun phrase at ``tokens[i]`` (None if not confident) and the index after."""
    words, j = _noun_phrase(tokens, i)
    if j < len(tokens) and tokens[j] == "of" and words:
        tail, k = _noun_phrase(tokens, j + 1)
        if words[-1] in _QUANTIFIERS:
            words, j = tail, k
        elif words[-1] in _NON_OBJECTS:
            return None, k
        else:
            j = k  # "a cup of coffee": the cup is what is held; skip "of coffee"
    while words and (words[0] in _ADJECTIVES or (len(words[0]) > 5 and words[0].endswith(("ful", "ous")))):
        words = words[1:]
    if not 1 <= len(words) <= 3 or not all(w.isalpha() and len(w) > 1 for w in words):
        return None, j
    if words[-1] in _NON_OBJECTS or words[-1] == "person" or any(is_role_word(w) for w in words[-1:]):
        return None, j
    return " ".join(words), j


def _extract_h(tokens: list[str], start: int) -> list[Triplet]:
    triplets: list[Triplet] = []
    i = start
    n = len(tokens)
    while i < n:
        word = tokens[i]
        if word in _SENTENCE_ENDS or word in _RELATIVES or word == _SUBJ:
            break
        if word == ",":
            j = i + 1
            while j < n and (tokens[j] in _FILLERS or tokens[j] in _CONJUNCTIONS):
                j += 1
            if j >= n or not _units(tokens, j, j + 1) and not _compound_at(tokens, j):
                break  # ", wind in their hair": another clause with another subject
            i = j
            continue
        units = _units(tokens, i, min(n, i + 6))
        if not units or units[0][0] != i:
            i += 1
            continue
        _, end, predicate = units[0]
        obj, after = _object_of(tokens, end)
        if obj is not None:
            triplet = (SUBJECT, predicate, obj)
            if triplet not in triplets:
                triplets.append(triplet)
        i = max(after, end)
    return triplets


def predicate_vocabulary(dataset_triplets: Iterable[Any] = ()) -> list[str]:
    """:data:`PREDICATES` ∪ the predicates of ``dataset_triplets``, sorted and deduplicated.

    ``dataset_triplets`` holds triplets ``(s, p, o)``, or per-prompt groups of them (what
    :func:`resolve_triplets` returns for each prompt); entries that are not triplets are ignored.
    Predicates are lower-cased and their spacing normalised.
    """
    found: set[str] = {p for p in PREDICATES}

    def visit(item: Any) -> None:
        if isinstance(item, (list, tuple)):
            if len(item) == 3 and all(isinstance(x, str) for x in item):
                predicate = " ".join(item[1].lower().split())
                if predicate:
                    found.add(predicate)
            else:
                for sub in item:
                    visit(sub)

    for entry in dataset_triplets or ():
        visit(entry)
    return sorted(found)


def normalize_triplets(triplets: Iterable[Sequence[str]]) -> tuple[Triplet, ...]:
    """Triplets with every element in :func:`normalize_query` form (order kept, duplicates dropped).

    Annotated triplets are written by people ("Person", "Eiffel Tower"); the detector queries and the
    relation texts must not depend on that spelling.

    >>> normalize_triplets([["Person", "next  to", "Eiffel Tower"], ("person", "next to", "eiffel tower")])
    (('person', 'next to', 'eiffel tower'),)
    """
    out: list[Triplet] = []
    for t in triplets:
        triplet = tuple(normalize_query(x) for x in t)
        if len(triplet) == 3 and triplet not in out:
            out.append(triplet)  # type: ignore[arg-type]
    return tuple(out)


def resolve_triplets(prompt_obj: Any) -> tuple[Triplet, ...]:
    """The prompt's triplets: the dataset's annotated ones when present, else extracted.

    ``prompt_obj`` is a :class:`stellar.data.dataset.Prompt` (or anything with ``triplets``,
    ``template`` and ``detectables``). Annotated triplets (``triplets`` not None, even empty) take
    precedence; otherwise :func:`extract_triplets` reads ``template`` with ``detectables``.
    """
    annotated = getattr(prompt_obj, "triplets", None)
    if annotated is not None:
        return normalize_triplets(annotated)
    return tuple(extract_triplets(getattr(prompt_obj, "template", ""), getattr(prompt_obj, "detectables", ())))


def triplet_coverage(prompt_obj: Any, triplets: Sequence[Triplet]) -> tuple[int, int]:
    """(covered, wanted): detectables that are objects (not role words named as the subject) and how
    many of them appear as the object of one of ``triplets``.

    A detectable is *wanted* unless it is a role word of :data:`ROLE_WORDS` (those usually name the
    subject). Used by ``stellar prompts triplets --dataset`` to report how many Stellar-T prompts get a
    triplet for every object.
    """
    objects = {o for _, _, o in triplets}
    wanted = [name for name, _ in _clean_detectables(getattr(prompt_obj, "detectables", ())) if not is_role_word(name)]
    return sum(1 for name in wanted if name in objects), len(wanted)
