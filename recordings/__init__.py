"""Call recordings: stereo WAV recorder (customer left, agent right), speech analytics, storage.

Pure code: no asyncio, no clock reads; the engine pushes audio by side, ticks the recorder from
its 20 ms media clock and passes ``now`` to the store. File operations run where the recorder's
writer says: in the caller, or on one writer thread (the engine's choice: off the event loop).
"""

from __future__ import annotations

from .analytics import SpeechAnalytics, TalkAnalytics, TalkCounter, TalkTimeline, VadSmoother
from .errors import RecordingError
from .recorder import CallRecorder, RecordingResult, Side
from .recovery import RecoveredRecording, recover_recording, talk_timeline
from .storage import RecordingStore, safe_file_name
from .writer import DirectFiles, WriterThread

__all__ = [
    "CallRecorder",
    "DirectFiles",
    "RecordingError",
    "RecordingResult",
    "RecordingStore",
    "RecoveredRecording",
    "Side",
    "SpeechAnalytics",
    "TalkAnalytics",
    "TalkCounter",
    "TalkTimeline",
    "VadSmoother",
    "WriterThread",
    "recover_recording",
    "safe_file_name",
    "talk_timeline",
]
