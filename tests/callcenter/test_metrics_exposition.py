"""/metrics' exposition over prometheus_client: the 0.0.4 text format by default, OpenMetrics
when the scraper asks, label values escaped, one label set per family."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callcenter.api.metrics import Exposition


def _exposition() -> Exposition:
    out = Exposition()
    out.family(
        "callcenter_trunk_up",
        "gauge",
        "1 when up.",
        [({"trunk": 'odd "name"\\ with\nnewline'}, 1), ({"trunk": "plain"}, 0)],
    )
    out.one("callcenter_calls_total", "counter", "Calls.", 7)
    out.family("callcenter_queue_waiting", "gauge", "Waiting.", [])
    return out


def test_the_text_format_parses_back_to_the_same_samples() -> None:
    body, content_type = _exposition().encode("")
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    trunk = families["callcenter_trunk_up"]
    assert trunk.type == "gauge" and trunk.documentation == "1 when up."
    assert {s.labels["trunk"]: s.value for s in trunk.samples} == {
        'odd "name"\\ with\nnewline': 1.0,
        "plain": 0.0,
    }
    (calls,) = families["callcenter_calls"].samples  # the parser strips a counter's _total
    assert calls.name == "callcenter_calls_total" and calls.value == 7
    assert families["callcenter_queue_waiting"].samples == []


def test_openmetrics_when_asked() -> None:
    accept = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
    body, content_type = _exposition().encode(accept)
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")


def test_a_family_takes_one_label_set() -> None:
    with pytest.raises(ValueError, match="callcenter_x"):
        Exposition().family("callcenter_x", "gauge", "x", [({"a": 1}, 1), ({"b": 2}, 2)])
