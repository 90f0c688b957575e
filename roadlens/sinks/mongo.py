"""MongoDB sink: one time-series collection per table, idempotent per video.

Layout (database ``roadlens`` by default):

- ``detections`` / ``events``: time-series, ``timeField=captured_at``, ``metaField=meta``
  holding ``{source_id, vehicle_id, session_id, class_name, video_id, export_id,
  write_id}`` (events add ``rule_id``); ``event_stats`` uses ``bin_start`` and
  ``heatmaps`` ``captured_at``. Buckets span an hour (a day for the sparse stats and heat
  map cells), per ``research/sinks.md`` §2; servers older than 6.3 get ``granularity``.
- GPS becomes a GeoJSON point ``loc: {type: "Point", coordinates: [lon, lat]}`` (absent
  without a fix) with a ``2dsphere`` index; ``meta.video_id`` + time is indexed too.
- ``export_batches``: one commit marker per (table, video):
  ``{_id: "<table>:<video_id>", export_id, write_id, fingerprint, rows, committed_at}``.
- ``locks``: one lease per (table, video) while a write runs.

Time-series collections allow no unique index and no writes in transactions, so a write
cannot atomically replace a video's documents. Instead (research/sinks.md §2, option 1):

1. insert the new documents tagged ``meta.write_id`` (a fresh id per attempt, next to the
   Dagster ``export_id``: a retried step reuses its run id) with unordered ``insert_many``;
2. upsert the commit marker, which switches readers to the new ``write_id``;
3. delete every document of the video with another ``write_id``.

Between 1 and 3 a plain ``find({"meta.video_id": v})`` may see two versions, and after a
crash between 1 and 2 it sees orphans; readers that must never see that filter on the
committed ``write_id`` with :meth:`MongoSink.committed_filter` (or use
:meth:`MongoSink.read_video`). The next write of the video deletes any orphans. Writes of
one video are serialized by a lease in ``locks`` that expires after ``lock_ttl_s`` if the
holder crashed.

BSON dates hold milliseconds: ``captured_at`` keeps ms precision, ``pts_sec`` stays exact.

Example:
    >>> with MongoSink.from_url("mongodb://127.0.0.1:27017") as sink:  # doctest: +SKIP
    ...     sink.write_video("detections", "veh-01--clip", table, export_id="run-1")
    ...     sink.collection("detections").find(sink.committed_filter("detections", "veh-01--clip"))
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pymongo
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from roadlens.lake import SINK_TABLES
from roadlens.redact import redact, scrub
from roadlens.sinks.base import (
    SinkBase,
    SinkError,
    SinkWrite,
    Stopwatch,
    id_column,
    percentiles_ms,
)

MARKERS = "export_batches"
LOCKS = "locks"
# Fields of ``meta`` that the sink adds (not columns of the table).
TAG_FIELDS = ("export_id", "write_id")
_NAMESPACE_EXISTS = 48  # server error code of a create that lost a race


@dataclass(frozen=True)
class Layout:
    """How one table maps onto a time-series collection."""

    time_field: str
    meta_fields: tuple[str, ...]
    bucket_seconds: int  # bucketMaxSpanSeconds = bucketRoundingSeconds (MongoDB 6.3+)
    granularity: str  # fallback for older servers
    geo: bool  # has lat/lon -> GeoJSON ``loc``


LAYOUTS: dict[str, Layout] = {
    "detections": Layout(
        "captured_at",
        ("source_id", "vehicle_id", "session_id", "class_name", "video_id"),
        3600,
        "seconds",
        True,
    ),
    "events": Layout(
        "captured_at",
        ("source_id", "vehicle_id", "session_id", "class_name", "video_id", "rule_id"),
        3600,
        "seconds",
        True,
    ),
    # One point per bin per series: a day-long bucket keeps a day of bins together.
    "event_stats": Layout(
        "bin_start",
        ("source_id", "video_id", "rule_id", "class_name", "direction"),
        86400,
        "hours",
        False,
    ),
    # All cells of a heat map share one timestamp; many series, few points each.
    "heatmaps": Layout(
        "captured_at",
        ("source_id", "video_id", "heatmap_id", "space", "weight"),
        86400,
        "hours",
        True,
    ),
}


def _brief(exc: BaseException) -> str:
    """An error's text without pymongo's topology dump (which can run to kilobytes)."""
    return str(exc).split(", Timeout:")[0].split(", Topology Description:")[0][:500]


def is_mongomock(client: object) -> bool:
    """True for a ``mongomock.MongoClient`` (which has no time-series collections)."""
    return type(client).__module__.split(".")[0] == "mongomock"


def _float32_values(column: pa.ChunkedArray) -> list[float | None]:
    # The shortest decimal text of each float32 (as encode.py writes JSON), so documents
    # read 764.354 rather than 764.35400390625 and still round-trip to the same float32.
    # Arrow's cast does it in C++ (0.1 us a value; numpy's astype(str) takes 0.8 us).
    return pc.cast(pc.cast(column, pa.string()), pa.float64()).to_pylist()


def _datetime_values(column: pa.ChunkedArray) -> list[datetime | None]:
    # Naive UTC datetimes straight from numpy: 0.05 us a value against 3.5 us for
    # to_pylist()'s zone-aware ones. BSON dates are UTC milliseconds either way.
    return column.to_numpy().astype("datetime64[ms]").astype(object).tolist()


def _json_value(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # not JSON: kept verbatim rather than lost


def _column_values(name: str, column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_float32(column.type):
        return _float32_values(column)
    if pa.types.is_timestamp(column.type):
        return _datetime_values(column)
    values = column.to_pylist()
    if name == "attributes":
        # JSON text becomes a sub-document, so Mongo queries can reach inside it.
        return [_json_value(v) for v in values]
    return values


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Building 100 k acyclic dicts triggers many generation-0 collections that find
    # nothing; pausing the collector halves the conversion time (measured 8.5 -> 4.3 us/row).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def to_documents(
    table: str, data: pa.Table, *, export_id: str, write_id: str
) -> list[dict[str, Any]]:
    """``data``'s rows as time-series documents (columns first, then one zip per row).

    >>> from roadlens.synth.tables import synthetic_detections
    >>> detections = synthetic_detections(3, video_id="veh-01--clip")
    >>> docs = to_documents("detections", detections, export_id="r1", write_id="w1")
    >>> len(docs), docs[0]["meta"]["video_id"], docs[0]["meta"]["write_id"], docs[0]["loc"]
    (3, 'veh-01--clip', 'w1', {'type': 'Point', 'coordinates': [13.4, 52.5]})
    >>> from_documents("detections", docs).equals(detections)  # the inverse
    True
    """
    with _gc_paused():
        return _documents(table, data, export_id=export_id, write_id=write_id)


def _documents(
    table: str, data: pa.Table, *, export_id: str, write_id: str
) -> list[dict[str, Any]]:
    layout = LAYOUTS[table]
    meta_names = [n for n in layout.meta_fields if n in data.column_names]
    hidden = set(meta_names) | ({"lat", "lon"} if layout.geo else set())
    names = [n for n in data.column_names if n not in hidden]
    columns = [_column_values(n, data.column(n)) for n in names]
    tags = {"export_id": export_id, "write_id": write_id}
    # Rows of one series share one meta dict (BSON-encoded per document all the same).
    metas_by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    metas: list[dict[str, Any]] = []
    for key in zip(*(data.column(n).to_pylist() for n in meta_names), strict=True):
        meta = metas_by_key.get(key)
        if meta is None:
            meta = metas_by_key[key] = {**dict(zip(meta_names, key, strict=True)), **tags}
        metas.append(meta)
    keys = [*names, "meta"]
    docs = [dict(zip(keys, row, strict=True)) for row in zip(*columns, metas, strict=True)]
    if layout.geo:
        lat = data.column("lat").to_numpy(zero_copy_only=False).astype(np.float64)
        lon = data.column("lon").to_numpy(zero_copy_only=False).astype(np.float64)
        fix = ~(np.isnan(lat) | np.isnan(lon))
        bad = fix & ((np.abs(lat) > 90) | (np.abs(lon) > 180))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} rows have coordinates outside lat [-90, 90] / lon "
                f"[-180, 180] (first: row {first}, lat={lat[first]}, lon={lon[first]})"
            )
        where = np.flatnonzero(fix)
        for index, x, y in zip(
            where.tolist(), lon[where].tolist(), lat[where].tolist(), strict=True
        ):
            docs[index]["loc"] = {"type": "Point", "coordinates": [x, y]}
    return docs


def from_documents(table: str, docs: Sequence[dict[str, Any]]) -> pa.Table:
    """The inverse of :func:`to_documents`: documents back to rows of ``table``'s schema."""
    schema = SINK_TABLES[table]
    rows = []
    for doc in docs:
        row = {k: v for k, v in doc.items() if k not in ("_id", "meta", "loc")}
        row.update((k, v) for k, v in doc.get("meta", {}).items() if k not in TAG_FIELDS)
        loc = doc.get("loc")
        if loc:
            row["lon"], row["lat"] = loc["coordinates"]
        if isinstance(row.get("attributes"), dict | list):
            row["attributes"] = json.dumps(row["attributes"])
        rows.append(row)
    # Naive datetimes (a client without tz_aware=True) are UTC: BSON dates have no zone.
    return pa.Table.from_pylist(rows, schema=schema)


class _Lease:
    """A lock document ``{_id, owner, export_id, expires_at}`` that expires if not renewed."""

    def __init__(
        self, locks: Collection[Any], key: str, *, export_id: str, ttl_s: float, where: str
    ) -> None:
        self.locks = locks
        self.key = key
        self.owner = uuid.uuid4().hex
        self.export_id = export_id
        self.ttl = timedelta(seconds=ttl_s)
        self.where = where

    def _take(self) -> bool:
        now = datetime.now(UTC)
        try:
            # Matches a free (expired) lease or our own; otherwise the upsert collides with
            # the holder's _id and raises DuplicateKeyError: that is "held by someone else".
            self.locks.find_one_and_update(
                {"_id": self.key, "$or": [{"expires_at": {"$lte": now}}, {"owner": self.owner}]},
                {
                    "$set": {
                        "owner": self.owner,
                        "export_id": self.export_id,
                        "expires_at": now + self.ttl,
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    def acquire(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        pause = 0.05
        while not self._take():
            if time.monotonic() >= deadline:
                holder = self.locks.find_one({"_id": self.key}) or {}
                raise SinkError(
                    f"{self.where}: locked by export {holder.get('export_id')!r} until "
                    f"{holder.get('expires_at')} (waited {wait_s:g}s)"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def renew(self) -> None:
        """Extend the lease; fails when it expired and another writer took it."""
        result = self.locks.update_one(
            {"_id": self.key, "owner": self.owner},
            {"$set": {"expires_at": datetime.now(UTC) + self.ttl}},
        )
        if result.matched_count != 1:
            raise SinkError(
                f"{self.where}: lost the write lock (expired after {self.ttl.total_seconds():g}s "
                "and taken by another writer); nothing was committed"
            )

    def release(self) -> None:
        self.locks.delete_one({"_id": self.key, "owner": self.owner})


class MongoSink(SinkBase):
    """Idempotent per-video writes into MongoDB time-series collections.

    ``client`` is a ``pymongo.MongoClient`` (``tz_aware=True`` recommended) or, in tests
    only, a ``mongomock.MongoClient``: mongomock has no time-series collections, so the
    sink falls back to regular collections there and says so in each write's ``extra``.
    """

    name = "mongo"

    def __init__(
        self,
        client: Any,
        database: str = "roadlens",
        *,
        batch_size: int = 10_000,
        lock_ttl_s: float = 300.0,
        lock_wait_s: float = 120.0,
        write_concern: str | int = "majority",
    ) -> None:
        self.client = client
        self.db = client[database]
        self.batch_size = batch_size
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self.mongomock = is_mongomock(client)
        self.target = "mongomock" if self.mongomock else f"database {database!r}"
        self._url = ""
        self._owns_client = False
        self._write_concern = pymongo.WriteConcern(w=write_concern)
        self._kinds: dict[str, str] = {}

    @classmethod
    def from_url(
        cls, url: str, database: str = "roadlens", *, timeout_s: float = 10.0, **kw: Any
    ) -> Self:
        """Connect to ``mongodb://[user:pw@]host[:port]`` and check the server answers."""
        try:
            client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
                url,
                tz_aware=True,
                serverSelectionTimeoutMS=int(timeout_s * 1000),
                appname="roadlens",
            )
            client.admin.command("ping")
        except PyMongoError as exc:
            reason = scrub(_brief(exc), url)
            raise SinkError(f"mongo ({redact(url)}): cannot connect: {reason}") from None
        sink = cls(client, database, **kw)
        sink.target = f"{redact(url)} database {database!r}"
        sink._url = url
        sink._owns_client = True
        return sink

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _error(self, message: str) -> SinkError:
        return SinkError(f"mongo ({self.target}): {scrub(message, self._url)}")

    # --- collections --------------------------------------------------------------------

    @property
    def markers(self) -> Collection[Any]:
        return self.db[MARKERS].with_options(write_concern=self._write_concern)

    def collection(self, table: str) -> Collection[Any]:
        """The collection of ``table``, created (time-series, indexed) on first use."""
        if table not in self._kinds:
            self._kinds[table] = self._ensure(table)
        return self.db[table].with_options(write_concern=self._write_concern)

    def _ensure(self, table: str) -> str:
        layout = LAYOUTS[table]
        if self.mongomock:
            # mongomock only: it raises NotImplementedError for time-series options. The
            # write protocol is the same; bucketing and its limits are not simulated.
            kind = "regular (mongomock: no time-series collections)"
            if table not in self.db.list_collection_names():
                self.db.create_collection(table)
        else:
            kind = self._ensure_timeseries(table, layout)
        collection = self.db[table]
        collection.create_index([("meta.video_id", 1), (layout.time_field, 1)])
        if layout.geo:
            collection.create_index([("loc", pymongo.GEOSPHERE)])
        return kind

    def _ensure_timeseries(self, table: str, layout: Layout) -> str:
        existing = next(iter(self.db.list_collections(filter={"name": table})), None)
        if existing is None:
            with contextlib.suppress(pymongo.errors.CollectionInvalid):  # a concurrent create
                self._create_timeseries(table, layout)
            existing = next(iter(self.db.list_collections(filter={"name": table})), None)
        if existing is None:
            return "regular"
        return "timeseries" if existing.get("type") == "timeseries" else "regular"

    def _create_timeseries(self, table: str, layout: Layout) -> None:
        base = {"timeField": layout.time_field, "metaField": "meta"}
        bucketing = {
            "bucketMaxSpanSeconds": layout.bucket_seconds,
            "bucketRoundingSeconds": layout.bucket_seconds,
        }
        try:
            self.db.create_collection(table, timeseries={**base, **bucketing})
        except OperationFailure as exc:
            if exc.code == _NAMESPACE_EXISTS:
                return
            # Custom bucketing needs MongoDB 6.3+; older servers take a granularity.
            try:
                self.db.create_collection(
                    table, timeseries={**base, "granularity": layout.granularity}
                )
            except OperationFailure as again:
                if again.code != _NAMESPACE_EXISTS:
                    raise

    # --- writes -------------------------------------------------------------------------

    @contextmanager
    def video_lock(self, table: str, video_id: str, *, export_id: str = "") -> Iterator[_Lease]:
        """Hold the write lease of (``table``, ``video_id``) for the ``with`` block."""
        lease = _Lease(
            self.db[LOCKS],
            f"{table}:{video_id}",
            export_id=export_id,
            ttl_s=self.lock_ttl_s,
            where=f"mongo ({self.target}): {table} video {video_id!r}",
        )
        lease.acquire(self.lock_wait_s)
        try:
            yield lease
        finally:
            lease.release()

    def write_video(
        self, table: str, video_id: str, data: pa.Table, *, export_id: str, fingerprint: str = ""
    ) -> SinkWrite:
        """Make ``table`` hold exactly ``data`` for ``video_id`` (empty removes the video)."""
        data = self.prepare(table, video_id, data)
        where = f"{table} video {video_id!r}"
        write_id = uuid.uuid4().hex
        latencies: list[float] = []
        inserted = deleted = 0
        try:
            collection = self.collection(table)
            with (
                Stopwatch() as watch,
                self.video_lock(table, video_id, export_id=export_id) as lease,
            ):
                if data.num_rows == 0:
                    # Forget the marker first, so readers see nothing rather than a half delete.
                    self.markers.delete_one({"_id": f"{table}:{video_id}"})
                    deleted = collection.delete_many({"meta.video_id": video_id}).deleted_count
                else:
                    try:
                        docs = to_documents(table, data, export_id=export_id, write_id=write_id)
                    except ValueError as exc:
                        raise self._error(f"{where}: {exc}") from None
                    for start in range(0, len(docs), self.batch_size):
                        began = time.perf_counter()
                        result = collection.insert_many(
                            docs[start : start + self.batch_size], ordered=False
                        )
                        latencies.append(time.perf_counter() - began)
                        inserted += len(result.inserted_ids)
                        lease.renew()
                    if inserted != data.num_rows:
                        raise self._error(f"{where}: inserted {inserted} of {data.num_rows} rows")
                    self._commit(
                        table,
                        video_id,
                        export_id=export_id,
                        write_id=write_id,
                        fingerprint=fingerprint,
                        rows=data.num_rows,
                    )
                    deleted = collection.delete_many(
                        {"meta.video_id": video_id, "meta.write_id": {"$ne": write_id}}
                    ).deleted_count
        except BulkWriteError as exc:
            details = exc.details or {}
            errors = details.get("writeErrors") or [{}]
            raise self._error(
                f"{where}: {inserted + details.get('nInserted', 0)} of {data.num_rows} rows "
                f"inserted, nothing committed; first error: {errors[0].get('errmsg')}"
            ) from None
        except PyMongoError as exc:
            raise self._error(f"{where}: {type(exc).__name__}: {_brief(exc)}") from None
        return SinkWrite(
            sink=self.name,
            table=table,
            video_id=video_id,
            rows=data.num_rows,
            bytes=data.nbytes,
            seconds=watch.seconds,
            latency_ms=percentiles_ms(latencies),
            extra={
                "collection": self._kinds.get(table, ""),
                "batches": len(latencies),
                "stale_deleted": deleted,
                "write_id": write_id,
            },
        )

    def _commit(
        self,
        table: str,
        video_id: str,
        *,
        export_id: str,
        write_id: str,
        fingerprint: str,
        rows: int,
    ) -> None:
        """Upsert the commit marker: from here on readers see the new ``write_id``."""
        self.markers.replace_one(
            {"_id": f"{table}:{video_id}"},
            {
                "table": table,
                "video_id": video_id,
                "export_id": export_id,
                "write_id": write_id,
                "fingerprint": fingerprint,
                "rows": rows,
                "committed_at": datetime.now(UTC),
            },
            upsert=True,
        )

    # --- reads --------------------------------------------------------------------------

    def committed(self, table: str, video_ids: Sequence[str]) -> dict[str, str]:
        """``{video_id: fingerprint}`` from the commit markers."""
        keys = [f"{table}:{v}" for v in video_ids]
        try:
            found = self.db[MARKERS].find({"_id": {"$in": keys}}, {"video_id": 1, "fingerprint": 1})
            return {doc["video_id"]: doc.get("fingerprint", "") for doc in found}
        except PyMongoError as exc:
            raise self._error(f"{table}: reading commit markers: {_brief(exc)}") from None

    def committed_filter(self, table: str, video_id: str) -> dict[str, Any]:
        """A query filter matching exactly the committed documents of ``video_id``.

        Use it wherever two versions of a video must never be seen (during a re-write, or
        orphans after a crashed write). Without a commit the filter matches nothing.

        >>> sink.collection("events").count_documents(sink.committed_filter("events", v))  # doctest: +SKIP
        42
        """
        marker = self.db[MARKERS].find_one({"_id": f"{table}:{video_id}"}, {"write_id": 1})
        if marker is None:
            return {"meta.video_id": video_id, "meta.write_id": {"$in": []}}
        return {"meta.video_id": video_id, "meta.write_id": marker["write_id"]}

    def read_video(self, table: str, video_id: str) -> pa.Table:
        """The committed rows of ``video_id`` in ``table``'s schema, sorted by time and id."""
        docs = list(self.collection(table).find(self.committed_filter(table, video_id)))
        rows = from_documents(table, docs)
        keys = [(LAYOUTS[table].time_field, "ascending")]
        if id_column(table):
            keys.append((id_column(table), "ascending"))
        return rows.sort_by(keys)
