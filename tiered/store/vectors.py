"""Embeddings: the model registry, their write steps, and nearest-neighbour search.

A model's dimension is fixed by its first embedding. On sqld each model also gets a libSQL vector
table with an ANN index (``F32_BLOB(dim)`` needs a fixed dimension); the embedded backend
searches exactly. Distances are recomputed in float64 and ties broken by id, so every backend
returns the same neighbours in the same order.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from tiered.db import statements as q
from tiered.db.database import Database
from tiered.db.driver import Row, Statement, Step, Value, as_int, as_str
from tiered.db.schema import vector_table_ddl
from tiered.errors import ValidationError
from tiered.model import Embedding
from tiered.store.config import MAX_LIMIT, check_limit
from tiered.store.records import decode_embedding
from tiered.validation import check_id, check_vector

__all__ = ["Vectors", "rank"]


class Vectors:
    """The model registry of one Store (model name -> (id, dim), immutable once registered, so
    this never goes stale) and the search over it."""

    def __init__(
        self, db: Database, *, read: Callable[[Statement, Sequence[Value]], Awaitable[list[Row]]]
    ) -> None:
        self._db = db
        self._read = read  # the Store's reads: at least as new as its cache's change feed
        self._models: dict[str, tuple[int, int]] = {}

    def _mark(self, model: str, now: int) -> Step:
        return (q.LOG_MARK, ("embedding_models", model, now))

    async def model(self, model: str, dim: int | None, now: int) -> tuple[int, int] | None:
        """``(model id, dim)`` of a model, registering it with ``dim`` if given and new."""
        known = self._models.get(model)
        if known is not None:
            return known
        db = self._db
        # the registry is read from the primary: it is small, read once per model, and a
        # replica may not have a model registered a moment ago
        rows = await db.read(q.GET_MODEL, (model,), primary=True)
        if not rows and dim is not None:
            await db.write([(q.REGISTER_MODEL, (model, dim)), self._mark(model, now)])
            rows = await db.read(q.GET_MODEL, (model,), primary=True)
        if not rows:
            return None
        known = (as_int(rows[0][0]), as_int(rows[0][1]))
        if db.backend != "file" and db.read_only is None:
            # libSQL's ANN index needs a fixed-dimension column: one table per model (created
            # by whoever first uses the model in a process; a read-only store finds it there)
            ddl = vector_table_ddl(*known)
            await db.write(
                [(Statement("vector_table_ddl", sql, reuse=False), ()) for sql in ddl]
                + [self._mark(model, now)]
            )
        self._models[model] = known
        return known

    async def steps(self, es: list[Embedding], now: int) -> list[Step]:
        """Write steps of a batch of embeddings, registering new models first. Every model's
        dimension is checked before any is registered: a vector of the wrong dimension raises
        :class:`ValidationError` naming the model, before anything is written."""
        dims: dict[str, int] = {}
        for i, e in enumerate(es):
            if dims.setdefault(e.model, e.dim) != e.dim:
                raise ValidationError(
                    f"embeddings[{i}].vector",
                    f"model {e.model!r} has dimension {dims[e.model]} in this batch, got {e.dim}",
                )
        for model, dim in dims.items():
            known = self._models.get(model) or await self.model(model, None, now)
            if known is not None and known[1] != dim:
                raise ValidationError(
                    "vector", f"model {model!r} has dimension {known[1]}, got {dim}"
                )
        ids: dict[str, int] = {}
        for m, d in dims.items():
            registered = await self.model(m, d, now)
            assert registered is not None  # registered with its dimension just above
            ids[m] = registered[0]
        return [
            (
                q.UPSERT_EMBEDDING,
                (e.id, e.owner_id, e.owner_kind, ids[e.model], e.vector.tobytes(), now, now),
            )
            for e in es
        ]

    async def check_model(self, model: str, dim: int, now: int) -> int | None:
        """The id of ``model`` if it is registered (``None`` if not); a model of another
        dimension than ``dim`` raises :class:`ValidationError`."""
        known = await self.model(model, None, now)
        if known is None:
            return None
        if known[1] != dim:
            raise ValidationError("vector", f"model {model!r} has dimension {known[1]}, got {dim}")
        return known[0]

    async def models_of_dim(self, dim: int, now: int) -> list[int]:
        """The ids of every model of dimension ``dim`` (registering them with this store)."""
        rows = await self._db.read(q.MODELS_BY_DIM, (dim,), primary=True)
        for _, name in rows:
            await self.model(as_str(name), None, now)
        return [as_int(r[0]) for r in rows]

    async def search(
        self,
        probe: array[float],
        k: int,
        model_id: int | None,
        owner_kind: str | None,
        exact: bool,
        now: int,
    ) -> list[tuple[Embedding, float]]:
        """The ``k`` nearest embeddings to ``probe`` in ``model_id`` (``None``: every model of
        the probe's dimension), ranked by :func:`rank`."""
        ids = [model_id] if model_id is not None else await self.models_of_dim(len(probe), now)
        rows: list[Row] = []
        for mid in ids:
            rows += await self.candidates(mid, probe, k, owner_kind, exact)
        return rank([decode_embedding(r) for r in rows], probe, k)

    async def candidates(
        self, model_id: int, probe: array[float], k: int, owner_kind: str | None, exact: bool
    ) -> list[Row]:
        """Rows (as :data:`EMBEDDINGS` decodes them) near ``probe`` within one model."""
        read = self._read
        if self._db.backend == "file":
            stmt = q.EMBEDDINGS_OF_MODEL if owner_kind is None else q.EMBEDDINGS_OF_MODEL_KIND
            args: list[Value] = [model_id] if owner_kind is None else [model_id, owner_kind]
            return await read(stmt, args)
        blob = probe.tobytes()
        if not exact:
            # Over-fetch from the ANN index and rerank exactly. An index that yields fewer
            # candidates than asked is small (an exact scan is cheap) or degraded (libSQL's
            # DiskANN loses nodes when tiny graphs are rewritten): fall back to exact then.
            fetch = min(MAX_LIMIT, max(64, (4 if owner_kind is None else 8) * k))
            rows = await read(q.vector_nearest(model_id), (blob, fetch))
            if len(rows) >= fetch:
                if owner_kind is not None:
                    rows = [r for r in rows if r[2] == owner_kind]
                if len(rows) >= k:
                    return rows
        args = [blob, model_id, min(MAX_LIMIT, 2 * k)]
        if owner_kind is not None:
            args.append(owner_kind)
        return await read(q.nearest_exact(owner_kind is not None), args)


def check_search(
    vector: object, k: object, owner_kind: object, exact: object
) -> tuple[array[float], int]:
    """The probe vector and ``k`` of a search, with its other arguments checked
    (:class:`ValidationError` naming the argument)."""
    probe = check_vector("vector", vector)
    n = check_limit(k, "k")
    if owner_kind is not None:
        check_id("owner_kind", owner_kind)
    if not isinstance(exact, bool):
        raise ValidationError("exact", f"must be a bool, got {type(exact).__name__}")
    return probe, n


def rank(cands: list[Embedding], probe: array[float], k: int) -> list[tuple[Embedding, float]]:
    """The ``k`` candidates closest to ``probe`` by cosine distance (float64), ties by id."""
    if not cands:
        return []
    p = np.frombuffer(probe, dtype=np.float32).astype(np.float64)
    m = np.stack([np.frombuffer(e.vector, dtype=np.float32) for e in cands]).astype(np.float64)
    norms = np.linalg.norm(m, axis=1) * np.linalg.norm(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(norms > 0, (m @ p) / np.where(norms > 0, norms, 1.0), 0.0)
    dist = [1.0 - float(s) for s in sim]
    order = sorted(range(len(cands)), key=lambda i: (dist[i], cands[i].id))
    return [(cands[i], dist[i] if math.isfinite(dist[i]) else 1.0) for i in order[:k]]
