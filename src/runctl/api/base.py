"""What every API model shares: camelCase aliases, strictness about unknown fields, RFC 3339 times.

The models are the single source of the CRD schemas (`runctl.api.crds` generates them), so every
field carries a description written for `kubectl explain` readers: what it does, its unit, its
default.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

from runctl.timefmt import fmt_time

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1123 label (lower-case alphanumerics and '-', starting and ending alphanumeric)."""

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS-1123 subdomain (dot-separated labels)."""

MAX_MESSAGE = 32768
"""Longest message, as metav1.Condition allows; bounds the CEL cost of comparing messages."""

MAX_REASON = 1024


def _fmt(value: dt.datetime) -> str:
    text = fmt_time(value)
    assert text is not None
    return text


Timestamp = Annotated[dt.datetime, PlainSerializer(_fmt, return_type=str, when_used="json")]
"""An RFC 3339 time as Kubernetes writes it: UTC, whole seconds, trailing Z."""


class ApiModel(BaseModel):
    """Base of the API models: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored when reading (the API server prunes them anyway, and an older
    operator must read a newer object); `populate_by_name` lets Python code use either name.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
        validate_default=False,
    )

    def to_api(self) -> dict[str, Any]:
        """The camelCase dict the API stores, absent (None) fields omitted."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data
