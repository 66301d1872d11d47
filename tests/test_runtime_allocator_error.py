"""The runtime when its allocator refuses an input: the dashboard says why, the last limits stay."""

from __future__ import annotations

from pathlib import Path

from ampshare.cli.demo import demo_site
from ampshare.clock import VirtualClock
from ampshare.core.allocate import allocate
from ampshare.core.allocation import Allocation, AllocationInput
from ampshare.core.snapshot import Session
from ampshare.errors import InfeasibleError
from ampshare.store import open_store
from ampshare.web import InMemoryRuntime

T0 = 1_700_000_000.0


def test_a_refused_input_is_shown_and_the_last_allocation_kept(tmp_path: Path) -> None:
    refuse = {"now": False}

    def allocator(inp: AllocationInput) -> Allocation:
        if refuse["now"]:
            raise InfeasibleError("node main: the grid operator's cap is below every minimum")
        return allocate(inp)

    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    rt = InMemoryRuntime(demo_site(2), VirtualClock(T0), store, allocator=allocator)
    cid = demo_site(2).chargers[0].id
    rt.start_session(Session(session_id="s1", charger_id=cid, arrival_s=T0))
    before = rt.view()
    assert before.allocator_error is None
    limit = before.limit(cid)
    assert limit is not None
    assert limit.limit_a > 0

    refuse["now"] = True
    rt.start_session(Session(session_id="s2", charger_id=demo_site(2).chargers[1].id,
                             arrival_s=T0))
    after = rt.view()
    assert after.allocator_error == "node main: the grid operator's cap is below every minimum"
    assert after.limit(cid) == limit  # kept, not zeroed

    refuse["now"] = False
    rt.recompute()
    assert rt.view().allocator_error is None
