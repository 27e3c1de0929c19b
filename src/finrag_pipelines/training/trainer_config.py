"""The typed base of every trainer config: strict pydantic fields, each with the rule its error states.

A config is built from a conf mapping (:meth:`TrainerConfig.from_params`) and is frozen. Every problem
raises ``ValueError`` with one message that names the setting, the value and the rule, e.g.
``verl SFT setting lora_alpha=0.5: must be an int > 0 (verl stores it as an int).``; unknown and
missing keys are listed together. Types are strict: no string becomes a bool, no float an int.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic_core import PydanticUndefined

from finrag_pipelines.config import StrictModel


def _str_path(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _empty_if_none(value: Any) -> Any:
    return () if value is None else value


Number = StrictInt | StrictFloat
"""An int or a float, kept as given (``32`` stays ``32``); never a bool or a string."""
PathText = Annotated[StrictStr, BeforeValidator(_str_path)]
"""A path, stored as text (``Path`` objects are accepted)."""
Names = Annotated[tuple[StrictStr, ...], BeforeValidator(_empty_if_none)]
"""A list of names (null = none)."""
NOT_BLANK = r"^\s*\S"
"""``pattern`` of a text setting that may not be empty or blank."""


def setting(rule: str, default: Any = PydanticUndefined, **constraints: Any) -> Any:
    """A trainer setting: pydantic constraints (``ge``, ``gt``, ``min_length``, …) plus the rule its error
    message states when the value breaks the type or a constraint. No default = required in conf."""
    return Field(default, json_schema_extra={"rule": rule}, **constraints)


class TrainerConfig(StrictModel):
    """Base of the trainer configs (``SwiftEmbeddingConfig``, ``VerlSFTConfig``, ``VerlGRPOConfig``).

    Subclasses set :attr:`what` (the name in messages) and :attr:`packages` (versions a manifest records),
    declare fields with :func:`setting`, and check rules across fields in ``model_validator(mode="after")``
    methods with :meth:`need`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    what: ClassVar[str] = "trainer"
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "peft")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ValueError(type(self)._explain(exc, data)) from None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Build from a conf mapping; unknown or missing keys raise ``ValueError`` naming them."""
        return cls(**dict(params))

    def replace(self, **changes: Any) -> Self:
        """A copy with some settings changed, validated like a new config."""
        return type(self)(**{**{name: getattr(self, name) for name in type(self).model_fields}, **changes})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists for tuples)."""
        return self.model_dump(mode="json")

    def hash_fields(self) -> dict[str, Any]:
        """What of this config shapes a run, for :func:`~finrag_pipelines.training.runs.config_hash`."""
        return {"config": self.to_dict()}

    def need(self, condition: bool, name: str, rule: str) -> None:
        """Raise the setting's error unless ``condition`` holds (for rules across settings)."""
        if not condition:
            raise ValueError(self.message(name, getattr(self, name), rule))

    @classmethod
    def message(cls, name: str, value: Any, rule: str) -> str:
        """``<what> setting <name>=<value>: <rule>.``"""
        return f"{cls.what} setting {name}={value!r}: {rule}."

    @classmethod
    def _explain(cls, exc: ValidationError, data: Mapping[str, Any]) -> str:
        errors = exc.errors()
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if unknown:
            return f"unknown {cls.what} setting(s) {unknown}; allowed: {sorted(cls.model_fields)}."
        missing = sorted(str(e["loc"][0]) for e in errors if e["type"] == "missing")
        if missing:
            return f"{cls.what} setting(s) {missing} missing from conf; set them explicitly."
        first = errors[0]
        if not first["loc"]:  # a rule across settings: its message is complete
            return str(first.get("ctx", {}).get("error", first["msg"]))
        name = str(first["loc"][0])
        extra = cls.model_fields[name].json_schema_extra
        rule = extra.get("rule") if isinstance(extra, dict) else None
        return cls.message(name, data.get(name), str(rule or first["msg"]))
