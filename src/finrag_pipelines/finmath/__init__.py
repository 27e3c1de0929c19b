"""Finance calculation questions whose answers are computed in code, never by a model (Kedro-free).

``generate_questions(families, per_family, seed)`` samples realistic parameters, renders one of several
Chinese phrasings with the rounding rule stated, computes the answer, builds distractors from typical mistakes
(simple vs compound, wrong day count, rate per period …) and writes a worked solution.
``check_numbers_preserved`` decides whether an LLM rewrite of a stem may replace it.
"""

from finrag_pipelines.finmath.generator import FAMILIES, GenerationStats, generate_questions
from finrag_pipelines.finmath.numbers import NumberCheck, check_numbers_preserved, numbers_in
from finrag_pipelines.finmath.question import CalcQuestion, compose_question

__all__ = [
    "FAMILIES",
    "CalcQuestion",
    "GenerationStats",
    "NumberCheck",
    "check_numbers_preserved",
    "compose_question",
    "generate_questions",
    "numbers_in",
]
