"""pyVoIP 1.6.8 as an asyncio test phone.

pyVoIP is a threaded, lenient real-world client: it registers, places and answers calls with
PCMU, and receives RFC 4733 DTMF. This wrapper runs its blocking calls in daemon threads and
gives tests `await`-able methods plus int16 audio in and out.

Quirks of pyVoIP 1.6.8 found in its source (VoIP/VoIP.py, SIP.py, RTP.py) and relied on here:

- Audio API is 8-bit *unsigned* linear PCM at 8 kHz (RTP.py: `ulaw2lin(payload, 1)` then
  `bias(+128)`; sending reverses it). Silence is 0x80. We convert from/to int16 here.
- `write_audio` appends to a send buffer that the RTP thread drains at 160 bytes per 20 ms
  (it sends 0x80 padding when the buffer is empty), so a whole tone can be queued at once.
- Received audio sits in a buffer placed by RTP timestamp; `read_audio(blocking=False)` returns
  160 bytes from a read cursor, padded with 0x80 when nothing new came. The recorder thread
  here reads every 20 ms from the moment the call is answered (so sample 0 = answer time) and
  catches up when a backlog builds (peeks at `RTPClient.pmin.buffer`).
- SIPClient.start() registers synchronously but starts its receive loop 1 s later, so
  start() here returns only after that second.
- Incoming INVITE: pyVoIP sends 180 itself and calls the call callback 1 s later in a Timer
  thread. When that callback returns, pyVoIP may forget the call (`_cleanup_dead_calls`, run on
  any VoIPCall garbage collection), after which a BYE is ignored, so our callback blocks until
  the call ends or the phone stops.
- It replies to a CANCEL with 200 but never sends 487 and the call stays RINGING; it ignores
  486/4xx/6xx other than 404/503 for its own INVITEs (the call stays DIALING).
- INVITE digest auth: only 401 (WWW-Authenticate) is handled, and only when the 401 is the first
  response (a 100 Trying before it makes pyVoIP ignore the challenge). The authenticated INVITE
  reuses the first INVITE's Via branch with a new CSeq, and the digest `uri` is
  "sip:SERVER;transport=UDP", not the Request-URI. A 407 to an INVITE hangs `call()`.
- All SIP goes to (server, port) whatever Via/Contact/Record-Route say; the AOR has no port
  (sip:USER@SERVER). The ACK of a 200 carries a fresh random To-tag; a BYE copies the Via of
  the INVITE and its Request-URI is the remote Contact with '<' and '>' stripped.
- A re-INVITE to an answered call makes it re-bind its RTP port, which fails (address in use)
  and leaves its receive thread blocked on an unbound socket: audio stops. Counted here as
  `PyVoipPhone.reinvites` (with a warning), because an engine must not re-INVITE pyVoIP.
- PCMA is sent mu-law encoded (encode_packet uses encode_pcmu for both): offer PCMU first.
- Its threads are non-daemon `threading.Timer`s; we swap pyVoIP's Timer for a daemon one so a
  stuck pyVoIP thread can never keep the test process alive.
- pyVoIP's "not found" warnings call `warnings.simplefilter("default")`, resetting filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from sip_test_env.audio import RATE, read_wav, tone_samples, write_wav
from sip_test_env.ports import free_port, free_port_range
from telephony.aio.tasks import Started

logger = logging.getLogger(__name__)

__all__ = ["PyVoipCall", "PyVoipError", "PyVoipPhone", "int16_to_u8", "u8_to_int16"]

_T = TypeVar("_T")
_FRAME = 160  # bytes of 8-bit audio per 20 ms
_RECV_LOOP_DELAY = 1.1  # SIPClient.start() runs recv_loop in Timer(1, ...)


class PyVoipError(RuntimeError):
    """pyVoIP did not register, call, answer or end as expected."""


class _DaemonTimer(threading.Timer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


def _import_pyvoip() -> Any:
    with warnings.catch_warnings():
        # pyVoIP imports audioop, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        # pyVoIP.VoIP first: importing pyVoIP.SIP first trips pyVoIP's circular imports.
        import pyVoIP.VoIP  # noqa: I001
        import pyVoIP
        import pyVoIP.RTP
        import pyVoIP.SIP
        import pyVoIP.VoIP.VoIP

    for module in (pyVoIP.RTP, pyVoIP.SIP, pyVoIP.VoIP.VoIP):
        module.Timer = _DaemonTimer  # type: ignore[attr-defined]
    return pyVoIP


def int16_to_u8(samples: npt.ArrayLike) -> bytes:
    """int16 linear PCM -> pyVoIP's 8-bit unsigned PCM bytes."""
    data = np.asarray(samples, dtype=np.int32)
    return ((data >> 8) + 128).astype(np.uint8).tobytes()


def u8_to_int16(data: bytes) -> npt.NDArray[np.int16]:
    """pyVoIP's 8-bit unsigned PCM bytes -> int16 linear PCM."""
    return ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)


async def _in_daemon_thread(fn: Callable[[], _T], timeout: float, what: str) -> _T:
    """Run a blocking pyVoIP call in a daemon thread (never joined at exit)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()

    def set_result(value: _T) -> None:
        if not fut.done():
            fut.set_result(value)

    def set_error(exc: BaseException) -> None:
        if not fut.done():
            fut.set_exception(exc)

    def run() -> None:
        try:
            value = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(set_error, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(set_result, value)

    threading.Thread(target=run, name=f"pyvoip-{what}", daemon=True).start()
    try:
        return await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        raise PyVoipError(f"pyVoIP {what} did not finish within {timeout}s") from None


class PyVoipCall:
    """One pyVoIP call with int16 audio in/out, a recorder and a DTMF log."""

    def __init__(self, phone: PyVoipPhone, raw: Any) -> None:
        self.phone = phone
        self.raw = raw
        """The pyVoIP VoIPCall."""
        self.call_id: str = raw.call_id
        self.answered_at: float | None = None
        """time.monotonic() when the call became ANSWERED (recording sample 0)."""
        self.dtmf_digits = ""
        """Every RFC 4733 digit received so far."""
        self._frames: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._recorder = threading.Thread(
            target=self._record, name=f"pyvoip-rec-{self.call_id[:8]}", daemon=True
        )
        self._recorder.start()

    @property
    def state(self) -> str:
        """pyVoIP's CallState name: DIALING, RINGING, ANSWERED or ENDED."""
        return str(self.raw.state.value)

    # -- state -----------------------------------------------------------------------------

    async def _wait_state(self, wanted: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while self.state not in wanted:
            if time.monotonic() > deadline:
                raise PyVoipError(f"call {self.call_id}: state {self.state}, wanted {wanted}")
            await asyncio.sleep(0.02)
        return self.state

    async def wait_answered(self, timeout: float = 5.0) -> None:
        """Until the call is ANSWERED; PyVoipError when it ended or timed out first."""
        state = await self._wait_state({"ANSWERED", "ENDED"}, timeout)
        if state != "ANSWERED":
            raise PyVoipError(f"call {self.call_id} ended before it was answered")

    async def wait_ended(self, timeout: float = 5.0) -> None:
        await self._wait_state({"ENDED"}, timeout)

    async def answer(self) -> None:
        """Answer a RINGING incoming call (sends 200 with SDP, starts RTP)."""
        self.raw.answer()
        await self.wait_answered(1.0)

    async def deny(self) -> None:
        """Reject a RINGING incoming call with 486 Busy Here."""
        self.raw.deny()

    async def hangup(self) -> None:
        """Send BYE on an answered call (no-op once ended)."""
        if self.state == "ANSWERED":
            self.raw.hangup()
        self._stop.set()

    # -- audio -----------------------------------------------------------------------------

    def write_audio(self, samples: npt.ArrayLike) -> None:
        """Queue int16 8 kHz samples to send (played out in real time after what is queued)."""
        if self.state != "ANSWERED":
            raise PyVoipError(f"call {self.call_id} is {self.state}; audio needs ANSWERED")
        self.raw.write_audio(int16_to_u8(samples))

    def play_tone(self, freq: float, seconds: float, dbfs: float = -12.0) -> None:
        self.write_audio(tone_samples(freq, seconds, RATE, dbfs))

    def play_wav(self, path: str | Path) -> None:
        rate, samples, channels = read_wav(path)
        if rate != RATE or channels != 1:
            raise PyVoipError(f"{path}: need mono 8000 Hz WAV")
        self.write_audio(samples)

    def recorded_samples(self) -> npt.NDArray[np.int16]:
        """What this phone heard since answer, as int16 (sample 0 = answer time)."""
        with self._lock:
            data = b"".join(self._frames)
        return u8_to_int16(data)

    def save_recording(self, path: str | Path) -> Path:
        """Write what this phone heard to a mono 8 kHz WAV."""
        return write_wav(path, self.recorded_samples(), RATE)

    def _backlog(self) -> int:
        try:
            pm = self.raw.RTPClients[0].pmin
            return int(len(pm.buffer.getbuffer()) - pm.buffer.tell())
        except (AttributeError, IndexError, ValueError):
            return 0

    def _record(self) -> None:
        # Wait for answer, then read one 20 ms frame per 20 ms from then on.
        while not self._stop.is_set() and self.state in ("DIALING", "RINGING"):
            time.sleep(0.005)
        if self.state != "ANSWERED":
            return
        self.answered_at = time.monotonic()
        next_tick = self.answered_at
        while not self._stop.is_set() and self.state == "ANSWERED":
            next_tick += 0.02
            try:
                frame = self.raw.read_audio(_FRAME, False)
                # Catch up after a late read so the recording keeps pace with arrival.
                extra = []
                while self._backlog() >= 3 * _FRAME:
                    extra.append(self.raw.read_audio(_FRAME, False))
            except (OSError, IndexError, ValueError):
                break
            with self._lock:
                self._frames.append(frame)
                self._frames.extend(extra)
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    # -- DTMF ------------------------------------------------------------------------------

    def get_dtmf(self) -> str:
        """Digits received since the last get_dtmf()/wait_dtmf() (and logs them)."""
        got = str(self.raw.get_dtmf(length=1000))
        self.dtmf_digits += got
        return got

    async def wait_dtmf(self, count: int, timeout: float = 5.0) -> str:
        """Collect `count` new digits (RFC 4733) or raise after `timeout`."""
        got = ""
        deadline = time.monotonic() + timeout
        while len(got) < count:
            got += self.get_dtmf()
            if len(got) >= count:
                break
            if time.monotonic() > deadline:
                raise PyVoipError(f"only {got!r} of {count} DTMF digits within {timeout}s")
            await asyncio.sleep(0.02)
        return got

    def _close(self) -> None:
        self._stop.set()


class PyVoipPhone(Started):
    """A pyVoIP phone registered as `user` at server:server_port (asyncio; `async with`)."""

    def __init__(
        self,
        user: str,
        password: str,
        *,
        server_port: int,
        server: str = "127.0.0.1",
        sip_port: int | None = None,
        rtp_ports: tuple[int, int] | None = None,
        register_timeout: float = 3.0,
    ) -> None:
        self.user = user
        self.password = password
        self.server = server
        self.server_port = server_port
        self.sip_port = sip_port if sip_port is not None else free_port("udp")
        self.rtp_ports = rtp_ports if rtp_ports is not None else free_port_range(10, "udp")
        self.register_timeout = register_timeout
        self.reinvites = 0
        """re-INVITEs received for calls already set up (each breaks pyVoIP's RTP)."""
        self.calls: list[PyVoipCall] = []
        self._incoming: queue.Queue[PyVoipCall] = queue.Queue()
        self._stopping = threading.Event()
        self._phone: Any = None
        self._stopped = False

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.server}"

    @property
    def status(self) -> str:
        """pyVoIP's PhoneStatus name (INACTIVE, REGISTERING, REGISTERED, ...)."""
        return "INACTIVE" if self._phone is None else str(self._phone.get_status().value)

    def _make_phone(self) -> Any:
        pyvoip = _import_pyvoip()
        wrapper = self

        class _Phone(pyvoip.VoIP.VoIPPhone):  # type: ignore[misc, name-defined]
            def _callback_MSG_Invite(self, request: Any) -> None:
                call = self.calls.get(request.headers["Call-ID"])
                if call is not None and call.state.value != "RINGING":
                    wrapper.reinvites += 1
                    logger.warning(
                        "pyVoIP %s got a re-INVITE; pyVoIP 1.6.8 loses its RTP on re-INVITE",
                        wrapper.user,
                    )
                super()._callback_MSG_Invite(request)

        phone = _Phone(
            self.server,
            self.server_port,
            self.user,
            self.password,
            myIP="127.0.0.1",
            callCallback=self._on_incoming,
            sipPort=self.sip_port,
            rtpPortLow=self.rtp_ports[0],
            rtpPortHigh=self.rtp_ports[1],
        )
        phone.sip.register_timeout = self.register_timeout
        return phone

    def _on_incoming(self, raw: Any) -> None:
        # Runs in pyVoIP's call thread; must block while the call lives (see module doc).
        call = PyVoipCall(self, raw)
        self.calls.append(call)
        self._incoming.put(call)
        while not self._stopping.is_set() and call.state != "ENDED":
            time.sleep(0.05)

    async def start(self, timeout: float = 5.0) -> None:
        """Register, and return once pyVoIP reads incoming SIP (its receive loop starts 1 s
        after start(); until then requests and responses sit unread in the socket)."""
        self._phone = self._make_phone()
        started = time.monotonic()
        await _in_daemon_thread(self._phone.start, timeout, "register")
        await self.wait_registered(timeout)
        await asyncio.sleep(max(0.0, started + _RECV_LOOP_DELAY - time.monotonic()))

    async def wait_registered(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.status != "REGISTERED":
            if self.status in ("FAILED", "INACTIVE") or time.monotonic() > deadline:
                raise PyVoipError(f"pyVoIP {self.user} not registered: {self.status}")
            await asyncio.sleep(0.02)

    async def call(self, number: str, timeout: float = 5.0) -> PyVoipCall:
        """Send INVITE to sip:number@server; returns once the server answered 100/180/401.
        Then `await call.wait_answered()`."""
        if self._phone is None:
            raise PyVoipError("phone not started")
        raw = await _in_daemon_thread(lambda: self._phone.call(number), timeout, "call")
        call = PyVoipCall(self, raw)
        self.calls.append(call)
        return call

    async def wait_incoming(self, timeout: float = 5.0) -> PyVoipCall:
        """The next incoming call (RINGING; pyVoIP reports it ~1 s after the INVITE)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._incoming.get_nowait()
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise PyVoipError(f"pyVoIP {self.user}: no incoming call") from None
                await asyncio.sleep(0.02)

    async def stop(self, timeout: float = 5.0) -> None:
        """Hang up, deregister, stop pyVoIP's threads and close its sockets; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        for call in self.calls:
            call._close()
        phone = self._phone
        if phone is None:
            return
        try:
            await _in_daemon_thread(phone.stop, timeout, "stop")
        except Exception as exc:
            logger.warning("pyVoIP %s stop: %s; closing its sockets", self.user, exc)
        finally:
            self._force_close(phone)
        # Let pyVoIP's polling threads (10-20 ms loops) notice and end.
        await asyncio.sleep(0.05)

    @staticmethod
    def _force_close(phone: Any) -> None:
        # Whatever phone.stop() left behind: RTP loops end when NSD is False.
        phone.NSD = False
        phone.sip.NSD = False
        if phone.sip.registerThread is not None:
            phone.sip.registerThread.cancel()
        for raw in list(phone.calls.values()):
            for client in raw.RTPClients:
                client.NSD = False
                with contextlib.suppress(Exception):
                    client.sin.close()
        with contextlib.suppress(Exception):
            phone.sip._close_sockets()
