"""Real SIP peers for tests and demos: baresip softphones, pyVoIP phones, SIPp scenarios,
free loopback ports and audio analysis. See each module's docstring for the peer's quirks."""

from __future__ import annotations

from sip_test_env.audio import (
    band_energy_db,
    first_tone_time,
    level_dbfs,
    normalized_xcorr,
    read_wav,
    tone_present,
    tone_samples,
    write_silence_wav,
    write_tone_wav,
    write_ulaw,
    write_wav,
)
from sip_test_env.baresip import BaresipError, BaresipPeer
from sip_test_env.ports import free_port, free_port_range, port_is_free
from sip_test_env.pyvoip_phone import PyVoipCall, PyVoipError, PyVoipPhone
from sip_test_env.sipp import (
    SippError,
    SippResult,
    SippUas,
    extension_csv,
    run_sipp,
    start_sipp_uas,
    write_inf_csv,
)

__all__ = [
    "BaresipError",
    "BaresipPeer",
    "PyVoipCall",
    "PyVoipError",
    "PyVoipPhone",
    "SippError",
    "SippResult",
    "SippUas",
    "band_energy_db",
    "extension_csv",
    "first_tone_time",
    "free_port",
    "free_port_range",
    "level_dbfs",
    "normalized_xcorr",
    "port_is_free",
    "read_wav",
    "run_sipp",
    "start_sipp_uas",
    "tone_present",
    "tone_samples",
    "write_inf_csv",
    "write_silence_wav",
    "write_tone_wav",
    "write_ulaw",
    "write_wav",
]
