"""Signed recording links: `GET /recordings/{id}.{format}?expires=&signature=` plays a call's
recording without an API key until the link expires (what a CRM's player fetches). WAV is the
master; MP3 is encoded on the first request (lameenc, when installed) and kept beside it."""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from pathlib import Path

from aiohttp import web

from crm_bridge.links import FORMATS, LinkError, check_link

from .crm import ENGINE, crm_store
from .openapi import Param, operation
from .security import ApiError

logger = logging.getLogger(__name__)

PREFIX = "/recordings/"
MP3_BITRATE = 32
"""kbit/s of MP3 copies: plenty for 8 kHz telephone audio (a minute is about 240 kB)."""


def is_signed_link(request: web.Request) -> bool:
    """Let a request without a key through to the handler, which checks the signature."""
    return request.path.startswith(PREFIX) and "signature" in request.query


def mp3_available() -> bool:
    try:
        import lameenc  # noqa: F401
    except ImportError:
        return False
    return True


def encode_mp3(source: Path, target: Path) -> None:
    """`source` WAV (16-bit PCM, mono or stereo) as MP3 at `target` (written whole, then
    renamed, so a reader never sees half a file)."""
    import lameenc

    with wave.open(str(source), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{source.name}: not 16-bit PCM")
        encoder = lameenc.Encoder()
        encoder.set_bit_rate(MP3_BITRATE)
        encoder.set_in_sample_rate(wav.getframerate())
        encoder.set_channels(wav.getnchannels())
        encoder.set_quality(2)
        pcm = wav.readframes(wav.getnframes())
    data = bytes(encoder.encode(pcm)) + bytes(encoder.flush())
    partial = target.with_suffix(".mp3.part")
    partial.write_bytes(data)
    partial.replace(target)


@operation(
    summary="A call's recording through a signed, expiring link (no key needed)",
    description="The link comes in CRM deliveries (`recording_link` with `{expires}` and "
    "`{signature}`); 403 when tampered with, 410 once expired. MP3 is made from the WAV "
    "master on first request when an encoder is installed (else 406).",
    tag="calls",
    path={
        "id": {"type": "string", "pattern": r"^[0-9]{1,18}$"},
        "format": {"type": "string", "enum": list(FORMATS)},
    },
    query=(
        Param("expires", {"type": "integer"}, "Unix time the link stops working.", True),
        Param("signature", {"type": "string"}, "The link's signature.", True),
    ),
    responses={200: None, 206: None},
    produces="audio/mpeg",
    errors=(403, 404, 406, 410),
    public=True,
)
async def get_signed_recording(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    fmt = request.match_info["format"]
    try:
        row = int(request.match_info["id"])
        if fmt not in FORMATS:
            raise LinkError(404, f"unknown format {fmt!r}")
        check_link(
            engine.config.crm.link_secret,
            row,
            fmt,
            request.query.get("expires", ""),
            request.query.get("signature", ""),
            now=time.time(),
        )
    except ValueError as exc:
        status = exc.status if isinstance(exc, LinkError) else 404
        raise ApiError(status, str(exc)) from exc
    call = await crm_store(request).get_call(row)
    if call is None or not call.recording_path or engine.recordings is None:
        raise ApiError(404, "this call has no recording")
    root = engine.recordings.store.root.resolve()
    path = (root / call.recording_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(404, "the recording is gone (retention) or was never written")
    if fmt == "wav":
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})
    mp3 = path.with_suffix(".mp3")
    if not mp3.is_file():
        if not mp3_available():
            raise ApiError(406, "no MP3 encoder on this node (pip install lameenc); use .wav")
        await asyncio.to_thread(encode_mp3, path, mp3)
        logger.info("recording of call %d encoded to MP3 (%d bytes)", row, mp3.stat().st_size)
    return web.FileResponse(mp3, headers={"Content-Type": "audio/mpeg"})


def add_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX + "{id}.{format}", get_signed_recording)
