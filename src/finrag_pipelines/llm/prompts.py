"""Versioned prompt templates (YAML files in ``conf/base/prompts/``) rendered into chat messages.

A template file holds ``name``, ``version``, an optional ``system`` and a ``user`` text (and optionally a
``description``, which is documentation only). Placeholders use :class:`string.Template` syntax,
``$passage`` or ``${characters}``, so JSON braces in few-shot examples need no escaping; write ``$$`` for
a literal dollar sign. :attr:`PromptTemplate.sha256` is the prompt hash stamped on generated rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_REQUIRED_KEYS = ("name", "version", "user")
_OPTIONAL_KEYS = ("system", "description")


class PromptTemplateError(ValueError):
    """A prompt template file is malformed."""


class MissingSlotError(KeyError):
    """``render`` was not given a value for a placeholder of the template."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def _placeholders(text: str, where: str) -> list[str]:
    """The placeholder names in ``text``, in order, checking that every ``$`` is well-formed."""
    names: list[str] = []
    for match in string.Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            index = match.start()
            line = text.count("\n", 0, index) + 1
            snippet = text[index : index + 12].split("\n")[0]
            raise PromptTemplateError(
                f"{where}, line {line}: invalid placeholder at {snippet!r}. Placeholders are $name or "
                f"${{name}}; write $$ for a literal dollar sign."
            )
        name = match.group("named") or match.group("braced")
        if name and name not in names:
            names.append(name)
    return names


@dataclass(frozen=True)
class PromptTemplate:
    """A named, versioned chat prompt.

    Attributes:
        name: Template name, e.g. ``query_distill_stage1``.
        version: Version label; bump it when the wording changes meaningfully.
        system: System message text, or ``None``.
        user: User message text.
    """

    name: str
    version: str
    system: str | None
    user: str

    def __post_init__(self) -> None:
        """Check the fields and the placeholder syntax.

        Raises:
            PromptTemplateError: Naming the template and the bad field.
        """
        where = f"prompt template {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise PromptTemplateError(f"prompt template name must be a non-empty string, got {self.name!r}.")
        if isinstance(self.version, (int, float)) and not isinstance(self.version, bool):
            object.__setattr__(self, "version", str(self.version))
        if not isinstance(self.version, str) or not self.version.strip():
            raise PromptTemplateError(
                f"{where}: version must be a non-empty string or number, got {self.version!r}."
            )
        if not isinstance(self.user, str) or not self.user.strip():
            raise PromptTemplateError(f"{where}: user must be a non-empty string.")
        if self.system is not None and not isinstance(self.system, str):
            raise PromptTemplateError(
                f"{where}: system must be a string or absent, got {type(self.system).__name__}."
            )
        if self.system is not None:
            _placeholders(self.system, f"{where} (system)")
        _placeholders(self.user, f"{where} (user)")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<mapping>") -> PromptTemplate:
        """Build a template from a parsed YAML mapping.

        Args:
            data: Keys ``name``, ``version``, ``user`` and optionally ``system``, ``description``.
            source: Where it came from (a file path), named in errors.

        Returns:
            The template.

        Raises:
            PromptTemplateError: Naming ``source`` and the missing, unknown or bad key.
        """
        if not isinstance(data, Mapping):
            raise PromptTemplateError(
                f"{source}: a prompt template must be a mapping, got {type(data).__name__}."
            )
        unknown = sorted(str(k) for k in data if k not in _REQUIRED_KEYS + _OPTIONAL_KEYS)
        if unknown:
            raise PromptTemplateError(
                f"{source}: unknown key(s) {unknown}; a prompt template has {list(_REQUIRED_KEYS)} and "
                f"optionally {list(_OPTIONAL_KEYS)}."
            )
        missing = [k for k in _REQUIRED_KEYS if data.get(k) in (None, "")]
        if missing:
            raise PromptTemplateError(f"{source}: missing key(s) {missing} in the prompt template.")
        try:
            return cls(
                name=data["name"], version=data["version"], system=data.get("system"), user=data["user"]
            )
        except PromptTemplateError as exc:
            raise PromptTemplateError(f"{source}: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> PromptTemplate:
        """Load a template from a YAML file.

        Args:
            path: The file.

        Returns:
            The template.

        Raises:
            PromptTemplateError: If the file is missing, not YAML, or not a valid template.
        """
        import yaml

        file = Path(path)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise PromptTemplateError(f"prompt template file {file} does not exist.") from exc
        except yaml.YAMLError as exc:
            raise PromptTemplateError(f"{file}: not valid YAML: {exc}") from exc
        return cls.from_mapping(data, source=str(file))

    @property
    def slots(self) -> list[str]:
        """Placeholder names used by the system and user texts."""
        names = _placeholders(self.system or "", "system") + _placeholders(self.user, "user")
        return list(dict.fromkeys(names))

    @property
    def literal_texts(self) -> list[str]:
        """The fixed text between the placeholders (system and user), ``$$`` read as ``$``.

        What every rendered prompt shares whatever the slots hold: an answer that copies a long run of it
        repeats the instructions instead of answering
        (:func:`~finrag_pipelines.llm.parsing.prompt_echo_finder`).
        """
        parts: list[str] = []
        for text in (self.system or "", self.user):
            piece, last = "", 0
            for match in string.Template.pattern.finditer(text):
                piece += text[last : match.start()]
                last = match.end()
                if match.group("escaped") is not None:
                    piece += "$"
                else:
                    parts.append(piece)
                    piece = ""
            parts.append(piece + text[last:])
        return [p for p in parts if p.strip()]

    @property
    def sha256(self) -> str:
        """Hash of name, version, system and user: the prompt hash stamped on outputs."""
        payload = {"name": self.name, "version": self.version, "system": self.system, "user": self.user}
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def render(self, **slots: Any) -> list[dict[str, str]]:
        """Fill the placeholders and return chat messages.

        Args:
            **slots: A value for every placeholder (converted with ``str``); extra ones are ignored.

        Returns:
            ``[{"role": "system", ...}, {"role": "user", ...}]`` (no system message if there is none).

        Raises:
            MissingSlotError: Naming the template and the first missing slot.
        """
        values = {k: str(v) for k, v in slots.items()}
        messages: list[dict[str, str]] = []
        for role, text in (("system", self.system), ("user", self.user)):
            if text is None:
                continue
            try:
                content = string.Template(text).substitute(values)
            except KeyError as exc:
                slot = exc.args[0]
                raise MissingSlotError(
                    f"prompt template {self.name!r} (version {self.version}) needs slot {slot!r} in its "
                    f"{role} text; pass render({slot}=...). Slots: {self.slots}."
                ) from None
            messages.append({"role": role, "content": content})
        return messages
