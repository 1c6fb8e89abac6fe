"""Compression dictionaries of a Store: sampled while records are written, trained in the
background once enough were, stored in the ``dictionaries`` table so every process decodes
every frame, and loaded again when a frame names one this process lacks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from tiered.compression import Codec
from tiered.db import statements as q
from tiered.db.database import Database
from tiered.db.driver import as_bytes, as_int, as_str
from tiered.errors import TieredError, ValidationError
from tiered.store.config import MIN_DICT_RECORDS, StoreConfig
from tiered.store.records import KINDS, PAYLOAD_KINDS

__all__ = ["Dictionaries"]

log = logging.getLogger("tiered.store")


class Dictionaries:
    """Dictionary sampling, training and loading for the payload kinds of one Store.

    From ``config``: train a kind's dictionary once ``dictionary_after`` of its records were
    written through this Store and none exists (0: only on demand), on ``dictionary_sample``
    payloads, ``dictionary_size`` bytes large.
    """

    def __init__(
        self, db: Database, codec: Codec, config: StoreConfig, *, clock: Callable[[], int]
    ) -> None:
        self._db = db
        self.codec = codec
        self.after = config.dictionary_after
        self.sample_size, self.size = config.dictionary_sample, config.dictionary_size
        self._clock = clock
        # a reservoir sample of raw payloads per kind, how many were written, the highest id
        # loaded, the kinds being trained and the background tasks training them
        self._samples: dict[str, list[bytes]] = {k: [] for k in PAYLOAD_KINDS}
        self._written: dict[str, int] = dict.fromkeys(PAYLOAD_KINDS, 0)
        self._rng = random.Random(0x5EED)
        self._training: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._upto = 0

    def get_stats(self) -> dict[str, object]:
        return {
            "dictionaries": self.codec.dictionaries(),
            "active_dictionaries": {k: self.codec.active_dictionary(k) for k in PAYLOAD_KINDS},
        }

    async def load(self, *, activate: bool = False) -> int:
        """Load dictionaries added to the table since the last load; returns how many.

        With ``activate`` (at open) the newest of each record type is used for new frames;
        otherwise (a frame named one we lacked) they only become decodable.
        """
        # from the primary: a frame may name a dictionary a replica has not received yet
        rows = await self._db.read(q.LOAD_DICTIONARIES, (self._upto,), primary=True)
        for dict_id, kind, data in rows:
            did, k = as_int(dict_id), as_str(kind)
            self._upto = max(self._upto, did)
            if not self.codec.has_dictionary(did):
                use = activate or self.codec.active_dictionary(k) is None
                self.codec.add_dictionary(did, k, as_bytes(data), activate=use)
        return len(rows)

    def sample(self, kind: str, raws: list[bytes]) -> None:
        """Reservoir-sample raw payloads of ``kind`` while it has no dictionary."""
        if (
            not self.after
            or kind not in self._samples
            or self.codec.active_dictionary(kind) is not None
        ):
            return
        sample, cap = self._samples[kind], self.sample_size
        for raw in raws:
            self._written[kind] += 1
            if len(sample) < cap:
                sample.append(raw)
            else:
                j = self._rng.randrange(self._written[kind])
                if j < cap:
                    sample[j] = raw

    def maybe_train(self, kind: str) -> None:
        """Start training ``kind``'s dictionary in the background once enough was written.

        The write that crossed the threshold does not wait for it (training takes ~0.1 s and runs
        in a thread); :meth:`settle` waits for it.
        """
        if (
            not self.after
            or kind not in self._samples
            or self._written[kind] < self.after
            or kind in self._training
            or self.codec.active_dictionary(kind) is not None
            or self._db.read_only is not None
        ):
            return
        samples, self._samples[kind] = self._samples[kind], []
        self._training.add(kind)

        async def train() -> None:
            try:
                await self._train(kind, samples)
            except (ValueError, TieredError) as e:
                # never fails a write; tries again after as many more records
                log.warning("automatic dictionary training for %s failed: %s", kind, e)
                self._written[kind] = 0

        task = asyncio.get_running_loop().create_task(train(), name=f"tiered-train-{kind}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for dictionaries being trained in the background."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def train(self, kind: str, *, sample: int | None = None) -> int | None:
        """Train a zstd dictionary for a record type on its most recently stored payloads.

        ``kind`` is ``"episodes"``, ``"patterns"`` or ``"heuristics"``; ``sample`` how many
        recent payloads train it (default ``StoreConfig.dictionary_sample``). The dictionary is
        stored (the ``dictionaries`` table gives its id) and new frames of that type use it;
        frames written before keep naming the dictionary they were compressed with, so they
        still decode. Returns the new id, or ``None`` when the dictionary would not shrink
        held-out records by at least 5 % (then nothing is stored). Raises
        :class:`ValidationError` for an unknown kind, fewer than :data:`MIN_DICT_RECORDS` stored
        records, or records too uniform for zstd to train on.
        """
        if not isinstance(kind, str) or kind not in PAYLOAD_KINDS:
            raise ValidationError("kind", f"must be one of {', '.join(PAYLOAD_KINDS)}")
        n = self.sample_size if sample is None else sample
        if isinstance(n, bool) or not isinstance(n, int) or n < MIN_DICT_RECORDS:
            raise ValidationError("sample", f"must be an integer >= {MIN_DICT_RECORDS}")
        self._db.check_writable()
        stmt = KINDS[kind].sample
        assert stmt is not None
        rows = await self._db.read(stmt, (n,))
        raws = [self.codec.decode(as_bytes(r[0]), kind=kind) for r in rows]
        if len(raws) < MIN_DICT_RECORDS:
            raise ValidationError(
                "kind",
                f"needs at least {MIN_DICT_RECORDS} stored {kind} to train, found {len(raws)}",
            )
        try:
            return await self._train(kind, raws)
        except TieredError:
            raise
        except ValueError as e:  # zstd found too little to learn from
            raise ValidationError("kind", f"cannot train a dictionary for {kind}: {e}") from e

    def _fit(self, train: list[bytes], held: list[bytes]) -> tuple[bytes, int, int]:
        """Train on ``train`` and measure ``held`` without and with the dictionary (on a worker
        thread: tens of milliseconds of compression the event loop does not wait for)."""
        data = self.codec.train(train, size=self.size)
        return data, self.codec.measure(held), self.codec.measure(held, data)

    async def _train(self, kind: str, raws: list[bytes]) -> int | None:
        self._training.add(kind)  # (already there when started by maybe_train)
        try:
            cut = max(1, len(raws) // 5)
            held, train = raws[:cut], raws[cut:]
            data, plain, primed = await asyncio.to_thread(self._fit, train, held)
            if primed > 0.95 * plain:
                log.info("dictionary for %s not kept: %d vs %d bytes held out", kind, primed, plain)
                return None
            rows = (
                await self._db.execute(
                    q.INSERT_DICTIONARY,
                    (kind, data, len(train), sum(map(len, train)), self._clock()),
                )
            ).rows
            dict_id = as_int(rows[0][0])
            self.codec.add_dictionary(dict_id, kind, data, activate=True)
            log.info(
                "dictionary %d for %s: held-out records %d -> %d bytes",
                dict_id,
                kind,
                plain,
                primed,
            )
            return dict_id
        finally:
            self._training.discard(kind)
