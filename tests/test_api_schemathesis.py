"""Schemathesis against the live OpenAPI: every operation, valid and invalid inputs, checked
for server errors and conformance to the documented responses. Bounded to stay fast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ampshare.cli.demo import demo_site
from ampshare.clock import VirtualClock
from ampshare.core.allocate import allocate
from ampshare.core.snapshot import MeterReading, Session
from ampshare.store import open_store
from ampshare.web import InMemoryRuntime, Role, TokenAuth, create_app
from ampshare.web.testing import serve

T0 = 1_750_000_020.0
HEADERS = {"Authorization": "Bearer fuzz-admin"}
EXAMPLES = 6
# Rules across fields (end after start; at least one field to edit; a cap needs a limit) cannot
# be written in OpenAPI, nor "a time zone that exists" (a list of ~600 names), so schema-valid
# requests may rightly get a 422 naming the field there.
CROSS_FIELD_RULES = {
    "GET /api/v1/history",
    "GET /api/v1/sessions.csv",
    "PATCH /api/v1/sessions/{session_id}",
    "PUT /api/v1/caps",
}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Any, InMemoryRuntime]]:
    folder = Path(__import__("tempfile").mkdtemp(prefix="ampshare-fuzz-"))
    store = open_store(str(folder / "fuzz.db"))
    rt = InMemoryRuntime(demo_site(3), VirtualClock(T0), store, allocator=allocate)
    rt.start_session(Session(session_id="s1", charger_id="cp01", arrival_s=T0 - 60))
    rt.update_meter(MeterReading(meter_id="m-main", t_s=T0, current_a=(20.0, 20.0, 20.0)))
    app = create_app(
        rt, store, TokenAuth.from_tokens({"fuzz-admin": Role.ADMIN}), clock=VirtualClock(T0)
    )
    with serve(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        # Given as config (not per call) so that negative cases may still drop the header.
        schema.config.update(headers=HEADERS)
        yield schema, rt
    store.close()


def _operations(schema: Any) -> list[Any]:
    return [r.ok() for r in schema.get_all_operations()]


# Free-form text query parameters: a query string carries only text, so a "wrong type" the
# fuzzer makes (a number, an empty list or an object for a list of kind names) reaches the
# server as text that is a valid kind name, and is rightly accepted. Seen: ``kind=[]`` and
# ``exclude_kind=8.6e-157`` answered 200. Their real invalid forms (too long, given twice,
# too many) are refused (tests/test_api.py).
TEXT_ONLY_QUERY = {"GET /api/v1/events"}


def _fuzz(op: Any, mode: GenerationMode) -> None:
    excluded = (
        [schemathesis.checks.positive_data_acceptance] if op.label in CROSS_FIELD_RULES else []
    )
    if op.label in TEXT_ONLY_QUERY:
        excluded.append(schemathesis.checks.negative_data_rejection)

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: Any) -> None:
        case.call_and_validate(excluded_checks=excluded)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(api: tuple[Any, InMemoryRuntime], mode: GenerationMode) -> None:
    schema, rt = api
    ops = _operations(schema)
    assert len(ops) >= 15
    exercised = 0
    for op in ops:
        try:
            _fuzz(op, mode)
        except Unsatisfiable:
            # Free-form strings (ids in paths) and no-input operations have no invalid form.
            assert mode is GenerationMode.NEGATIVE
            continue
        exercised += 1
    assert exercised >= (len(ops) if mode is GenerationMode.POSITIVE else 7)
    # Whatever the fuzzer did, the runtime still answers and the allocator still runs.
    v = rt.view()
    assert v.allocator_error is None
    assert {lim.charger_id for lim in v.limits} == {"cp01", "cp02", "cp03"}
