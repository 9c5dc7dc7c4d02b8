"""IVR: declarative flows (TOML/JSON) walked over calls, prompts made playable and cached.

Load flows with `load_flow(path, prepare=PromptCache(dir).prepare)`; run one per call with
`FlowRunner(flow, actions).run(call, FlowContext(...))`, where `actions` implements
`IvrActions` (the composition root wires transfers, callback tasks and DNC to it);
`IvrService` answers inbound calls and walks them through their flow.
"""

from __future__ import annotations

from .errors import FlowError, IvrError, PromptError
from .flow import (
    NODE_KINDS,
    Branch,
    Callback,
    Collect,
    Flow,
    Hangup,
    Hours,
    Menu,
    Node,
    OptOut,
    Play,
    Prompt,
    Transfer,
    VoicemailDrop,
    load_flow,
    parse_flow,
    parse_hours,
)
from .prompts import PromptCache, decode_wav, resample
from .runner import (
    BeepDetector,
    FlowContext,
    FlowResult,
    FlowRunner,
    IvrActions,
    IvrCall,
    ToneEndDetector,
)
from .service import IvrService, Served

__all__ = [
    "NODE_KINDS",
    "BeepDetector",
    "Branch",
    "Callback",
    "Collect",
    "Flow",
    "FlowContext",
    "FlowError",
    "FlowResult",
    "FlowRunner",
    "Hangup",
    "Hours",
    "IvrActions",
    "IvrCall",
    "IvrError",
    "IvrService",
    "Menu",
    "Node",
    "OptOut",
    "Play",
    "Prompt",
    "PromptCache",
    "PromptError",
    "Served",
    "ToneEndDetector",
    "Transfer",
    "VoicemailDrop",
    "decode_wav",
    "load_flow",
    "parse_flow",
    "parse_hours",
    "resample",
]
