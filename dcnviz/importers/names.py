"""Block names supplied by the user: NAMES.json (``["a", ...]`` or ``[{"name", "width"}, ...]``) or CSV.

Names only: they rename the blocks the importer inferred when the counts agree, else split x0 into
equal widths when d divides evenly. Names with widths define the blocks outright; the widths must sum
to d.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from dcnviz.errors import ConfigError, DataFormatError
from dcnviz.spec import Block
from dcnviz.untrusted import MAX_NAME_CHARS, duplicates, loads_json, shown, shown_list

MAX_NAMES_BYTES = 1024 * 1024
MAX_NAMES = 10_000


def read_names_file(path_or_bytes: str | os.PathLike[str] | bytes) -> list[Any]:
    """Parse NAMES.json or a small CSV (``name[,width]`` per line, optional header).

    Returns ``["name", ...]`` or ``[{"name": str, "width": int}, ...]``.

    >>> read_names_file(b'["user", "movie"]')
    ['user', 'movie']
    >>> read_names_file(b"name,width\\nuser,8\\nmovie,8\\n")
    [{'name': 'user', 'width': 8}, {'name': 'movie', 'width': 8}]
    """
    if isinstance(path_or_bytes, bytes | bytearray):
        raw, label = bytes(path_or_bytes), "names file"
    else:
        path = Path(path_or_bytes)
        label = path.name
        if not path.is_file():
            raise DataFormatError(f"no names file at {shown(str(path))}")
        if path.stat().st_size > MAX_NAMES_BYTES:
            raise DataFormatError(f"{label} is over {MAX_NAMES_BYTES} bytes; a names file is one line per feature")
        raw = path.read_bytes()
    if len(raw) > MAX_NAMES_BYTES:
        raise DataFormatError(f"{label} is over {MAX_NAMES_BYTES} bytes; a names file is one line per feature")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{label} is not UTF-8 (byte {e.start})") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        return validate_names(loads_json(text, label, error=DataFormatError, position="line"), label)
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0]][:2] in (["name"], ["name", "width"]):
        rows = rows[1:]
    out: list[Any] = []
    for i, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if len(cells) == 1:
            out.append(cells[0])
        elif len(cells) == 2:
            try:
                width = int(cells[1])
            except ValueError:
                raise DataFormatError(f"{label} row {i}: width {shown(cells[1], 40)} is not an integer") from None
            out.append({"name": cells[0], "width": width})
        else:
            raise DataFormatError(f"{label} row {i}: expected 'name' or 'name,width'; got {len(cells)} columns")
    return validate_names(out, label)


def validate_names(obj: Any, label: str = "names") -> list[Any]:
    """Check a names list: all strings, or all ``{"name": str, "width": int >= 1}``; unique names."""
    if not isinstance(obj, list) or not obj:
        raise DataFormatError(f"{label} must be a non-empty list of names or of {{name, width}} objects")
    if len(obj) > MAX_NAMES:
        raise DataFormatError(f"{label} lists {len(obj)} names, more than {MAX_NAMES}")
    if all(isinstance(n, str) for n in obj):
        names = [n.strip() for n in obj]
    elif all(isinstance(n, dict) for n in obj):
        names = []
        for i, n in enumerate(obj):
            if set(n) != {"name", "width"}:
                raise DataFormatError(f"{label} entry {i}: expected keys name and width; got {shown_list(sorted(n))}")
            w = n["width"]
            if not isinstance(n["name"], str) or not isinstance(w, int) or isinstance(w, bool) or w < 1:
                raise DataFormatError(
                    f"{label} entry {i}: name must be a string and width an int >= 1; "
                    f"got {shown(n['name'], 60)}, {shown(w, 40)}"
                )
            names.append(n["name"].strip())
    else:
        raise DataFormatError(f"{label} must list only names, or only {{name, width}} objects, not a mix")
    if any(not n for n in names):
        raise DataFormatError(f"{label} has an empty name")
    long = next((n for n in names if len(n) > MAX_NAME_CHARS), None)
    if long is not None:
        raise DataFormatError(f"{label} has a name {shown(long)}, longer than the {MAX_NAME_CHARS:,} characters read")
    dup = duplicates(names)
    if dup:
        raise DataFormatError(f"{label} has duplicate names: {shown_list(dup)}")
    if isinstance(obj[0], str):
        return names
    return [{"name": nm, "width": int(n["width"])} for nm, n in zip(names, obj, strict=True)]


def apply_names(inferred: list[Block] | None, d: int, names: list[Any]) -> list[Block]:
    """Blocks from user names: rename ``inferred`` blocks, split d evenly, or use the given widths.

    >>> [(b.name, b.start, b.stop) for b in apply_names(None, 4, ["a", "b"])]
    [('a', 0, 2), ('b', 2, 4)]
    """
    names = validate_names(names)
    if isinstance(names[0], dict):
        widths = [n["width"] for n in names]
        if sum(widths) != d:
            raise ConfigError(f"the names' widths sum to {sum(widths)}, but x0 has width d={d}")
        out, start = [], 0
        for n in names:
            out.append(Block(n["name"], start, start + n["width"], "user"))
            start += n["width"]
        return out
    if inferred is not None and len(inferred) == len(names) and not (len(inferred) == 1 and inferred[0].name == "x0"):
        return [Block(n, b.start, b.stop, b.kind) for n, b in zip(names, inferred, strict=True)]
    if d % len(names) == 0:
        w = d // len(names)
        return [Block(n, i * w, (i + 1) * w, "user") for i, n in enumerate(names)]
    known = f" and the file's {len(inferred)} inferred blocks" if inferred else ""
    raise ConfigError(
        f"cannot infer block widths: {len(names)} names do not divide x0's width d={d}{known}; "
        'give widths ([{"name": ..., "width": ...}] or name,width CSV rows)'
    )
