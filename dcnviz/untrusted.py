"""Helpers for text that comes from a file someone else wrote: bounded JSON, bounded display, linear checks.

* :func:`loads_json` parses JSON with its nesting depth and integer lengths bounded (Python's own
  limits give a raw ``RecursionError`` at ~1,000 levels and a ``ValueError`` past 4,300 digits; here
  both, and anything deeper than :data:`MAX_JSON_DEPTH`, become a :class:`~dcnviz.errors.DcnvizError`
  naming the document).
* :func:`shown` is how an untrusted string appears in a message: escaped (``repr``, so NUL bytes and
  newlines are visible) and cut to a few dozen characters, so a 20 MB tensor name prints as 120.
* :func:`duplicates` finds repeated names in linear time (``list.count`` per name was quadratic).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from dcnviz.errors import CheckpointError, DcnvizError

MAX_TENSORS = 20_000  # tensors in one model file, any container: real DCN checkpoints hold tens to hundreds
MAX_NAME_CHARS = 1024  # tensor and feature names (real ones: under 200 characters)
MAX_DIMS = 16  # dimensions of one tensor
MAX_DIM = 1 << 40  # no dimension, and no product of non-zero dimensions, reaches this
MAX_JSON_DEPTH = 64  # no model config, names file, schema or feature map nests deeper than a few levels
MAX_INT_DIGITS = 100  # a vocabulary size or tensor dimension has at most 20 digits
SHOWN_CHARS = 120  # untrusted strings are cut to this many characters in messages


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr`` of an untrusted value, cut to ``limit`` characters with the full length said.

    >>> shown("user_id")
    "'user_id'"
    >>> shown("a\\x00b")
    "'a\\\\x00b'"
    >>> shown("x" * 1000, limit=12)
    "'xxxxxxxxxx… (1,000 characters)"
    """
    if isinstance(value, str) and len(value) > limit:
        return repr(value[: limit - 2])[:-1] + f"… ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = 300) -> str:
    r"""Free text (an exception's message that may quote a file) for a message: control characters
    escaped, cut to ``limit`` characters. Unlike :func:`shown`, no quotes are added.

    >>> clip("bad" + chr(0) + "name" + "x" * 500, limit=20)
    'bad\\x00namexxxx… (508 characters)'
    """
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    if len(text) <= limit and len(escaped) <= limit:
        return escaped
    return escaped[: limit - 5] + f"… ({len(text):,} characters)"


def markdown_text(text: str, limit: int = 80) -> str:
    r"""An untrusted name (an upload's file name) for Streamlit markdown: :func:`clip`-ped, with the
    characters that make links, HTML, code or emphasis escaped.

    >>> markdown_text("a*b[c](http://x)<i>.pt")
    'a\\*b\\[c\\]\\(http://x\\)\\<i\\>.pt'
    """
    return re.sub(r"([\\`*\[\]()<>#|~])", r"\\\1", clip(text, limit))


def shown_list(values: Iterable[Any], n: int = 5, limit: int = 60) -> str:
    """The first ``n`` values, each :func:`shown`, as a list literal (``[...]`` with ``…`` when cut).

    >>> shown_list(["a", "b", "c"], n=2)
    "['a', 'b', …]"
    """
    out, more = [], False
    for i, v in enumerate(values):
        if i == n:
            more = True
            break
        out.append(shown(v, limit))
    return "[" + ", ".join(out) + (", …" if more else "") + "]"


def duplicates(names: Iterable[Any]) -> list[Any]:
    """The names that occur more than once, sorted (linear time).

    >>> duplicates(["a", "b", "a", "c", "b"])
    ['a', 'b']
    """
    return sorted(n for n, c in Counter(names).items() if c > 1)


def check_shape(shape: Any, what: str) -> None:
    """Refuse a tensor shape with a dimension, or a product of its non-zero dimensions, of 2**40 or more.

    A zero-length tensor holds no data whatever its other dimensions, so only this keeps
    ``[0, 10**30]`` (which NumPy and torch cannot even represent) out.
    """
    dims = [int(s) for s in shape]
    if len(dims) > MAX_DIMS:
        raise CheckpointError(f"{what} has {len(dims)} dimensions; at most {MAX_DIMS} are read")
    if any(s >= MAX_DIM for s in dims) or math.prod(s for s in dims if s) >= MAX_DIM:
        raise CheckpointError(f"{what} has shape {shown(dims, 80)}: a dimension of 2**40 or more is not a weight")


def json_depth(obj: Any) -> int:
    """Nesting depth of parsed JSON (lists and dicts), walked without recursion in linear time.

    >>> json_depth({"a": [1, [2, "]]]"]]})
    3
    """
    depth, stack = 0, [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        depth = max(depth, d)
        stack.extend((x, d + 1) for x in v if isinstance(x, dict | list))
    return depth


def loads_json(
    text: str | bytes,
    what: str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    error: type[DcnvizError] = DcnvizError,
    position: str = "char",
) -> Any:
    """``json.loads`` for untrusted text: depth and integer lengths checked first, every failure an ``error``.

    ``what`` names the document in messages ("feature_map.json", "the names file", "model metadata");
    ``position`` says where a syntax error is: ``"char"`` (offset) or ``"line"`` (line and column).

    >>> loads_json('{"a": [1, 2]}', "x")
    {'a': [1, 2]}
    >>> loads_json("[" * 100 + "]" * 100, "NAMES.json")
    Traceback (most recent call last):
    ...
    dcnviz.errors.DcnvizError: NAMES.json is nested more than 64 levels deep; at most 64 are read
    """

    def parse_int(digits: str) -> int:
        n = len(digits.lstrip("-"))
        if n > MAX_INT_DIGITS:
            raise error(f"{what} holds an integer of {n:,} digits; at most {MAX_INT_DIGITS} are read")
        return int(digits)

    try:
        obj = json.loads(text, parse_int=parse_int)
    except DcnvizError:
        raise
    except RecursionError:  # the C scanner's own guard, at about 1,000 levels
        raise error(f"{what} is nested more than {max_depth} levels deep; at most {max_depth} are read") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}: {e.msg}" if position == "line" else f"{e.msg} at char {e.pos}"
        raise error(f"{what} is not valid JSON: {where}") from None
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text (byte {e.start})") from None
    except ValueError as e:  # belt and braces: the checks above should have caught these
        raise error(f"{what} could not be parsed: {type(e).__name__}: {str(e)[:100]}") from None
    if json_depth(obj) > max_depth:
        raise error(f"{what} is nested more than {max_depth} levels deep; at most {max_depth} are read")
    return obj
