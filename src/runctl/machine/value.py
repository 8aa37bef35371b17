"""The core's value types: immutable, hashable dataclasses with slots.

Immutability is held by the type checker, which sees every one as a frozen dataclass: an
assignment to a field is an error in every module it checks (the package, the bench and the
chaos harness; `make test` runs it first). It is not also enforced at run time: a frozen
dataclass sets each field through `object.__setattr__`, which makes its constructor about
seven times as costly as a plain one's, and a decision on a fan-out of 10,000 items makes
tens of thousands of these. The hash is the fields', as a frozen dataclass's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
