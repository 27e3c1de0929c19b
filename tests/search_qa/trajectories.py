"""Handwritten verl multi-turn trajectories, decoded the way verl's reward managers decode them.

verl 0.9 passes ``tokenizer.decode(response_ids, skip_special_tokens=True)``: for Qwen3 the ``<|im_start|>`` /
``<|im_end|>`` tokens vanish, the role words and the (non-special) ``<tool_call>``, ``<tool_response>`` and
``<think>`` tags stay. The tool text is produced by the real FinragSearchTool formatter.
"""

from __future__ import annotations

import json

from finrag_pipelines.serving.tool_text import format_response

DOCS = {
    "a1": "尊敬的投资者您好，公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台/年，感谢您的关注！",
    "a2": "尊敬的投资者：您好，公司正在进一步加强成本管理、费用管理，提高资金周转率，降低资金成本。",
    "a3": "您好，公司2020年营业收入同比增长12%，主要来自海外订单。",
    "a4": "您好，公司暂无回购计划，如有将及时披露。",
}
SOURCE = "a1"
QUESTION = "公司新工厂的设计产能是多少？"
INFO = {
    "source_doc_id": SOURCE,
    "query_id": "dq-1",
    "question": QUESTION,
    "tools_kwargs": {"search": {"create_kwargs": {"source_doc_id": SOURCE}}},
}


def call(*queries: str, name: str = "search") -> str:
    """What the model writes to call a tool (hermes format)."""
    body = json.dumps({"name": name, "arguments": {"query_list": list(queries)}}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def tool_text(queries: list[str], *doc_lists: list[str]) -> str:
    """The search tool's text for one call (one list of doc ids per query)."""
    payload = {
        "result": [
            [{"document": {"id": d, "contents": "\n" + DOCS[d]}, "score": 1.0} for d in docs]
            for docs in doc_lists
        ]
    }
    return format_response(payload, queries)


def responses(*texts: str) -> str:
    """The tool turn(s) verl appends after the model's calls, then the next assistant prompt (no think)."""
    blocks = "".join(f"\n<tool_response>\n{t}\n</tool_response>" for t in texts)
    return f"\nuser{blocks}\nassistant\n<think>\n\n</think>\n\n"


def searched(query: str, docs: list[str], answer: str) -> str:
    """One search, its response, then the final answer."""
    return call(query) + responses(tool_text([query], docs)) + answer


GOOD_ANSWER = "公司新工厂的设计产能为20万台/年[a1]。"
GOOD = searched("新工厂 设计产能", ["a1", "a2", "a3"], GOOD_ANSWER)
