"""Search-grounded answers: ``closed_book``, ``single_shot`` and ``agent`` behind one interface.

Kedro-free library package. The pieces:

* :mod:`.records`: :class:`AnswerRecord`, the per-question result (the trajectory) of every system;
* :mod:`.grounding`: passages shown with ``[id]``, citations read back, lenient answer parsing;
* :mod:`.search`: in-process (:class:`BackendSearcher`) and ``finrag-serve`` (:class:`HttpSearcher`) searches;
* :mod:`.chat`: journaled LLM turns (resume after ``kill -9`` without asking a turn again);
* :mod:`.protocols`: the agent's function-calling and text protocols;
* :mod:`.systems`, :mod:`.factory`, :mod:`.runner`: the systems, how they are built, how many questions run;
* :mod:`.extractive`: the offline reader (not an LLM); :mod:`.metrics`, :mod:`.judge`: scoring.
"""

from finrag_pipelines.rag.records import AnswerRecord, Counters, Question, SearchCall

__all__ = ["AnswerRecord", "Counters", "Question", "SearchCall"]
