"""What a topology made on this host, kept in the state directory (topology/LAB.json),
so that `vn topo destroy` removes exactly that and `apply` of a changed file knows what
to take away.  Written atomically (rename), like the state file."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

DIR = "topology"


@dataclass
class Record:
    """The lab's vnets (long ids) and the veths (their host ends) made for it here."""

    lab: str
    host: str = ""
    source: str = ""
    vnets: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)


def path(state_dir: Path, lab: str) -> Path:
    return Path(state_dir) / DIR / f"{lab}.json"


def read(state_dir: Path, lab: str) -> Record | None:
    """The lab's record, or None if this host has none."""
    p = path(state_dir, lab)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        from vnet.model.state import StateError
        raise StateError(f"{p}: cannot read the topology record: {e}") from None
    return Record(lab, data.get("host", ""), data.get("source", ""), list(data.get("vnets", [])),
                  list(data.get("veths", [])))


def write(state_dir: Path, rec: Record) -> None:
    p = path(state_dir, rec.lab)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": rec.host, "source": rec.source, "vnets": sorted(rec.vnets),
                               "veths": sorted(rec.veths)}, indent=2) + "\n")
    os.replace(tmp, p)


def remove(state_dir: Path, lab: str) -> None:
    p = path(state_dir, lab)
    p.unlink(missing_ok=True)
    try:
        p.parent.rmdir()  # the last lab gone: leave nothing behind
    except OSError:
        pass


def all_labs(state_dir: Path) -> list[str]:
    d = Path(state_dir) / DIR
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []
