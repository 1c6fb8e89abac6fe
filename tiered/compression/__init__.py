"""Payload compression: framed zstd that never inflates and is decoded on every read path."""

from tiered.compression.codec import (
    CODEC_RAW,
    CODEC_ZSTD,
    HEADER_SIZE,
    MAGIC,
    Codec,
    CodecStats,
    FrameStats,
    frame_dictionary,
)

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
