"""Framed payload codec: serialize a document, then store it raw or zstd-compressed.

Frame layout (little endian, 10-byte header)::

    magic u8 = 0xA7 | codec u8 (0 raw, 1 zstd) | dictionary id u32 (0 none) | raw length u32 | data

A payload is stored raw when it is shorter than ``min_size`` or when compression would not save at
least ``min_saving`` of it, so a stored value is never larger than its raw bytes plus the header.
Decoding checks every field and bounds memory by ``max_output_size``: a corrupt, truncated or lying
frame raises :class:`~tiered.errors.CorruptPayload` and never allocates more than the bound.
Compressed frames carry zstd's content checksum (4 bytes), so damage that still decompresses is
caught too; raw frames (small or incompressible records) carry none, and the Store checks that a
decoded record's id is its row's.

**Dictionaries.** Agent records are small and alike (the same keys, tools and phrases), which is
the case zstd dictionaries exist for: a dictionary trained on a sample of one record type
(:meth:`Codec.train`) primes the compressor with what the records share, so a 200-byte pattern
compresses instead of being stored raw (``dict_min_size`` replaces ``min_size`` once a kind has a
dictionary). Each dictionary has an id (the Store's ``dictionaries`` table assigns it); a frame
names the dictionary it was compressed with, so frames written before a retrain keep decoding, in
any process that loads the table. A frame naming a dictionary not loaded raises
:class:`~tiered.errors.UnknownDictionary`.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import zstandard

from tiered.errors import ConfigError, CorruptPayload, UnknownDictionary

__all__ = [
    "CODEC_RAW",
    "CODEC_ZSTD",
    "HEADER_SIZE",
    "MAGIC",
    "Codec",
    "CodecStats",
    "FrameStats",
    "frame_dictionary",
]

MAGIC = 0xA7
CODEC_RAW = 0
CODEC_ZSTD = 1
_HEADER = struct.Struct("<BBII")
HEADER_SIZE = _HEADER.size


@dataclass(slots=True)
class FrameStats:
    """Running totals of frames written and read (for everything, a record type, a dictionary)."""

    frames_raw: int = 0
    frames_compressed: int = 0
    bytes_raw: int = 0
    bytes_stored: int = 0
    frames_decoded: int = 0
    encode_ns: int = 0
    decode_ns: int = 0

    @property
    def ratio(self) -> float:
        """Raw bytes per stored byte (1.0 before anything was written)."""
        return self.bytes_raw / self.bytes_stored if self.bytes_stored else 1.0

    def add(self, raw: int, stored: int, compressed: bool) -> None:
        if compressed:
            self.frames_compressed += 1
        else:
            self.frames_raw += 1
        self.bytes_raw += raw
        self.bytes_stored += stored

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_raw": self.frames_raw,
            "frames_compressed": self.frames_compressed,
            "bytes_raw": self.bytes_raw,
            "bytes_stored": self.bytes_stored,
            "ratio": self.ratio,
            "frames_decoded": self.frames_decoded,
            "encode_ms": self.encode_ns / 1e6,
            "decode_ms": self.decode_ns / 1e6,
        }


@dataclass(slots=True)
class CodecStats(FrameStats):
    """Totals, plus the same per record type (``kind``) and per dictionary id."""

    by_kind: dict[str, FrameStats] = field(default_factory=dict)
    by_dictionary: dict[int, FrameStats] = field(default_factory=dict)

    def kind(self, kind: str) -> FrameStats:
        st = self.by_kind.get(kind)
        if st is None:
            st = self.by_kind[kind] = FrameStats()
        return st

    def dictionary(self, dict_id: int) -> FrameStats:
        st = self.by_dictionary.get(dict_id)
        if st is None:
            st = self.by_dictionary[dict_id] = FrameStats()
        return st

    def as_dict(self) -> dict[str, Any]:
        out = FrameStats.as_dict(self)
        out["by_kind"] = {k: v.as_dict() for k, v in sorted(self.by_kind.items())}
        out["by_dictionary"] = {k: v.as_dict() for k, v in sorted(self.by_dictionary.items())}
        return out


def frame_dictionary(frame: bytes) -> int:
    """The dictionary id a frame names (0: none), without decoding it."""
    if len(frame) < HEADER_SIZE or frame[0] != MAGIC:
        raise CorruptPayload("not a tiered frame")
    return int(_HEADER.unpack_from(frame)[2])


class _Dictionary:
    __slots__ = ("cctx", "data", "dctx", "id", "kind")

    def __init__(self, dict_id: int, kind: str, data: bytes, level: int) -> None:
        zd = zstandard.ZstdCompressionDict(data)
        self.id, self.kind, self.data = dict_id, kind, data
        self.cctx = zstandard.ZstdCompressor(level=level, dict_data=zd, write_checksum=True)
        self.dctx = zstandard.ZstdDecompressor(dict_data=zd)


class Codec:
    """Serialize + frame + (maybe) compress. Contexts are created once and reused.

    Keyword-only settings:
        level: zstd level (1..22); 3 is zstd's default balance of speed and ratio.
        min_size: payloads shorter than this many bytes are stored raw (default 256).
        min_saving: compress only when it saves at least this fraction (default 0.05).
        max_output_size: largest raw length a frame may declare (default 64 MiB).
        compress: ``False`` stores every frame raw (the "compression off" layer switch).
        threads: cores that compress a batch in parallel (:meth:`encode_many`); 1 disables it.
        dict_min_size: the ``min_size`` of a record type that has a dictionary (default 64).
    """

    def __init__(
        self,
        *,
        level: int = 3,
        min_size: int = 256,
        min_saving: float = 0.05,
        max_output_size: int = 64 * 1024 * 1024,
        compress: bool = True,
        threads: int = 2,
        dict_min_size: int = 64,
    ) -> None:
        if not 1 <= level <= 22:
            raise ConfigError(f"Codec level must be within [1, 22], got {level}")
        if min_size < 0:
            raise ConfigError(f"Codec min_size must be >= 0, got {min_size}")
        if not 0.0 <= min_saving < 1.0:
            raise ConfigError(f"Codec min_saving must be within [0, 1), got {min_saving}")
        if not 0 < max_output_size <= 0xFFFFFFFF:
            raise ConfigError(
                f"Codec max_output_size must be within [1, 2**32), got {max_output_size}"
            )
        self.level = level
        self.min_size = min_size
        self.min_saving = min_saving
        self.max_output_size = max_output_size
        if threads < 1:
            raise ConfigError(f"Codec threads must be >= 1, got {threads}")
        self.compress = compress
        self.threads = threads
        self.dict_min_size = dict_min_size
        self.counters = CodecStats()
        self._dicts: dict[int, _Dictionary] = {}
        self._active: dict[str, _Dictionary] = {}  # kind -> the dictionary new frames use
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._dctx = zstandard.ZstdDecompressor()
        # msgspec encodes the record dataclasses directly, far faster than building dicts for
        # json.dumps (benchmarks/bench_compression.py, "serializer")
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()

    def __repr__(self) -> str:
        s = self.counters
        return (
            f"<Codec level={self.level} min_size={self.min_size} compress={self.compress} "
            f"frames={s.frames_raw + s.frames_compressed} ratio={s.ratio:.2f}>"
        )

    def get_stats(self) -> dict[str, Any]:
        """Frames, bytes in and out, ratios and encode time, overall, per kind and per
        dictionary (the live counters are :attr:`counters`)."""
        return self.counters.as_dict()

    # -- dictionaries --------------------------------------------------------------------------

    def add_dictionary(
        self, dict_id: int, kind: str, data: bytes, *, activate: bool = True
    ) -> None:
        """Load a trained dictionary; with ``activate``, new frames of ``kind`` use it."""
        if not 0 < dict_id <= 0xFFFFFFFF:
            raise ConfigError(f"dictionary id must be within [1, 2**32), got {dict_id}")
        try:
            d = _Dictionary(dict_id, kind, bytes(data), self.level)
        except zstandard.ZstdError as e:
            raise CorruptPayload(f"dictionary {dict_id} does not load: {e}") from e
        self._dicts[dict_id] = d
        if activate:
            self._active[kind] = d

    def dictionaries(self) -> dict[int, str]:
        """Loaded dictionary ids and their record types."""
        return {i: d.kind for i, d in self._dicts.items()}

    def active_dictionary(self, kind: str) -> int | None:
        d = self._active.get(kind)
        return d.id if d else None

    def has_dictionary(self, dict_id: int) -> bool:
        return dict_id in self._dicts

    def train(self, samples: Sequence[bytes], *, size: int = 16384) -> bytes:
        """Train a dictionary of at most ``size`` bytes on raw payloads of one record type.

        zstd needs a few dozen samples at least; fewer (or too little variety) raise
        :class:`ValueError`.
        """
        if len(samples) < 20:
            raise ValueError(f"training needs at least 20 samples, got {len(samples)}")
        try:
            d = zstandard.train_dictionary(size, list(samples), level=self.level)
        except zstandard.ZstdError as e:
            raise ValueError(f"zstd could not train a dictionary: {e}") from e
        return bytes(d.as_bytes())

    def measure(self, samples: Sequence[bytes], dictionary: bytes | None = None) -> int:
        """Total zstd-compressed size of ``samples`` at this codec's level, optionally primed
        with ``dictionary`` (to judge a dictionary on held-out records before keeping it). A
        compressor of its own: safe on a worker thread while the codec encodes on another."""
        zd = None if dictionary is None else zstandard.ZstdCompressionDict(dictionary)
        cctx = zstandard.ZstdCompressor(level=self.level, dict_data=zd, write_checksum=True)
        return sum(len(cctx.compress(s)) for s in samples)

    # -- bytes ---------------------------------------------------------------------------------

    def _frame(
        self, raw: bytes, packed: bytes | None, d: _Dictionary | None, kind: str | None
    ) -> bytes:
        n = len(raw)
        compressed = packed is not None and len(packed) <= n * (1.0 - self.min_saving)
        if compressed:
            assert packed is not None
            frame = _HEADER.pack(MAGIC, CODEC_ZSTD, d.id if d else 0, n) + packed
        else:
            frame = _HEADER.pack(MAGIC, CODEC_RAW, 0, n) + raw
        stored = len(frame)
        self.counters.add(n, stored, compressed)
        if kind is not None:
            self.counters.kind(kind).add(n, stored, compressed)
        if compressed and d is not None:
            self.counters.dictionary(d.id).add(n, stored, True)
        return frame

    def _plan(self, kind: str | None) -> tuple[_Dictionary | None, int]:
        d = self._active.get(kind) if kind is not None else None
        return d, (min(self.min_size, self.dict_min_size) if d else self.min_size)

    def encode(self, raw: bytes, *, compress: bool = True, kind: str | None = None) -> bytes:
        """Frame ``raw`` (with ``kind``'s dictionary, if any); the result is at most
        ``len(raw) + HEADER_SIZE`` bytes.

        Raises :class:`ValueError` when ``raw`` is longer than ``max_output_size`` (such a frame
        could never be decoded); callers check sizes first and raise their own typed error.
        """
        t0 = time.perf_counter_ns()
        n = len(raw)
        if n > self.max_output_size:
            raise ValueError(f"payload of {n} bytes exceeds max_output_size {self.max_output_size}")
        d, min_size = self._plan(kind)
        packed = None
        if compress and self.compress and n >= min_size:
            packed = (d.cctx if d else self._cctx).compress(raw)
        frame = self._frame(raw, packed, d, kind)
        self._timed_encode(kind, time.perf_counter_ns() - t0)
        return frame

    def _timed_encode(self, kind: str | None, ns: int) -> None:
        self.counters.encode_ns += ns
        if kind is not None:
            self.counters.kind(kind).encode_ns += ns

    def encode_many(self, raws: list[bytes], *, kind: str | None = None) -> list[bytes]:
        """Frame many payloads; same frames as :meth:`encode`, compressed on ``threads`` cores.

        zstd releases the GIL, so a batch compresses in parallel (``multi_compress_to_buffer``);
        small batches take the single-frame path, where thread start-up would cost more.
        """
        d, min_size = self._plan(kind)
        big = [i for i, r in enumerate(raws) if self.compress and len(r) >= min_size]
        if len(big) < 16 or self.threads == 1:
            return [self.encode(r, kind=kind) for r in raws]
        t0 = time.perf_counter_ns()
        for r in raws:
            if len(r) > self.max_output_size:
                raise ValueError(
                    f"payload of {len(r)} bytes exceeds max_output_size {self.max_output_size}"
                )
        cctx = d.cctx if d else self._cctx
        packed = cctx.multi_compress_to_buffer([raws[i] for i in big], threads=self.threads)
        data: list[bytes | None] = [None] * len(raws)
        for j, i in enumerate(big):
            data[i] = packed[j].tobytes()
        out = [self._frame(r, data[i], d, kind) for i, r in enumerate(raws)]
        self._timed_encode(kind, time.perf_counter_ns() - t0)
        return out

    def decode(self, frame: bytes, *, kind: str | None = None) -> bytes:
        """The raw bytes of ``frame``; raises :class:`CorruptPayload` for anything malformed
        (:class:`UnknownDictionary` when it names a dictionary not loaded)."""
        t0 = time.perf_counter_ns()
        out = self._decode(frame)
        ns = time.perf_counter_ns() - t0
        st = self.counters
        st.frames_decoded += 1
        st.decode_ns += ns
        if kind is not None:
            ks = st.kind(kind)
            ks.frames_decoded += 1
            ks.decode_ns += ns
        return out

    def _decode(self, frame: bytes) -> bytes:
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise CorruptPayload(f"frame must be bytes, got {type(frame).__name__}")
        if len(frame) < HEADER_SIZE:
            raise CorruptPayload(f"frame of {len(frame)} bytes is shorter than its header")
        magic, codec, dict_id, n = _HEADER.unpack_from(frame)
        if magic != MAGIC:
            raise CorruptPayload(f"bad frame magic 0x{magic:02x}")
        dctx = self._dctx
        if dict_id != 0:
            if codec != CODEC_ZSTD:
                raise CorruptPayload(f"a codec {codec} frame cannot name dictionary {dict_id}")
            d = self._dicts.get(dict_id)
            if d is None:
                raise UnknownDictionary(dict_id)
            dctx = d.dctx
        if n > self.max_output_size:
            raise CorruptPayload(
                f"frame declares {n} bytes, above max_output_size {self.max_output_size}"
            )
        data = bytes(frame[HEADER_SIZE:])
        if codec == CODEC_RAW:
            if len(data) != n:
                raise CorruptPayload(f"raw frame declares {n} bytes but holds {len(data)}")
            out = data
        elif codec == CODEC_ZSTD:
            try:
                params = zstandard.get_frame_parameters(data)
            except zstandard.ZstdError as e:
                raise CorruptPayload(f"bad zstd frame: {e}") from e
            if params.content_size != n:
                raise CorruptPayload(
                    f"zstd frame declares {params.content_size} bytes, header says {n}"
                )
            # one frame, whole, and nothing after it (checked by the streaming decoder: a plain
            # decompress() ignores trailing bytes); its content checksum is verified at the end
            dobj = dctx.decompressobj()
            try:
                out = dobj.decompress(data)
            except zstandard.ZstdError as e:
                raise CorruptPayload(f"bad zstd frame: {e}") from e
            if not dobj.eof:
                raise CorruptPayload("truncated zstd frame")
            if dobj.unused_data:
                raise CorruptPayload(f"{len(dobj.unused_data)} bytes after the zstd frame")
            if len(out) != n:
                raise CorruptPayload(f"zstd frame decoded to {len(out)} bytes, header says {n}")
        else:
            raise CorruptPayload(f"unknown codec id {codec}")
        return out

    # -- documents -----------------------------------------------------------------------------

    def serialize(self, doc: Any) -> bytes:
        """JSON bytes of a document (JSON values, dataclasses, enums), not yet framed."""
        return self._encoder.encode(doc)

    def encode_doc(self, doc: Any, *, kind: str | None = None) -> bytes:
        """Serialize a document and frame it."""
        return self.encode(self.serialize(doc), kind=kind)

    def decode_doc(self, frame: bytes, *, kind: str | None = None) -> Any:
        """The JSON document stored in ``frame`` (dataclasses come back as dicts)."""
        raw = self.decode(frame, kind=kind)
        try:
            return self._decoder.decode(raw)
        except msgspec.DecodeError as e:
            raise CorruptPayload(f"frame does not hold a JSON document: {e}") from e
