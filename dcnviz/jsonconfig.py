"""The JSON round trip of dcnviz's frozen dataclass configs, written once.

Configs travel inside model files as plain JSON (never pickled objects). A config class mixes in
:class:`JsonConfig` and says what its JSON holds; it gets ``to_json`` (tuples become lists) and
``from_json`` (a JSON object, no unknown keys, lists of the right items become tuples, and a clean
:class:`~dcnviz.errors.ConfigError` naming the key where anything is off). A class whose JSON needs
more (renamed or defaulted keys) overrides ``from_json`` and builds on the same pieces.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, kw_only=True)
... class Demo(JsonConfig):
...     _JSON_WHAT = "demo config"
...     _JSON_LISTS = {"sizes": JsonList(int, "`sizes` must be a list of ints; got {value!r}")}
...     sizes: tuple[int, ...] = ()
>>> Demo.from_json({"sizes": [1, 2]})
Demo(sizes=(1, 2))
>>> Demo(sizes=(3,)).to_json()
{'sizes': [3]}
>>> Demo.from_json({"size": 1})
Traceback (most recent call last):
    ...
dcnviz.errors.ConfigError: unknown demo config keys ['size']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from dcnviz.errors import ConfigError


@dataclass(frozen=True)
class JsonList:
    """A tuple field that is a list in JSON: what each item must be, and the error when it is not.

    ``item``: a type (``str``) or a predicate; None accepts any item. ``error``: the message, formatted
    with ``key``, ``value`` and ``short`` (the value's text cut to 80 characters).
    """

    item: type | Callable[[Any], bool] | None
    error: str

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, list | tuple):
            return False
        if self.item is None:
            return True
        if isinstance(self.item, type):
            kind = self.item
            return all(isinstance(v, kind) for v in value)
        ok = self.item
        return all(ok(v) for v in value)


class JsonConfig:
    """Mixin of a dataclass config that is stored as a JSON object (see the module docstring)."""

    _JSON_WHAT: ClassVar[str] = "config"  # "model config" → "model config must be a JSON object"
    _JSON_KEYS: ClassVar[str | None] = None  # "data option keys" → "unknown data option keys [...]"
    _JSON_LISTS: ClassVar[dict[str, JsonList]] = {}  # the tuple fields, lists in JSON

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        for key in self._JSON_LISTS:
            d[key] = list(d[key])
        return dict(d)

    @classmethod
    def json_fields(cls) -> set[str]:
        """The keys the JSON object may hold: the dataclass's field names."""
        return {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def _json_object(cls, obj: Any) -> dict[str, Any]:
        """A copy of ``obj``, which must be a JSON object with no keys the class does not have."""
        if not isinstance(obj, dict):
            raise ConfigError(f"{cls._JSON_WHAT} must be a JSON object; got {type(obj).__name__}")
        unknown = set(obj) - cls.json_fields()
        if unknown:
            raise ConfigError(f"unknown {cls._JSON_KEYS or cls._JSON_WHAT + ' keys'} {sorted(unknown)}")
        return dict(obj)

    @classmethod
    def _json_lists(cls, kw: dict[str, Any]) -> dict[str, Any]:
        """``kw`` with each list field checked (:class:`JsonList`) and made a tuple."""
        for key, spec in cls._JSON_LISTS.items():
            if key in kw:
                if not spec.accepts(kw[key]):
                    raise ConfigError(spec.error.format(key=key, value=kw[key], short=str(kw[key])[:80]))
                kw[key] = tuple(kw[key])
        return kw

    @classmethod
    def _json_build(cls, kw: dict[str, Any]) -> Self:
        """``cls(**kw)``, a missing or mistyped argument as a ConfigError (the class checks the values)."""
        try:
            return cls(**kw)
        except TypeError as e:
            raise ConfigError(f"bad {cls._JSON_WHAT}: {e}") from None

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        return cls._json_build(cls._json_lists(cls._json_object(obj)))
