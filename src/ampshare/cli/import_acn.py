"""``ampshare import-acn TOPOLOGY.json --site caltech -o SITE.yaml``: ACN garage -> site file."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import typer
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ampshare.cli._app import app
from ampshare.config import parse_site
from ampshare.config.acn import ACN_SITES, acn_to_site_dict
from ampshare.errors import ConfigError, InputError

__all__ = ["import_acn", "site_yaml"]

_HEADER = """\
ACN {site} garage, imported by `ampshare import-acn` from {source}
(acnportal 0.3.3's network model, see shared/data/acn_caltech_jpl/README.md).
Every ACN constraint |A (I e^(j phi))| <= limit is one limit below: a node line limit, or a
transformer's delta primary (primary line = (secondary a - c) / ratio). 208 V EVSEs at ACN
phase angle 30 / -90 / 150 deg are L1-L2 / L2-L3 / L3-L1 (lines at 0 / -120 / +120 deg).
"""


@app.command("import-acn")
def import_acn(
    topology: Path = typer.Argument(..., help="acn_network_topology.json"),  # noqa: B008
    site: str = typer.Option(..., "--site", help="caltech, jpl or office001"),
    output: Path = typer.Option(..., "-o", "--output", help="site file to write"),  # noqa: B008
) -> None:
    """Convert a published ACN garage topology into an equivalent site file."""
    try:
        data = _read_json(topology)
        if site not in ACN_SITES:
            raise InputError(f"--site must be one of {', '.join(ACN_SITES)}, not '{site}'")
        mapping = acn_to_site_dict(data, site)
        parse_site(mapping, name=f"{topology}#{site}")  # the file we write must load
    except (InputError, ConfigError) as exc:
        typer.echo(f"import-acn: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        output.write_text(site_yaml(mapping, header=_HEADER.format(site=site,
                                                                  source=topology.name)),
                          encoding="utf-8")
    except OSError as exc:
        typer.echo(f"import-acn: cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {output}: {len(mapping['nodes'])} nodes, "
               f"{len(mapping['chargers'])} chargers")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from exc


def site_yaml(mapping: dict[str, Any], *, header: str = "") -> str:
    """A site-file mapping as YAML for people: one line per charger, nodes in block style."""
    doc = CommentedMap()
    for key, value in mapping.items():
        if key in ("chargers", "loads", "meters"):
            seq = CommentedSeq()
            for item in value:
                row = CommentedMap(item)
                row.fa.set_flow_style()
                seq.append(row)
            doc[key] = seq
        else:
            doc[key] = value
    if header:
        doc.yaml_set_start_comment(header)
    yaml = YAML()
    yaml.width = 200
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()
