"""The configuration boundary: YAML site files validated with pydantic, turned into core values.

``load_site(path)`` / ``parse_site(text_or_mapping)`` give a ``core.site.Site``;
``load_config`` / ``parse_config`` also give the other sections (``policy``, ``control``,
``planner``, ``ocpp``, ``web``). Every problem in a file is reported at once, in one
``ampshare.errors.ConfigError`` whose ``issues`` name file, key path, line and a hint.
"""

from __future__ import annotations

from ampshare.config._build import default_connection
from ampshare.config._dump import dump_site
from ampshare.config._loader import (
    SiteConfig,
    load_config,
    load_site,
    parse_config,
    parse_site,
)

__all__ = [
    "SiteConfig",
    "default_connection",
    "dump_site",
    "load_config",
    "load_site",
    "parse_config",
    "parse_site",
]
