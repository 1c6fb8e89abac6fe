"""Framed payload codec: serialize a document, then store it raw or zstd-compressed.

Frame layout (little endian, 10-byte header)::

    magic u8 = 0xA7 | codec u8 (0 raw, 1 zstd) | dictionary id u32 (0 none) | raw length u32 | data

A payload is stored raw when it is shorter than ``min_size`` or when compression would not save at
least ``min_saving`` of it, so a stored value is never larger than its raw bytes plus the header.
Decoding checks every field and bounds memory by ``max_output_size``: a corrupt, truncated or lying
frame raises :class:`~tiered.errors.CorruptPayload` and never allocates more than the bound.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgspec
import zstandard

from tiered.errors import ConfigError, CorruptPayload

__all__ = ["CODEC_RAW", "CODEC_ZSTD", "HEADER_SIZE", "MAGIC", "Codec", "CodecStats"]

MAGIC = 0xA7
CODEC_RAW = 0
CODEC_ZSTD = 1
_HEADER = struct.Struct("<BBII")
HEADER_SIZE = _HEADER.size


@dataclass(slots=True)
class CodecStats:
    """Running totals of what the codec wrote and read."""

    frames_raw: int = 0
    frames_compressed: int = 0
    bytes_raw: int = 0
    bytes_stored: int = 0
    frames_decoded: int = 0

    @property
    def ratio(self) -> float:
        """Raw bytes per stored byte (1.0 before anything was written)."""
        return self.bytes_raw / self.bytes_stored if self.bytes_stored else 1.0


class Codec:
    """Serialize + frame + (maybe) compress. Contexts are created once and reused.

    Keyword-only settings:
        level: zstd level (1..22); 3 is zstd's default balance of speed and ratio.
        min_size: payloads shorter than this many bytes are stored raw (default 256).
        min_saving: compress only when it saves at least this fraction (default 0.05).
        max_output_size: largest raw length a frame may declare (default 64 MiB).
        compress: ``False`` stores every frame raw (the "compression off" layer switch).
        threads: cores that compress a batch in parallel (:meth:`encode_many`); 1 disables it.
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
        self.stats = CodecStats()
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._dctx = zstandard.ZstdDecompressor()
        # msgspec encodes the record dataclasses directly: ~10x faster than building dicts for
        # json.dumps on realistic episodes (measured in benchmarks/bench_store.py).
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Codec level={self.level} min_size={self.min_size} compress={self.compress} "
            f"frames={s.frames_raw + s.frames_compressed} ratio={s.ratio:.2f}>"
        )

    # -- bytes ---------------------------------------------------------------------------------

    def encode(self, raw: bytes, *, compress: bool = True) -> bytes:
        """Frame ``raw``; the result is at most ``len(raw) + HEADER_SIZE`` bytes.

        Raises :class:`ValueError` when ``raw`` is longer than ``max_output_size`` (such a frame
        could never be decoded); callers check sizes first and raise their own typed error.
        """
        n = len(raw)
        if n > self.max_output_size:
            raise ValueError(f"payload of {n} bytes exceeds max_output_size {self.max_output_size}")
        st = self.stats
        st.bytes_raw += n
        if compress and self.compress and n >= self.min_size:
            packed = self._cctx.compress(raw)
            if len(packed) <= n * (1.0 - self.min_saving):
                st.frames_compressed += 1
                st.bytes_stored += HEADER_SIZE + len(packed)
                return _HEADER.pack(MAGIC, CODEC_ZSTD, 0, n) + packed
        st.frames_raw += 1
        st.bytes_stored += HEADER_SIZE + n
        return _HEADER.pack(MAGIC, CODEC_RAW, 0, n) + raw

    def encode_many(self, raws: list[bytes]) -> list[bytes]:
        """Frame many payloads; same frames as :meth:`encode`, compressed on ``threads`` cores.

        zstd releases the GIL, so a batch compresses in parallel (``multi_compress_to_buffer``);
        small batches take the single-frame path, where thread start-up would cost more.
        """
        big = [i for i, r in enumerate(raws) if self.compress and len(r) >= self.min_size]
        if len(big) < 16 or self.threads == 1:
            return [self.encode(r) for r in raws]
        for r in raws:
            if len(r) > self.max_output_size:
                raise ValueError(
                    f"payload of {len(r)} bytes exceeds max_output_size {self.max_output_size}"
                )
        packed = self._cctx.multi_compress_to_buffer([raws[i] for i in big], threads=self.threads)
        out: list[bytes | None] = [None] * len(raws)
        st = self.stats
        for j, i in enumerate(big):
            raw, data = raws[i], packed[j].tobytes()
            n = len(raw)
            if len(data) <= n * (1.0 - self.min_saving):
                st.frames_compressed += 1
                st.bytes_raw += n
                st.bytes_stored += HEADER_SIZE + len(data)
                out[i] = _HEADER.pack(MAGIC, CODEC_ZSTD, 0, n) + data
        return [
            f if f is not None else self.encode(raws[i], compress=False) for i, f in enumerate(out)
        ]

    def decode(self, frame: bytes) -> bytes:
        """The raw bytes of ``frame``; raises :class:`CorruptPayload` for anything malformed."""
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise CorruptPayload(f"frame must be bytes, got {type(frame).__name__}")
        if len(frame) < HEADER_SIZE:
            raise CorruptPayload(f"frame of {len(frame)} bytes is shorter than its header")
        magic, codec, dict_id, n = _HEADER.unpack_from(frame)
        if magic != MAGIC:
            raise CorruptPayload(f"bad frame magic 0x{magic:02x}")
        if dict_id != 0:
            raise CorruptPayload(
                f"frame names dictionary {dict_id}, which this codec does not have"
            )
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
            try:
                out = self._dctx.decompress(data, max_output_size=n)
            except zstandard.ZstdError as e:
                raise CorruptPayload(f"bad zstd frame: {e}") from e
            if len(out) != n:
                raise CorruptPayload(f"zstd frame decoded to {len(out)} bytes, header says {n}")
        else:
            raise CorruptPayload(f"unknown codec id {codec}")
        self.stats.frames_decoded += 1
        return out

    # -- documents -----------------------------------------------------------------------------

    def serialize(self, doc: Any) -> bytes:
        """JSON bytes of a document (JSON values, dataclasses, enums), not yet framed."""
        return self._encoder.encode(doc)

    def encode_doc(self, doc: Any) -> bytes:
        """Serialize a document and frame it."""
        return self.encode(self.serialize(doc))

    def decode_doc(self, frame: bytes) -> Any:
        """The JSON document stored in ``frame`` (dataclasses come back as dicts)."""
        raw = self.decode(frame)
        try:
            return self._decoder.decode(raw)
        except msgspec.DecodeError as e:
            raise CorruptPayload(f"frame does not hold a JSON document: {e}") from e
