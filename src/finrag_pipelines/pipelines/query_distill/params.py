"""Typed parameters of query_distill (validated by Kedro from ``parameters_query_distill.yml``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from finrag_pipelines.llm.parsing import normalise_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectParams(_Strict):
    """Which corpus documents get a query."""

    max_documents: int | None = Field(ge=1, description="null = all documents; else a seeded sample")
    seed: int
    min_chars: int = Field(ge=0)
    passage_max_chars: int = Field(ge=50, description="passage shown to the LLM is cut here")


class PersonaParams(_Strict):
    """Candidate personas per document."""

    top_k: int = Field(ge=1)


class SpecParams(_Strict):
    """The allowed question types and difficulties, with the descriptions shown to the LLM."""

    question_types: dict[str, str] = Field(min_length=1)
    difficulties: dict[str, str] = Field(min_length=1)
    length_rules: dict[str, str]

    @model_validator(mode="after")
    def _rules_cover_types(self) -> SpecParams:
        missing = set(self.question_types) - set(self.length_rules)
        if missing:
            raise ValueError(f"query_distill.spec.length_rules lacks {sorted(missing)}")
        return self


class KeywordBackendParams(_Strict):
    """The offline keyword baseline: TF-IDF keywords filled into per-type templates (``$k1`` … ``$k4``)."""

    top_keywords: int = Field(ge=1, le=10)
    seed: int
    templates: dict[str, list[str]] = Field(min_length=1)


class RoundTripParams(_Strict):
    """Keep a query only if the base retriever ranks its document in the top k."""

    enabled: bool
    top_k: int = Field(ge=1)


class CleanParams(_Strict):
    """Filters applied to generated queries."""

    min_chars: int = Field(ge=1)
    max_chars: int = Field(ge=1)
    max_copied_chars: int = Field(ge=5)
    near_duplicates: bool
    dedup_max_hamming: int = Field(ge=0, le=15)
    dedup_min_jaccard: float = Field(ge=0.0, le=1.0)
    round_trip: RoundTripParams


class LabelAliasParams(_Strict):
    """Other names a model may give the question types and difficulties (their descriptions count too)."""

    question_types: dict[str, list[str]]
    difficulties: dict[str, list[str]]


class AnswerParams(_Strict):
    """How stage-1 answers are read (``llm.parsing.match_choice``); when an answer only repeats the prompt."""

    min_prefix_chars: int = Field(ge=1, description="shortest prefix accepted (if it starts one option only)")
    echo_min_chars: int = Field(ge=8, description="characters copied from the prompt's fixed text = an echo")
    aliases: LabelAliasParams

    def check_labels(self, spec: SpecParams) -> None:
        """Fail on an alias of an unknown label, or one alias (normalised) given to two labels.

        Raises:
            ValueError: Naming ``query_distill.answers.aliases.<group>.<label>`` and what to fix.
        """
        for group in ("question_types", "difficulties"):
            labels: dict[str, str] = getattr(spec, group)
            aliases: dict[str, list[str]] = getattr(self.aliases, group)
            unknown = sorted(set(aliases) - set(labels))
            if unknown:
                raise ValueError(
                    f"query_distill.answers.aliases.{group} names {unknown}, which are not in "
                    f"query_distill.spec.{group} {sorted(labels)}; rename or remove them"
                )
            owner: dict[str, str] = {}
            for label in labels:
                for name in [label, *aliases.get(label, [])]:
                    norm = normalise_text(name)
                    if owner.setdefault(norm, label) != label:
                        raise ValueError(
                            f"query_distill.answers.aliases.{group}.{label}: {name!r} also names "
                            f"{owner[norm]!r}; an alias must name one label"
                        )
