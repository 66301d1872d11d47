"""The pure core: site model, snapshots and allocation. No I/O, no asyncio, no clocks."""

import copyreg
from collections.abc import Callable
from types import MappingProxyType
from typing import Any


def read_only_map(d: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """A read-only view of ``d`` (what unpickling a pickled ``MappingProxyType`` calls)."""
    return MappingProxyType(d)


def _pickle_read_only_map(
    m: MappingProxyType[Any, Any],
) -> tuple[Callable[[dict[Any, Any]], MappingProxyType[Any, Any]], tuple[dict[Any, Any]]]:
    return (read_only_map, (dict(m),))


# The core's frozen values hold their maps as read-only views (``MappingProxyType``), which
# pickle cannot copy by itself. Pickled as a copy of the dict, they can travel to worker
# processes (``ampshare capacity`` and ``simulate`` replay in parallel) and come back as
# read-only views.
copyreg.pickle(MappingProxyType, _pickle_read_only_map)
