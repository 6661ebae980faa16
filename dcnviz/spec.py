"""FeatureSpec: the contract between data, model and analysis.

A FeatureSpec lists the fields that make up x0 = [x_embed,1; ...; x_embed,n; x_dense] (paper §3.1) in
x0 order. Every block boundary used downstream (heatmap axes, block norms, importers) comes from
:meth:`FeatureSpec.blocks`; nothing recomputes offsets by hand.

Encoding conventions (shared by the data loaders, the model and the checkpoint):

* ``categorical``: one id per row. Index 0 is the out-of-vocabulary bucket; the value ``vocab[i]``
  has index ``i + 1``. ``vocab_size == len(vocab) + 1``.
* ``multivalent``: up to ``max_len`` ids per row, same indexing as categorical, padded with -1;
  the embedding is the mean of the present ids' embeddings (paper §3.1). A row with no id gets a
  zero vector.
* ``dense``: one float per row, normalised as (value - mean) / std with the training split's
  statistics; its block in x0 has width 1 and holds the normalised value itself.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from dcnviz.errors import ConfigError
from dcnviz.jsonconfig import JsonConfig, JsonList

FieldKind = Literal["categorical", "multivalent", "dense"]
FIELD_KINDS: tuple[str, ...] = ("categorical", "multivalent", "dense")


def rule_of_thumb_dim(vocab_size: int) -> int:
    """Embedding size 6 · vocab^(1/4), the rule of thumb of paper §7.1.3 (rounded, at least 1).

    >>> rule_of_thumb_dim(3706)
    47
    >>> rule_of_thumb_dim(2)
    7
    """
    if vocab_size < 1:
        raise ConfigError(f"vocab_size must be >= 1; got vocab_size={vocab_size}")
    return max(1, round(6.0 * vocab_size**0.25))


@dataclass(frozen=True, kw_only=True)
class Field(JsonConfig):
    """One input feature and its block of x0."""

    _JSON_WHAT = "a field"
    _JSON_KEYS = "field keys"
    # to_json writes vocab as a list; from_json below reads each value with str()
    _JSON_LISTS: ClassVar[dict[str, JsonList]] = {"vocab": JsonList(None, "`vocab` must be a list; got {value!r}")}

    name: str  # feature name, shown on heatmap axes
    kind: FieldKind  # categorical | multivalent | dense
    embedding_dim: int  # width of this field's block in x0 (1 for dense)
    vocab: tuple[str, ...] = ()  # known values (categorical/multivalent); id = position + 1
    max_len: int = 1  # ids per row for multivalent fields
    mean: float = 0.0  # dense: training-split mean used for normalisation
    std: float = 1.0  # dense: training-split std used for normalisation

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("field name must be non-empty")
        if self.kind not in FIELD_KINDS:
            raise ConfigError(f"field kind must be one of {FIELD_KINDS}; got kind={self.kind!r}")
        if self.embedding_dim < 1:
            raise ConfigError(
                f"embedding_dim must be >= 1; got embedding_dim={self.embedding_dim} for field {self.name!r}"
            )
        if self.kind == "dense":
            if self.embedding_dim != 1:
                raise ConfigError(
                    f"dense field {self.name!r} has width 1 in x0; got embedding_dim={self.embedding_dim}"
                )
            if not (math.isfinite(self.std) and self.std > 0 and math.isfinite(self.mean)):
                raise ConfigError(
                    f"dense field {self.name!r} needs finite mean and std > 0; got mean={self.mean}, std={self.std}"
                )
        if self.kind == "multivalent" and self.max_len < 1:
            raise ConfigError(f"max_len must be >= 1; got max_len={self.max_len} for {self.name!r}")

    @property
    def vocab_size(self) -> int:
        """Number of embedding rows: known values plus the out-of-vocabulary bucket (0 for dense)."""
        return 0 if self.kind == "dense" else len(self.vocab) + 1

    @classmethod
    def from_json(cls, obj: Any) -> Field:
        """A field from its JSON object; values are coerced (``str``, ``int``, ``float``) as they are read."""
        obj = cls._json_object(obj)
        try:
            return cls(
                name=str(obj["name"]),
                kind=obj["kind"],
                embedding_dim=int(obj["embedding_dim"]),
                vocab=tuple(str(v) for v in obj.get("vocab", ())),
                max_len=int(obj.get("max_len", 1)),
                mean=float(obj.get("mean", 0.0)),
                std=float(obj.get("std", 1.0)),
            )
        except KeyError as e:
            raise ConfigError(f"field is missing key {e.args[0]!r}") from None
        except (TypeError, ValueError, OverflowError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"bad field value: {e}") from None


@dataclass(frozen=True)
class Block:
    """A field's slice of x0: ``x0[start:stop]`` (stop exclusive)."""

    name: str
    start: int
    stop: int
    kind: str

    @property
    def width(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class FeatureSpec:
    """Fields in x0 order. The single source of block boundaries downstream."""

    fields: tuple[Field, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            dup = sorted(n for n, c in Counter(names).items() if c > 1)  # linear: a file may list 10**5 fields
            raise ConfigError(f"field names must be unique; duplicated: {[n[:40] for n in dup[:5]]}")

    @property
    def d(self) -> int:
        """Width of x0: the sum of the fields' block widths."""
        return sum(f.embedding_dim for f in self.fields)

    def blocks(self) -> list[Block]:
        """Each field's slice of x0, in x0 order.

        >>> spec = FeatureSpec((Field(name="a", kind="categorical", embedding_dim=2, vocab=("x",)),
        ...                     Field(name="y", kind="dense", embedding_dim=1)))
        >>> [(b.name, b.start, b.stop) for b in spec.blocks()]
        [('a', 0, 2), ('y', 2, 3)]
        """
        out, start = [], 0
        for f in self.fields:
            out.append(Block(f.name, start, start + f.embedding_dim, f.kind))
            start += f.embedding_dim
        return out

    def by_kind(self, kind: FieldKind) -> list[Field]:
        return [f for f in self.fields if f.kind == kind]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise ConfigError(f"no field named {name!r}; fields are {self.names}")

    def to_json(self) -> dict[str, Any]:
        return {"fields": [f.to_json() for f in self.fields]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FeatureSpec:
        if not isinstance(obj, dict) or not isinstance(obj.get("fields"), list):
            raise ConfigError("a FeatureSpec must be a JSON object with a 'fields' list")
        return cls(tuple(Field.from_json(f) for f in obj["fields"]))
