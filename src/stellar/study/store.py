"""``STUDY/judgements.db``: raters, sessions, assignments and answers in SQLite (WAL).

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, and every write is one transaction
committed before the server answers, so an acknowledged answer survives ``kill -9`` of the server
(and a power cut). Each state change opens with ``BEGIN IMMEDIATE``: SQLite then admits one writer
at a time, so the read-check-write of an assignment (is this pair still short of raters?) cannot
interleave with another rater's, across threads *and* processes.

Assignment rules (``next_item``):

- a rater holds one *pending* item (after ``undo``, the reopened item comes first and the item they
  were looking at follows); reopening the page returns it (resume);
- a pending regular item whose rater has been idle longer than ``lease_s`` still counts towards the
  pair's limit until another rater needs the slot; then it is *released* (the idle rater gets a
  new item and a late answer to the released one is refused with 409) — so the number of raters
  holding or having answered a pair never exceeds ``raters_per_pair``;
- gold items go to every rater, one about every ``1/gold`` items; a repeat item goes only to the
  raters who answered its original, at least ``repeat_gap`` answers later;
- otherwise the regular pair with the most raters so far that this rater has never held (pairs are
  completed before new ones are opened), ties broken by the manifest's (shuffled) order.

Answers: one row per (rater, item, aspect); ``undo`` deactivates the rater's last answered item
(history kept, ``active = 0``) and makes it the pending item again. A partial unique index keeps
one active answer per (rater, item, aspect); a retried submission with the same ``submission`` id is
acknowledged without writing twice.

Tokens: ``SESSION.SECRET`` where only ``sha256(SECRET)`` is stored and compared with
:func:`hmac.compare_digest`; secrets come from :mod:`secrets`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stellar.study.manifest import CHOICES, Manifest, StudyError, sha256_file

DB_NAME = "judgements.db"
RATER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_DUMMY_HASH = hashlib.sha256(b"no such session").hexdigest()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters(id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK(kind IN ('link', 'self')), created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, rater TEXT NOT NULL REFERENCES raters(id), secret_sha256 TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS assignments(
    rater TEXT NOT NULL REFERENCES raters(id), item TEXT NOT NULL, assigned REAL NOT NULL,
    answered REAL, ord INTEGER, submission TEXT, time_ms INTEGER, released INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(rater, item));
CREATE INDEX IF NOT EXISTS assignments_item ON assignments(item);
CREATE TABLE IF NOT EXISTS answers(
    id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL, item TEXT NOT NULL, aspect TEXT NOT NULL,
    choice TEXT NOT NULL CHECK(choice IN ('a', 'b', 'tie')), time_ms INTEGER, created REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, submission TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS answers_active ON answers(rater, item, aspect) WHERE active = 1;
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL, kind TEXT NOT NULL, item TEXT, created REAL NOT NULL);
"""


class RequestError(Exception):
    """A rater's request that cannot be honoured; ``status`` is the HTTP status the app returns."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    rater: str
    session: str


class StudyStore:
    """The judgement database of one study; safe to share between threads (one connection each)."""

    def __init__(self, manifest: Manifest, *, lease_s: float = 1800.0, clock=time.time):
        self.manifest = manifest
        self.path = manifest.folder / DB_NAME
        self.lease_s = float(lease_s)
        self.clock = clock
        self.items = manifest.item_map()
        self.aspects = manifest.aspect_ids
        s = manifest.settings
        self.limit = int(s["raters_per_pair"])
        self.repeat_gap = int(s.get("repeat_gap", 5))
        self.gold_threshold = float(s.get("gold_threshold", 0.8))
        self.regular = [it["id"] for it in manifest.items if it["type"] == "pair"]
        self.gold = [it["id"] for it in manifest.items if it["type"] == "gold"]
        self.repeats = {it["repeat_of"]: it["id"] for it in manifest.items if it["type"] == "repeat"}
        frac = float(s.get("gold", 0) or 0)
        self.gold_spacing = max(2, round(1 / frac)) if frac > 0 and self.gold else 0
        self._local = threading.local()
        fingerprint = sha256_file(manifest.path)
        db = self._db()
        db.executescript(_SCHEMA)
        # the database is bound to the manifest it was collected with
        db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('manifest_sha256', ?)", (fingerprint,))
        stored = db.execute("SELECT value FROM meta WHERE key = 'manifest_sha256'").fetchone()[0]
        if stored != fingerprint:
            raise StudyError(f"{self.path}: collected with another version of {manifest.path} (the manifest changed after judgements were recorded)",
                             fix_hint="restore the original study.json; a changed study needs a new --out folder")  # fmt: skip

    # ------------------------------------------------------------------------------ plumbing
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")

    def _tx(self) -> "StudyStore._Tx":
        return StudyStore._Tx(self._db())

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ------------------------------------------------------------------------------ raters
    def add_rater(self, rater: str, kind: str = "link") -> str:
        """Register ``rater`` and return a new session token (``SESSION.SECRET``)."""
        if not RATER_RE.match(rater or ""):
            raise RequestError(400, "rater id: 1–64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit")
        with self._tx() as db:
            row = db.execute("SELECT kind FROM raters WHERE id = ?", (rater,)).fetchone()
            if row is None:
                db.execute("INSERT INTO raters(id, kind, created) VALUES (?, ?, ?)", (rater, kind, self.clock()))
            elif row[0] == "link" and kind == "self":
                raise RequestError(403, f"rater {rater!r} has a personal link: open that link instead")
            elif row[0] == "link" and kind == "link":
                raise RequestError(409, f"rater {rater!r} already has a link")
            return self._new_session(db, rater)

    def _new_session(self, db: sqlite3.Connection, rater: str) -> str:
        sid, secret = secrets.token_hex(8), secrets.token_urlsafe(24)
        db.execute("INSERT INTO sessions(id, rater, secret_sha256, created) VALUES (?, ?, ?, ?)", (sid, rater, _hash(secret), self.clock()))
        return f"{sid}.{secret}"

    def authenticate(self, token: str | None) -> Session:
        """The session of a bearer token, compared in constant time; 401 otherwise."""
        sid, _, secret = (token or "").partition(".")
        row = self._db().execute("SELECT rater, secret_sha256 FROM sessions WHERE id = ?", (sid[:64],)).fetchone() if sid else None
        ok = hmac.compare_digest(_hash(secret), row[1] if row else _DUMMY_HASH)
        if not (row and ok and secret):
            raise RequestError(401, "unknown or expired rater token: sign in again")
        return Session(row[0], sid)

    def raters(self) -> list[tuple[str, str, float]]:
        return [tuple(r) for r in self._db().execute("SELECT id, kind, created FROM raters ORDER BY created, id")]

    # ------------------------------------------------------------------------------ assignment
    def _pending(self, db: sqlite3.Connection, rater: str) -> str | None:
        row = db.execute("SELECT item FROM assignments WHERE rater = ? AND answered IS NULL AND released = 0 ORDER BY assigned DESC LIMIT 1", (rater,)).fetchone()
        return row[0] if row else None

    def _choose(self, db: sqlite3.Connection, rater: str, now: float) -> str | None:
        held = {r[0] for r in db.execute("SELECT item FROM assignments WHERE rater = ?", (rater,))}
        answered = {r[0]: r[1] for r in db.execute("SELECT item, ord FROM assignments WHERE rater = ? AND answered IS NOT NULL AND released = 0", (rater,))}
        n_regular = sum(1 for i in answered if self.items[i]["type"] != "gold")
        n_gold = sum(1 for i in held if self.items[i]["type"] == "gold")
        # repeats due: original answered at least repeat_gap answers ago
        if answered and self.repeats:
            last_ord = max(answered.values())
            for orig, rep in self.repeats.items():
                if orig in answered and rep not in held:
                    later = db.execute("SELECT COUNT(*) FROM assignments WHERE rater = ? AND answered IS NOT NULL AND ord > ?", (rater, answered[orig])).fetchone()[0]
                    if later >= self.repeat_gap and last_ord is not None:
                        return rep
        gold_left = [g for g in self.gold if g not in held]
        if gold_left and n_regular >= (n_gold + 0.5) * self.gold_spacing:
            return gold_left[0]
        live = dict(db.execute(
            "SELECT item, COUNT(*) FROM assignments WHERE released = 0 AND (answered IS NOT NULL OR assigned > ?) GROUP BY item", (now - self.lease_s,)
        ).fetchall())  # fmt: skip
        best, best_n = None, -1
        for it in self.regular:  # manifest order is shuffled; fill the fullest open pair first
            n = live.get(it, 0)
            if it not in held and n < self.limit and n > best_n:
                best, best_n = it, n
                if n == self.limit - 1:
                    break
        if best is not None:
            # the slots of idle raters whose lease ran out are given up now, so the limit holds
            db.execute("UPDATE assignments SET released = 1 WHERE item = ? AND answered IS NULL AND released = 0 AND assigned <= ?", (best, now - self.lease_s))
            return best
        if gold_left:  # nothing regular left: the remaining attention checks
            return gold_left[0]
        # repeats still waiting for their gap when nothing else is left
        for orig, rep in self.repeats.items():
            if orig in answered and rep not in held:
                return rep
        return None

    def next_item(self, rater: str) -> str | None:
        """The rater's pending item, or a newly assigned one; ``None`` when nothing is left for them."""
        now = self.clock()
        with self._tx() as db:
            pending = self._pending(db, rater)
            if pending is not None:
                db.execute("UPDATE assignments SET assigned = ? WHERE rater = ? AND item = ?", (now, rater, pending))
                return pending
            item = self._choose(db, rater, now)
            if item is not None:
                db.execute("INSERT INTO assignments(rater, item, assigned) VALUES (?, ?, ?)", (rater, item, now))
            return item

    def submit(self, rater: str, item: str, answers: dict, time_ms: int | None, submission: str) -> bool:
        """Record the answers of ``rater`` to ``item`` in one transaction; True when written, False for a retry.

        Raises:
            RequestError: 404 unknown item, 409 not the rater's pending item / released / answered
                by another submission, 400 invalid answers. Nothing is written on any error.
        """
        if item not in self.items:
            raise RequestError(404, f"unknown item {item!r}")
        if not isinstance(answers, dict) or set(answers) != set(self.aspects):
            raise RequestError(400, f"answers must give exactly the aspects {self.aspects}")
        for aspect, choice in answers.items():
            if choice not in CHOICES:
                raise RequestError(400, f"aspect {aspect!r}: choice must be one of {list(CHOICES)}")
        now = self.clock()
        with self._tx() as db:
            row = db.execute("SELECT answered, submission, released FROM assignments WHERE rater = ? AND item = ?", (rater, item)).fetchone()
            if row is None:
                raise RequestError(409, f"item {item} is not assigned to you")
            answered, sub, released = row
            if released:
                raise RequestError(409, f"item {item} was given to another rater after your inactivity; continue with the next one")
            if answered is not None:
                if sub == submission:
                    return False  # a retry of an acknowledged (or committed but unacknowledged) answer
                raise RequestError(409, f"item {item} is already answered (use undo to change it)")
            ord_ = db.execute("SELECT COALESCE(MAX(ord), 0) + 1 FROM assignments").fetchone()[0]
            db.executemany(
                "INSERT INTO answers(rater, item, aspect, choice, time_ms, created, submission) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(rater, item, a, answers[a], time_ms, now, submission) for a in self.aspects],
            )
            db.execute("UPDATE assignments SET answered = ?, ord = ?, submission = ?, time_ms = ? WHERE rater = ? AND item = ?", (now, ord_, submission, time_ms, rater, item))
            return True

    def undo(self, rater: str) -> str:
        """Reopen the rater's last answered item (its answers are kept as inactive history)."""
        now = self.clock()
        with self._tx() as db:
            row = db.execute("SELECT item FROM assignments WHERE rater = ? AND answered IS NOT NULL AND released = 0 ORDER BY ord DESC LIMIT 1", (rater,)).fetchone()
            if row is None:
                raise RequestError(409, "nothing to undo")
            item = row[0]
            db.execute("UPDATE answers SET active = 0 WHERE rater = ? AND item = ? AND active = 1", (rater, item))
            db.execute("UPDATE assignments SET answered = NULL, ord = NULL, submission = NULL, time_ms = NULL, assigned = ? WHERE rater = ? AND item = ?", (now, rater, item))
            db.execute("INSERT INTO events(rater, kind, item, created) VALUES (?, 'undo', ?, ?)", (rater, item, now))
            return item

    def progress(self, rater: str) -> dict:
        db = self._db()
        now = self.clock()
        held = {r[0]: r[1] for r in db.execute("SELECT item, answered FROM assignments WHERE rater = ? AND released = 0", (rater,))}
        done = sum(1 for v in held.values() if v is not None)
        live = dict(db.execute("SELECT item, COUNT(*) FROM assignments WHERE released = 0 AND (answered IS NOT NULL OR assigned > ?) GROUP BY item", (now - self.lease_s,)).fetchall())
        open_regular = sum(1 for it in self.regular if it not in held and live.get(it, 0) < self.limit)
        left = open_regular + sum(1 for g in self.gold if g not in held)
        left += sum(1 for o, r in self.repeats.items() if held.get(o) is not None and r not in held)
        left += sum(1 for v in held.values() if v is None)
        return {"answered": done, "remaining": left}

    # ------------------------------------------------------------------------------ reading
    def answers(self) -> list[dict]:
        """Active answers in commit order: rater, item, aspect, choice, time_ms, created."""
        cur = self._db().execute("SELECT id, rater, item, aspect, choice, time_ms, created FROM answers WHERE active = 1 ORDER BY id")
        return [dict(zip(("id", "rater", "item", "aspect", "choice", "time_ms", "created"), r)) for r in cur]

    def assignment_rows(self) -> list[tuple]:
        return list(self._db().execute("SELECT rater, item, answered IS NOT NULL, released FROM assignments"))

    def summary(self, gold_threshold: float | None = None) -> dict:
        """Progress per rater and aspect, gold accuracy, repeat consistency, median time, flags."""
        threshold = self.gold_threshold if gold_threshold is None else float(gold_threshold)
        answers = self.answers()
        by_item_rater: dict[tuple[str, str], dict] = {}
        times: dict[tuple[str, str], int | None] = {}
        for a in answers:
            by_item_rater.setdefault((a["rater"], a["item"]), {})[a["aspect"]] = a["choice"]
            times[(a["rater"], a["item"])] = a["time_ms"]
        raters: dict[str, dict] = {r[0]: {"rater": r[0], "kind": r[1], "items": 0, "per_aspect": {a: 0 for a in self.aspects},
                                          "gold_n": 0, "gold_correct": 0, "repeat_n": 0, "repeat_consistent": 0, "times": []} for r in self.raters()}  # fmt: skip
        completed: dict[str, int] = {}
        for (rater, item), choices in by_item_rater.items():
            st = raters[rater]
            it = self.items[item]
            st["items"] += 1
            for a in choices:
                st["per_aspect"][a] += 1
            if times[(rater, item)] is not None:
                st["times"].append(times[(rater, item)])
            if it["type"] == "gold":
                g = it["gold"]
                st["gold_n"] += 1
                st["gold_correct"] += int(choices.get(g["aspect"]) == g["answer"])
            elif it["type"] == "repeat":
                orig = by_item_rater.get((rater, it["repeat_of"]))
                if orig:
                    for a in self.aspects:
                        st["repeat_n"] += 1
                        st["repeat_consistent"] += int(_winner(self.items[it["repeat_of"]], orig[a]) == _winner(it, choices[a]))
            else:
                completed[item] = completed.get(item, 0) + 1
        rows = []
        for st in raters.values():
            times_ = st.pop("times")
            st["median_time_s"] = statistics.median(times_) / 1000 if times_ else None
            st["gold_accuracy"] = st["gold_correct"] / st["gold_n"] if st["gold_n"] else None
            st["repeat_consistency"] = st["repeat_consistent"] / st["repeat_n"] if st["repeat_n"] else None
            st["flagged"] = st["gold_accuracy"] is not None and st["gold_accuracy"] < threshold
            rows.append(st)
        per_aspect = {a: sum(r["per_aspect"][a] for r in rows) for a in self.aspects}
        return {
            "raters": rows,
            "pairs": len(self.regular),
            "pairs_complete": sum(1 for it in self.regular if completed.get(it, 0) >= self.limit),
            "pairs_started": sum(1 for it in self.regular if completed.get(it, 0) > 0),
            "judgements_planned": len(self.regular) * self.limit,
            "judgements": sum(completed.values()),
            "answers_per_aspect": per_aspect,
            "raters_per_pair": self.limit,
            "gold_threshold": threshold,
            "flagged": [r["rater"] for r in rows if r["flagged"]],
        }


def _winner(item: dict, choice: str) -> str:
    """The run (or gold source) a choice prefers, so that a swapped repeat compares with its original."""
    return "tie" if choice == "tie" else item[choice]["run"]


def open_store(study: str | Path, **kwargs) -> StudyStore:
    from stellar.study.manifest import load_manifest

    return StudyStore(load_manifest(study), **kwargs)
