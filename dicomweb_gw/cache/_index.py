"""The disk cache's SQLite index: instances, completeness records, series metadata.

Not thread-safe by itself: DiskInstanceStore serialises every call with its lock.
Each method that writes is one transaction, so the index moves from one
consistent state to the next even if the process dies mid-call.

The exception is ``Counts``: the status page's aggregate queries, which scan the
whole index, on a read-only connection of their own with its own lock, so that
they never hold up the cache (in WAL mode a reader does not block the writer).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "Counts", "Index", "InstanceRow", "SeriesKey"]

SCHEMA_VERSION = 1
#: A study's completeness record has series_uid '' (NULL cannot be part of a unique key).
STUDY = ""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    series_number INTEGER,
    instance_number INTEGER,
    size INTEGER NOT NULL,
    last_used INTEGER NOT NULL,  -- a counter, not a time: no ties, no clock jumps
    inserted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances (study_uid, series_uid);
CREATE INDEX IF NOT EXISTS instances_by_use ON instances (last_used, inserted);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    completed_at REAL NOT NULL,
    UNIQUE (study_uid, series_uid)
);
CREATE TABLE IF NOT EXISTS record_members (
    record_id INTEGER NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    sop_instance_uid TEXT NOT NULL,
    series_uid TEXT,  -- the instance's series when recorded; NULL if it was not cached then
    PRIMARY KEY (record_id, sop_instance_uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_members_by_sop ON record_members (sop_instance_uid);
CREATE TABLE IF NOT EXISTS metadata (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    size INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
) WITHOUT ROWID;
"""
_TABLES = ("record_members", "records", "metadata", "instances")
_COLUMNS = ("sop_instance_uid, study_uid, series_uid, sop_class_uid, transfer_syntax_uid, "
            "series_number, instance_number, size, last_used, inserted")
_ORDER = ("i.series_number IS NULL, i.series_number, i.series_uid, "
          "i.instance_number IS NULL, i.instance_number, i.inserted")

SeriesKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class InstanceRow:
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    series_number: int | None
    instance_number: int | None
    size: int
    last_used: int
    inserted: int

    @property
    def series_key(self) -> SeriesKey:
        return (self.study_uid, self.series_uid)


def _row(values: Sequence[object]) -> InstanceRow:
    return InstanceRow(*values)  # type: ignore[arg-type]  # columns in _COLUMNS order


class Counts:
    """The status page's queries over a whole index, on their own read-only
    connection: thread-safe, and never waiting for the index's writer."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA query_only=ON")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def largest_studies(self, limit: int) -> list[tuple[str, int, int]]:
        """(study UID, total size, instance count) of the ``limit`` largest studies."""
        with self._lock:
            rows = self._db.execute(
                "SELECT study_uid, SUM(size) AS bytes, COUNT(*) FROM instances "
                "GROUP BY study_uid ORDER BY bytes DESC, study_uid LIMIT ?",
                (limit,)).fetchall()
        return [(str(study), int(size), int(count)) for study, size, count in rows]

    def study_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(DISTINCT study_uid) FROM instances")
                       .fetchone()[0])


class Index:
    def __init__(self, path: Path) -> None:
        # Autocommit mode: transactions are explicit (see _transaction).
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL keeps the index consistent across crashes; it only
            # lets a power loss forget the last commits, which reconcile repairs.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                # A cache from another version is simply dropped; reconcile then
                # deletes its files as orphans.
                with self._transaction():
                    for table in _TABLES:
                        self._db.execute(f"DROP TABLE IF EXISTS {table}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.counts = Counts(path)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self.counts.close()
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- instances -------------------------------------------------------------------------

    def totals(self) -> tuple[int, int, int]:
        """(instance count, their total size, the highest use counter)."""
        count, size, tick = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), "
            "COALESCE(MAX(MAX(last_used), MAX(inserted)), 0) FROM instances").fetchone()
        return int(count), int(size), int(tick)

    def instance(self, sop_instance_uid: str) -> InstanceRow | None:
        values = self._db.execute(f"SELECT {_COLUMNS} FROM instances WHERE sop_instance_uid = ?",
                                  (sop_instance_uid,)).fetchone()
        return None if values is None else _row(values)

    def all_instances(self) -> list[InstanceRow]:
        return [_row(v) for v in self._db.execute(f"SELECT {_COLUMNS} FROM instances")]

    def insert(self, row: InstanceRow) -> list[SeriesKey]:
        """Add the row and forget its series' metadata (the series changed); returns
        the metadata keys forgotten."""
        with self._transaction():
            self._db.execute(f"INSERT INTO instances ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                             (row.sop_instance_uid, row.study_uid, row.series_uid,
                              row.sop_class_uid, row.transfer_syntax_uid, row.series_number,
                              row.instance_number, row.size, row.last_used, row.inserted))
            return self._forget_metadata([row.series_key])

    def touch(self, sop_instance_uids: Iterable[str], tick: int) -> None:
        # One small transaction: in WAL mode with synchronous=NORMAL it costs no fsync.
        with self._transaction():
            self._db.executemany("UPDATE instances SET last_used = ? WHERE sop_instance_uid = ?",
                                 [(tick, uid) for uid in sop_instance_uids])

    def least_recently_used(self, excess: int, exclude: str | None) -> list[InstanceRow]:
        """The least recently used instances whose sizes add up to at least ``excess``."""
        victims: list[InstanceRow] = []
        cursor = self._db.execute(
            f"SELECT {_COLUMNS} FROM instances WHERE sop_instance_uid IS NOT ? "
            "ORDER BY last_used, inserted", (exclude,))
        try:
            while excess > 0 and (values := cursor.fetchone()) is not None:
                victims.append(_row(values))
                excess -= victims[-1].size
        finally:
            cursor.close()
        return victims

    def series_instances(self, study_uid: str, series_uid: str | None) -> list[InstanceRow]:
        if series_uid is None:
            cursor = self._db.execute(f"SELECT {_COLUMNS} FROM instances WHERE study_uid = ?",
                                      (study_uid,))
        else:
            cursor = self._db.execute(
                f"SELECT {_COLUMNS} FROM instances WHERE study_uid = ? AND series_uid = ?",
                (study_uid, series_uid))
        return [_row(v) for v in cursor]

    def forget_instances(self, rows: Sequence[InstanceRow], *, keep_records: bool = False
                         ) -> list[SeriesKey]:
        """Delete the rows with the metadata of their series and (unless ``keep_records``)
        the completeness records they belong to; returns the metadata keys deleted."""
        series = sorted({row.series_key for row in rows})
        with self._transaction():
            uids = [(row.sop_instance_uid,) for row in rows]
            self._db.executemany("DELETE FROM instances WHERE sop_instance_uid = ?", uids)
            if not keep_records:
                self._db.executemany(
                    "DELETE FROM records WHERE id IN "
                    "(SELECT record_id FROM record_members WHERE sop_instance_uid = ?)", uids)
            return self._forget_metadata(series)

    # -- completeness ----------------------------------------------------------------------

    def mark_complete(self, study_uid: str, series_uid: str | None, sop_instance_uids:
                      Iterable[str], completed_at: float) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM records WHERE study_uid = ? AND series_uid = ?",
                             (study_uid, series_uid or STUDY))
            record_id = self._db.execute(
                "INSERT INTO records (study_uid, series_uid, completed_at) VALUES (?, ?, ?)",
                (study_uid, series_uid or STUDY, completed_at)).lastrowid
            self._db.executemany(
                "INSERT OR IGNORE INTO record_members (record_id, sop_instance_uid, series_uid) "
                "VALUES (?, ?, (SELECT series_uid FROM instances WHERE sop_instance_uid = ?))",
                [(record_id, uid, uid) for uid in sop_instance_uids])

    def records(self, study_uid: str, series_uid: str | None, since: float
                ) -> list[tuple[int, str]]:
        """(id, series_uid) of the fresh records answering for the study or series, newest first."""
        wanted = (STUDY,) if series_uid is None else (series_uid, STUDY)
        return [(int(i), str(s)) for i, s in self._db.execute(
            "SELECT id, series_uid FROM records WHERE study_uid = ? AND completed_at > ? "
            f"AND series_uid IN ({','.join('?' * len(wanted))}) ORDER BY completed_at DESC",
            (study_uid, since, *wanted))]

    def record_members(self, record_id: int, series_uid: str | None
                       ) -> list[InstanceRow | None]:
        """The members of a record (limited to a series if given: members recorded in
        it or of unknown series), ordered; None for a member that is not cached."""
        columns = ", ".join(f"i.{c.strip()}" for c in _COLUMNS.split(","))
        query = (f"SELECT {columns} FROM record_members m LEFT JOIN instances i "
                 "ON i.sop_instance_uid = m.sop_instance_uid WHERE m.record_id = ?")
        parameters: tuple[object, ...] = (record_id,)
        if series_uid is not None:
            query += " AND (m.series_uid = ? OR m.series_uid IS NULL)"
            parameters += (series_uid,)
        cursor = self._db.execute(f"{query} ORDER BY {_ORDER}", parameters)
        return [None if values[0] is None else _row(values) for values in cursor]

    # -- series metadata -------------------------------------------------------------------

    def metadata_stored_at(self, study_uid: str, series_uid: str) -> float | None:
        found = self._db.execute(
            "SELECT stored_at FROM metadata WHERE study_uid = ? AND series_uid = ?",
            (study_uid, series_uid)).fetchone()
        return None if found is None else float(found[0])

    def put_metadata(self, study_uid: str, series_uid: str, size: int, stored_at: float) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO metadata VALUES (?, ?, ?, ?)",
                             (study_uid, series_uid, size, stored_at))

    def all_metadata(self) -> list[tuple[SeriesKey, int]]:
        return [((str(st), str(se)), int(size)) for st, se, size in
                self._db.execute("SELECT study_uid, series_uid, size FROM metadata")]

    def forget_metadata(self, keys: Sequence[SeriesKey]) -> list[SeriesKey]:
        with self._transaction():
            return self._forget_metadata(keys)

    def _forget_metadata(self, keys: Iterable[SeriesKey]) -> list[SeriesKey]:
        forgotten = []
        for key in keys:
            if self._db.execute("DELETE FROM metadata WHERE study_uid = ? AND series_uid = ?",
                                key).rowcount:
                forgotten.append(key)
        return forgotten

    # -- purge -----------------------------------------------------------------------------

    def purge(self, study_uid: str, series_uid: str | None) -> tuple[list[InstanceRow],
                                                                     list[SeriesKey]]:
        """Delete a study's or series' rows of every kind; returns what had files."""
        rows = self.series_instances(study_uid, series_uid)
        with self._transaction():
            if series_uid is None:
                metadata = [(study_uid, str(s)) for (s,) in self._db.execute(
                    "DELETE FROM metadata WHERE study_uid = ? RETURNING series_uid",
                    (study_uid,)).fetchall()]
                self._db.execute("DELETE FROM records WHERE study_uid = ?", (study_uid,))
                self._db.execute("DELETE FROM instances WHERE study_uid = ?", (study_uid,))
            else:
                metadata = self._forget_metadata([(study_uid, series_uid)])
                # The study's own record no longer holds once part of it is gone.
                self._db.execute(
                    "DELETE FROM records WHERE study_uid = ? AND series_uid IN (?, ?)",
                    (study_uid, series_uid, STUDY))
                self._db.execute("DELETE FROM instances WHERE study_uid = ? AND series_uid = ?",
                                 (study_uid, series_uid))
        return rows, metadata
