"""The consumer store in a SQLite file (``maas serve --keys FILE`` and the key commands): the same records as the
DynamoDB table, in three tables. WAL mode lets the key commands write while ``maas serve`` reads."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from functions.consumers.keys import KeyRecord
from functions.consumers.usage import COUNTS, Usage
from functions.core.errors import AlreadyExistsError, KeyStoreUnavailableError, NotFoundError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, consumer TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    counter TEXT NOT NULL, period TEXT NOT NULL, count INTEGER NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (counter, period));
CREATE TABLE IF NOT EXISTS usage (
    consumer TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, day TEXT NOT NULL,
    requests INTEGER NOT NULL, rows INTEGER NOT NULL, client_errors INTEGER NOT NULL, throttled INTEGER NOT NULL,
    server_errors INTEGER NOT NULL, latency_ms REAL NOT NULL, PRIMARY KEY (consumer, model, version, day));
"""
_TAKE = ("INSERT INTO counters (counter, period, count, expires) VALUES (?, ?, 1, ?) "
         "ON CONFLICT (counter, period) DO UPDATE SET count = count + 1 WHERE count < ? RETURNING count")
_ADD = (f"INSERT INTO usage (consumer, model, version, day, {', '.join(COUNTS)}) "
        f"VALUES (?, ?, ?, ?, {', '.join('?' for _ in COUNTS)}) ON CONFLICT (consumer, model, version, day) "
        f"DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in COUNTS)}")
_SWEEP_EVERY = 1000


class SqliteStore:
    """Keys, counters and usage in one SQLite file; one connection per thread."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.uri = str(path)
        self.timeout = timeout
        self._local = threading.local()
        self._takes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # owner only: SQLite gives its -wal and -shm files the database's permissions
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        with self._connection() as db:
            db.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                     check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise KeyStoreUnavailableError(f"cannot open the key store {self.path}: {exc}") from None
            self._local.db = db
        return db

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.IntegrityError:
            raise
        except OverflowError as exc:  # a number SQLite cannot hold: a request it can never accept
            raise ValueError(f"the key store {self.path} cannot hold a value: {exc}") from None
        except sqlite3.Error as exc:
            raise KeyStoreUnavailableError(f"the key store {self.path} failed: {exc}") from None

    def put_key(self, record: KeyRecord) -> None:
        try:
            self._run("INSERT INTO keys (key_hash, key_id, consumer, record) VALUES (?, ?, ?, ?)",
                      (record.key_hash, record.key_id, record.consumer, orjson.dumps(record.to_dict()).decode()))
        except sqlite3.IntegrityError:
            raise AlreadyExistsError(f"key maas_{record.key_id} already exists") from None

    def get_key(self, key_hash: str) -> KeyRecord | None:
        rows = self._run("SELECT record FROM keys WHERE key_hash = ?", (key_hash,))
        return self._record(rows[0][0]) if rows else None

    def find_key(self, key_id: str) -> KeyRecord | None:
        rows = self._run("SELECT record FROM keys WHERE key_id = ?", (key_id,))
        return self._record(rows[0][0]) if rows else None

    def list_keys(self) -> list[KeyRecord]:
        rows = self._run("SELECT record FROM keys ORDER BY consumer, key_id")
        return [self._record(row[0]) for row in rows]

    def _record(self, raw: object) -> KeyRecord:
        try:
            return KeyRecord.from_dict(orjson.loads(str(raw)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise KeyStoreUnavailableError(f"the key store {self.path} holds an unreadable key record") from None

    def update_key(self, record: KeyRecord) -> None:
        db = self._connection()
        try:
            cursor = db.execute("UPDATE keys SET record = ?, consumer = ? WHERE key_hash = ?",
                                (orjson.dumps(record.to_dict()).decode(), record.consumer, record.key_hash))
        except sqlite3.Error as exc:
            raise KeyStoreUnavailableError(f"the key store {self.path} failed: {exc}") from None
        if cursor.rowcount != 1:
            raise NotFoundError(f"no key maas_{record.key_id}")

    def take(self, counter: str, window: str, limit: int, expires_at: float) -> int | None:
        if limit < 1:
            return None
        self._takes += 1
        if self._takes % _SWEEP_EVERY == 0:
            self._run("DELETE FROM counters WHERE expires < ?", (time.time(),))
        rows = self._run(_TAKE, (counter, window, expires_at, limit))
        return int(str(rows[0][0])) if rows else None

    def add_usage(self, rows: Sequence[Usage]) -> None:
        if not rows:
            return
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_ADD, [(*row.key, *(getattr(row, c) for c in COUNTS)) for row in rows])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise KeyStoreUnavailableError(f"the key store {self.path} failed: {exc}") from None

    def usage(self, consumer: str | None = None, model: str | None = None,
              since: str | None = None) -> list[Usage]:
        where, params = [], []
        for column, value, op in (("consumer", consumer, "="), ("model", model, "="), ("day", since, ">=")):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = f"SELECT consumer, model, version, day, {', '.join(COUNTS)} FROM usage"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._run(sql + " ORDER BY day, consumer, model, version", params)
        return [Usage(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(str(r[4])), int(str(r[5])), int(str(r[6])),
                      int(str(r[7])), int(str(r[8])), float(str(r[9]))) for r in rows]
