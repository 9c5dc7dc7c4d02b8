"""G.711 tables against reference coders written from the segment tables of G.711 itself.

The references below are plain per-sample code, organised differently from the vectorised
tables: they look the segment up in the decision-value starts of G.711 tables 1a (A-law, 13-bit
magnitude) and 2a (mu-law, 14-bit magnitude) and reconstruct at the interval midpoints.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from telephony import media, sdp
from telephony.media import (
    ALAW_DECODE,
    ALAW_ENCODE,
    CODECS,
    PCMA,
    PCMU,
    ULAW_DECODE,
    ULAW_ENCODE,
    alaw_bytes_to_linear,
    alaw_to_pcm,
    linear_bytes_to_alaw,
    linear_bytes_to_ulaw,
    pcm_to_alaw,
    pcm_to_ulaw,
    tone_samples,
    ulaw_bytes_to_linear,
    ulaw_to_pcm,
)
from telephony.media import g711 as g711_module

# Where each segment's decision interval starts, in the 14-bit (mu) / 13-bit (A) magnitude.
MU_SEGMENT_START = [0, 31, 95, 223, 479, 991, 2015, 4063]
A_SEGMENT_START = [0, 32, 64, 128, 256, 512, 1024, 2048]

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int64)


def ref_ulaw_encode(sample: int) -> int:
    v = sample >> 2  # 16-bit to 14-bit
    negative = v < 0
    magnitude = min(-v if negative else v, 8159)
    segment = max(s for s in range(8) if magnitude >= MU_SEGMENT_START[s])
    if segment == 0:
        step = (magnitude + 1) // 2  # the first interval is half width: 0 | 1-2 | 3-4 ...
    else:
        step = (magnitude - MU_SEGMENT_START[segment]) // (2 << segment)
    code = (segment << 4) | min(step, 15)
    return (0x7F if negative else 0xFF) ^ code  # sent inverted, sign bit 1 = positive


def ref_ulaw_decode(code: int) -> int:
    c = ~code & 0xFF
    segment, step = (c >> 4) & 7, c & 0x0F
    if segment == 0:
        y = 2 * step
    else:
        width = 2 << segment
        y = MU_SEGMENT_START[segment] + step * width + width // 2
    return -4 * y if c & 0x80 else 4 * y


def ref_alaw_encode(sample: int) -> int:
    v = sample >> 3  # 16-bit to 13-bit
    negative = v < 0
    magnitude = -v - 1 if negative else v  # one's complement: -1 .. -4096 -> 0 .. 4095
    segment = max(s for s in range(8) if magnitude >= A_SEGMENT_START[s])
    width = 2 if segment < 2 else 1 << segment
    code = (segment << 4) | (magnitude - A_SEGMENT_START[segment]) // width
    return code ^ (0x55 if negative else 0xD5)  # even bits inverted, sign bit 1 = positive


def ref_alaw_decode(code: int) -> int:
    c = code ^ 0x55
    segment, step = (c >> 4) & 7, c & 0x0F
    width = 2 if segment < 2 else 1 << segment
    y = A_SEGMENT_START[segment] + step * width + width // 2
    return 8 * y if c & 0x80 else -8 * y


def test_decode_tables_equal_reference() -> None:
    assert ULAW_DECODE.dtype == np.int16 and ULAW_DECODE.shape == (256,)
    assert ALAW_DECODE.dtype == np.int16 and ALAW_DECODE.shape == (256,)
    assert ULAW_DECODE.tolist() == [ref_ulaw_decode(c) for c in range(256)]
    assert ALAW_DECODE.tolist() == [ref_alaw_decode(c) for c in range(256)]


def test_encode_tables_equal_reference_for_every_sample() -> None:
    assert ULAW_ENCODE.dtype == np.uint8 and ULAW_ENCODE.shape == (65536,)
    samples = ALL_SAMPLES.tolist()
    index = (ALL_SAMPLES & 0xFFFF).tolist()
    mu = ULAW_ENCODE.tolist()
    a = ALAW_ENCODE.tolist()
    assert [mu[i] for i in index] == [ref_ulaw_encode(s) for s in samples]
    assert [a[i] for i in index] == [ref_alaw_encode(s) for s in samples]


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        ULAW_DECODE[0] = 1
    with pytest.raises(ValueError):
        ALAW_ENCODE[0] = 1


def test_same_bytes_as_stdlib_audioop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = ALL_SAMPLES.astype(np.int16)
    codes = bytes(range(256))
    assert pcm_to_ulaw(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)
    assert pcm_to_alaw(pcm) == audioop.lin2alaw(pcm.tobytes(), 2)
    assert ulaw_to_pcm(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert alaw_to_pcm(codes).tobytes() == audioop.alaw2lin(codes, 2)


def test_round_trip_error_is_within_half_a_step() -> None:
    pcm = ALL_SAMPLES.astype(np.int16)
    inside = np.abs(ALL_SAMPLES) < 32000  # beyond, the coders clip
    mu = np.frombuffer(pcm_to_ulaw(pcm), dtype=np.uint8).astype(np.int64)
    mu_width = 4 * (2 << (((mu ^ 0xFF) >> 4) & 7))  # interval width in 16-bit units
    a = np.frombuffer(pcm_to_alaw(pcm), dtype=np.uint8).astype(np.int64)
    a_segment = ((a ^ 0x55) >> 4) & 7
    a_width = 8 * np.where(a_segment < 2, 2, 1 << a_segment)
    for codes, decode, width, unit in (
        (mu, ulaw_to_pcm, mu_width, 4),
        (a, alaw_to_pcm, a_width, 8),
    ):
        back = decode(codes.astype(np.uint8).tobytes()).astype(np.int64)
        error = np.abs(back - ALL_SAMPLES)
        # Half an interval, plus one input unit lost truncating to 14 or 13 bits.
        assert np.all(error[inside] <= width[inside] // 2 + unit)


def test_codes_survive_decode_encode() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert np.frombuffer(pcm_to_alaw(alaw_to_pcm(codes.tobytes())), np.uint8).tolist() == list(
        range(256)
    )
    again = np.frombuffer(pcm_to_ulaw(ulaw_to_pcm(codes.tobytes())), np.uint8)
    # mu-law has two zeros (0x7F is "negative zero"); everything else is its own image.
    assert again.tolist() == [0xFF if c == 0x7F else c for c in range(256)]


def test_decoding_is_monotonic_in_magnitude() -> None:
    # Positive half: mu-law codes 0xFF down to 0x80, A-law codes (0x80 | i) ^ 0x55.
    mu = [int(ULAW_DECODE[0xFF - i]) for i in range(128)]
    a = [int(ALAW_DECODE[(0x80 | i) ^ 0x55]) for i in range(128)]
    for values in (mu, a):
        assert all(x < y for x, y in itertools.pairwise(values))
    assert (mu[0], mu[-1], a[0], a[-1]) == (0, 32124, 8, 32256)
    # The sign bit alone flips the sign.
    for table in (ULAW_DECODE, ALAW_DECODE):
        assert all(int(table[c]) == -int(table[c ^ 0x80]) for c in range(256))


def test_speech_band_snr() -> None:
    tone = tone_samples([1004.0], 1.0, level_dbfs=-20)
    for codec in (PCMU, PCMA):
        back = codec.decode(codec.encode(tone)).astype(np.float64)
        noise = back - tone
        snr = 10 * np.log10(np.sum(tone.astype(np.float64) ** 2) / np.sum(noise**2))
        assert snr > 33  # G.711 gives ~38 dB over a wide range of levels


def test_batches_and_shapes() -> None:
    frames = np.stack([tone_samples([440.0 * (i + 1)], 0.02) for i in range(5)])
    assert frames.shape == (5, 160)
    payload = pcm_to_ulaw(frames)
    assert len(payload) == 800
    assert payload[160:320] == pcm_to_ulaw(frames[1])
    decoded = ulaw_to_pcm(payload).reshape(5, 160)
    assert np.array_equal(decoded[3], ulaw_to_pcm(payload[480:640]))
    # Non-contiguous input is handled.
    assert pcm_to_alaw(frames[:, ::2]) == pcm_to_alaw(np.ascontiguousarray(frames[:, ::2]))


@pytest.mark.parametrize("audioop", [True, False])
def test_bytes_fast_path_equals_tables(audioop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if audioop and not media.HAVE_AUDIOOP:
        pytest.skip("no audioop in this interpreter")
    if not audioop:
        monkeypatch.setattr(g711_module, "_audioop", None)
    pcm = tone_samples([697.0, 1209.0], 0.02, level_dbfs=-6)
    assert linear_bytes_to_ulaw(pcm.tobytes()) == pcm_to_ulaw(pcm)
    assert linear_bytes_to_alaw(pcm.tobytes()) == pcm_to_alaw(pcm)
    codes = bytes(range(256))
    assert ulaw_bytes_to_linear(codes) == ulaw_to_pcm(codes).tobytes()
    assert alaw_bytes_to_linear(codes) == alaw_to_pcm(codes).tobytes()
    # The codecs' per-packet decode to bytes: the same samples as decode(), every code.
    for codec in (PCMU, PCMA):
        assert codec.decode_bytes(codes) == codec.decode(codes).tobytes()


def test_codec_registry_drives_negotiation() -> None:
    assert set(CODECS) == {"PCMU", "PCMA"}
    assert (CODECS["PCMU"].payload_type, CODECS["PCMA"].payload_type) == (0, 8)
    assert CODECS["PCMU"] is PCMU and PCMU.clock_rate == 8000
    with pytest.raises(TypeError):
        CODECS["X"] = PCMU  # type: ignore[index]
    offer = sdp.create_offer(list(CODECS.values()), local_addr="10.0.0.1", port=4, session_id=1)
    answer = sdp.negotiate(
        offer, [CODECS["PCMA"]], local_addr="10.0.0.2", local_port=6, session_id=2
    )
    assert answer.media is not None
    codec = CODECS[answer.media.codec_name]
    assert codec is PCMA
    frame = tone_samples([1000.0], 0.02)
    assert codec.decode(codec.encode(frame)).shape == (160,)
