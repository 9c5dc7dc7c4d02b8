"""G.711 mu-law (PCMU) and A-law (PCMA) by table lookup.

Decoding indexes a 256-entry int16 table with the code bytes; encoding indexes a 65536-entry
uint8 table with the samples viewed as uint16, so a frame or a whole 2-D batch of frames is one
numpy fancy-index. The tables are computed at import from the segment definitions of G.711
(mu-law on 14-bit, A-law on 13-bit magnitudes), with the decision levels of the classic Sun/CCITT
reference code, the one stdlib ``audioop`` implements, so both paths give the same bytes. (The
ITU-T G.191 STL rounds negative mu-law inputs one 14-bit step differently.)

Per packet, outside a batch, numpy's fixed per-call cost dominates; the ``*_bytes`` functions use
``audioop`` when the interpreter still has it (stdlib up to 3.12, ``audioop-lts`` after) and the
tables otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from ._compat import AUDIOOP
from .frames import Frame

logger = logging.getLogger(__name__)

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "CODECS",
    "HAVE_AUDIOOP",
    "PCMA",
    "PCMU",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "AudioCodec",
    "G711Codec",
    "alaw_bytes_to_linear",
    "alaw_to_pcm",
    "linear_bytes_to_alaw",
    "linear_bytes_to_ulaw",
    "pcm_to_alaw",
    "pcm_to_ulaw",
    "ulaw_bytes_to_linear",
    "ulaw_to_pcm",
]


_audioop: Final = AUDIOOP
#: Whether the ``*_bytes`` fast paths use stdlib ``audioop``.
HAVE_AUDIOOP: Final = _audioop is not None

# mu-law: 14-bit magnitude, clipped, plus a bias of 33 so segment ends are powers of two - 1.
_ULAW_BIAS: Final = 0x84 >> 2
_ULAW_CLIP: Final = 8159
_ULAW_SEG_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
# A-law: 13-bit magnitude; segments 0 and 1 share the same step size.
_ALAW_SEG_END: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _all_samples() -> npt.NDArray[np.int32]:
    # Position i holds the int16 whose bit pattern is i: the index order of the encode tables.
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _frozen(table: npt.NDArray[Any], dtype: type[np.generic]) -> npt.NDArray[Any]:
    out = table.astype(dtype)
    out.setflags(write=False)
    return out


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    v = _all_samples() >> 2
    negative = v < 0
    magnitude = np.minimum(np.where(negative, -v, v), _ULAW_CLIP) + _ULAW_BIAS
    segment = np.searchsorted(_ULAW_SEG_END, magnitude)
    step = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | step)
    # Codes are sent inverted; the sign bit set means positive.
    table = np.where(negative, 0x7F ^ code, 0xFF ^ code)
    return _frozen(table, np.uint8)


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int64) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return _frozen(np.where(u & 0x80, 0x84 - t, t - 0x84), np.int16)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    v = _all_samples() >> 3
    negative = v < 0
    magnitude = np.where(negative, -v - 1, v)
    segment = np.searchsorted(_ALAW_SEG_END, magnitude)
    step = (magnitude >> np.where(segment < 2, 1, segment)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | step)
    # Even bits are inverted on the line (0x55); the sign bit set means positive.
    table = code ^ np.where(negative, 0x55, 0xD5)
    return _frozen(table, np.uint8)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int64) ^ 0x55
    segment = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    t = np.where(segment > 1, t << np.maximum(segment - 1, 0), t)
    return _frozen(np.where(a & 0x80, t, -t), np.int16)


#: mu-law code -> linear sample.
ULAW_DECODE: Final = _ulaw_decode_table()
#: linear sample (as uint16 bit pattern) -> mu-law code.
ULAW_ENCODE: Final = _ulaw_encode_table()
#: A-law code -> linear sample.
ALAW_DECODE: Final = _alaw_decode_table()
#: linear sample (as uint16 bit pattern) -> A-law code.
ALAW_ENCODE: Final = _alaw_encode_table()


def _as_index(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    return np.asarray(samples, dtype=np.int16).view(np.uint16)


def ulaw_to_pcm(data: bytes) -> Frame:
    """Decode mu-law bytes into int16 samples."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcm_to_ulaw(samples: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples (any shape, C order) as mu-law bytes."""
    return ULAW_ENCODE[_as_index(samples)].tobytes()


def alaw_to_pcm(data: bytes) -> Frame:
    """Decode A-law bytes into int16 samples."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcm_to_alaw(samples: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples (any shape, C order) as A-law bytes."""
    return ALAW_ENCODE[_as_index(samples)].tobytes()


# -- bytes in, bytes out: the per-packet fast path ----------------------------------------------
# Linear PCM here is native-endian 16-bit, as audioop produces it.


def ulaw_bytes_to_linear(data: bytes) -> bytes:
    if _audioop is not None:
        out: bytes = _audioop.ulaw2lin(data, 2)
        return out
    return ulaw_to_pcm(data).tobytes()


def linear_bytes_to_ulaw(pcm: bytes) -> bytes:
    if _audioop is not None:
        out: bytes = _audioop.lin2ulaw(pcm, 2)
        return out
    return pcm_to_ulaw(np.frombuffer(pcm, dtype=np.int16))


def alaw_bytes_to_linear(data: bytes) -> bytes:
    if _audioop is not None:
        out: bytes = _audioop.alaw2lin(data, 2)
        return out
    return alaw_to_pcm(data).tobytes()


def linear_bytes_to_alaw(pcm: bytes) -> bytes:
    if _audioop is not None:
        out: bytes = _audioop.lin2alaw(pcm, 2)
        return out
    return pcm_to_alaw(np.frombuffer(pcm, dtype=np.int16))


class AudioCodec(Protocol):
    """A codec the media path can use (DESIGN 5.11: strategies in a dict behind a Protocol).

    It also satisfies ``telephony.sdp.CodecSpec``, so the same objects drive negotiation.
    """

    @property
    def name(self) -> str: ...

    @property
    def payload_type(self) -> int: ...

    @property
    def clock_rate(self) -> int: ...

    def encode(self, samples: npt.NDArray[np.int16]) -> bytes: ...

    def decode(self, payload: bytes) -> Frame: ...

    def decode_bytes(self, payload: bytes) -> bytes:
        """The payload as 16-bit linear PCM bytes, native byte order (the per-packet path)."""
        ...


@dataclass(frozen=True, slots=True)
class G711Codec:
    """PCMU or PCMA: a pair of lookup tables."""

    name: str
    payload_type: int
    clock_rate: int
    decode_table: npt.NDArray[np.int16] = field(repr=False, compare=False)
    encode_table: npt.NDArray[np.uint8] = field(repr=False, compare=False)
    to_linear: Callable[[bytes], bytes] = field(repr=False, compare=False)

    def encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        return self.encode_table[_as_index(samples)].tobytes()

    def decode(self, payload: bytes) -> Frame:
        return self.decode_table[np.frombuffer(payload, dtype=np.uint8)]

    def decode_bytes(self, payload: bytes) -> bytes:
        """Same samples as decode(), as native-endian bytes: audioop where the interpreter
        has it (a tenth of numpy's fixed cost on a 20 ms packet), else the table."""
        return self.to_linear(payload)


PCMU: Final = G711Codec("PCMU", 0, 8000, ULAW_DECODE, ULAW_ENCODE, ulaw_bytes_to_linear)
PCMA: Final = G711Codec("PCMA", 8, 8000, ALAW_DECODE, ALAW_ENCODE, alaw_bytes_to_linear)

#: Codecs by encoding name (upper case, as in a=rtpmap).
CODECS: Final = MappingProxyType({c.name: c for c in (PCMU, PCMA)})
