"""The teacher: one object per LLM part, chosen once, that either asks the endpoint or says why it cannot.

Every call goes through the project's one LLM stack (``llm.distributed.run_chat_requests``: journal, resume,
retries, invalid-output regeneration). A part's own sampling (temperature, token cap, a
per-sample ``seed``) becomes part of the journal key, so ``k`` samples of one prompt are ``k`` journal
entries and a rerun replays all of them. The ``keyword`` backend (offline demo) has no teacher: the part is
reported as not run, with the reason, and produces no rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from finrag_pipelines.llm.batch import ChatRequest, ChatResult
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.distributed import run_chat_requests
from finrag_pipelines.llm.journal import ResponseJournal


@dataclass(frozen=True)
class Teacher:
    """A part's access to the LLM.

    Attributes:
        part: The part (``rewrite``, ``reasoning``, ``grounded``), for reports and progress labels.
        llm: The shared ``llm`` settings.
        credentials: The ``llm`` credentials.
        journal: The shared response journal.
        unavailable: ``None`` when the part can ask; otherwise why it is not run.
    """

    part: str
    llm: LLMConfig
    credentials: dict[str, Any] | None
    journal: ResponseJournal
    unavailable: str | None

    @property
    def available(self) -> bool:
        return self.unavailable is None

    @property
    def model(self) -> str:
        return self.llm.model

    def ask(
        self,
        requests: Sequence[ChatRequest],
        validate: Callable[[str], Any],
        desc: str,
        *,
        temperature: float,
        max_tokens: int | None,
        seed: int | None = None,
    ) -> list[ChatResult]:
        """Answer ``requests`` with this part's sampling (the journal answers what it already holds).

        Raises:
            RuntimeError: If the part is not available (callers check :attr:`available` first).
        """
        if self.unavailable is not None:
            raise RuntimeError(f"sft_distill {self.part}: no teacher ({self.unavailable})")
        extra = dict(self.llm.extra_body) | ({"seed": seed} if seed is not None else {})
        config = dataclasses.replace(
            self.llm, temperature=temperature, max_tokens=max_tokens, extra_body=extra
        )
        return run_chat_requests(
            requests,
            llm_config=config,
            credentials=self.credentials,
            journal=self.journal,
            validate=validate,
            desc=f"sft_distill {desc}",
            execution=None,
        )


def choose_teacher(
    part: str, enabled: bool, llm: LLMConfig, credentials: dict[str, Any] | None, journal: ResponseJournal
) -> Teacher:
    """The part's teacher: available with an ``openai`` backend when the part is enabled."""
    if not enabled:
        reason = f"not run: sft_distill.{part}.enabled is false"
    elif llm.backend != "openai":
        reason = (
            f"not run: llm.backend is {llm.backend!r} (offline, no LLM); set llm.backend=openai and "
            "llm.base_url to an OpenAI-compatible endpoint to produce it"
        )
    else:
        reason = None
    return Teacher(part, llm, credentials, journal, reason)


def part_status(part: str, enabled: bool, llm: LLMConfig) -> str:
    """``"run"`` or the not-run reason, as :func:`choose_teacher` decides it (for reports)."""
    return choose_teacher(part, enabled, llm, None, None).unavailable or "run"  # type: ignore[arg-type]
