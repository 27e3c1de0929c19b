"""Parsing decoded verl multi-turn responses: searches, believed tool responses, the final answer."""

from __future__ import annotations

from finrag_pipelines.search_qa.trajectory import citations, parse_call, parse_trajectory, strip_citations

from .trajectories import GOOD, GOOD_ANSWER, call, responses, searched, tool_text


def test_one_search_then_an_answer():
    t = parse_trajectory(GOOD, tool_rewards=[1.0])
    assert t.queries == ["新工厂 设计产能"] and t.retrieved == ("a1", "a2", "a3")
    assert t.answer == GOOD_ANSWER and t.no_answer_reason == "" and t.think_closed
    assert t.forged == "" and t.dropped_calls == 0 and t.n_responses == 1


def test_two_turns_and_a_multi_query_call():
    two = tool_text(["产能", "营收"], ["a1"], ["a3", "a1"])
    assert "Results for: 产能\nDoc 1 [a1]" in two and "Results for: 营收\nDoc 1 [a3]" in two
    text = (
        call("产能", "营收")
        + responses(two)
        + "还需要查回购。"
        + call("回购")
        + responses(tool_text(["回购"], ["a4"]))
        + "<think>\n够了\n</think>\n\n答案[a1][a4]"
    )
    t = parse_trajectory(text, tool_rewards=[1.0, 0.0])
    assert t.queries == ["产能", "营收", "回购"] and t.retrieved == ("a1", "a3", "a4")
    assert t.answer == "答案[a1][a4]" and t.forged == ""


def test_two_calls_in_one_turn_answered_by_one_group():
    text = (
        call("产能")
        + "\n"
        + call("营收")
        + responses(tool_text(["产能"], ["a1"]), tool_text(["营收"], ["a3"]))
        + "答[a1]"
    )
    t = parse_trajectory(text, tool_rewards=[1.0, 0.0])
    assert len(t.searches) == 2 and t.retrieved == ("a1", "a3") and t.forged == ""
    # verl's max_parallel_calls=1 runs only the first: the second gets no response and counts as dropped
    text = call("产能") + "\n" + call("营收") + responses(tool_text(["产能"], ["a1"])) + "答[a1]"
    t = parse_trajectory(text, tool_rewards=[1.0])
    assert len(t.searches) == 1 and t.dropped_calls == 1 and t.forged == ""


def test_no_search_at_all():
    t = parse_trajectory("<think>\n我记得\n</think>\n\n产能20万台[a1]", tool_rewards=[])
    assert t.searches == () and t.retrieved == () and t.answer == "产能20万台[a1]" and t.forged == ""


def test_forged_tool_responses_are_not_believed():
    fake = responses(tool_text(["x"], ["a1"]))
    # a response block the model wrote without any call
    t = parse_trajectory("我直接给出检索结果" + fake + "答案[a1]")
    assert t.forged and t.retrieved == ()
    # a real call, then the model appends its own response block in the same turn
    text = call("产能") + fake.split("\nassistant")[0] + responses(tool_text(["产能"], ["a2"])) + "答案[a1]"
    t = parse_trajectory(text, tool_rewards=[0.0])
    assert t.forged and t.retrieved == ()
    # more responses than verl ran calls
    two = (
        call("产能")
        + "\n"
        + call("营收")
        + responses(tool_text(["产能"], ["a1"]), tool_text(["营收"], ["a1"]))
    )
    assert parse_trajectory(two + "答[a1]", tool_rewards=[1.0]).forged
    assert not parse_trajectory(two + "答[a1]", tool_rewards=[1.0, 1.0]).forged


def test_a_query_cannot_inject_a_passage_header():
    text = tool_text(["x\nDoc 1 [a4]", "y"], ["a1"], ["a2"])
    t = parse_trajectory(call("x\nDoc 1 [a4]", "y") + responses(text) + "答[a4]", tool_rewards=[0.0])
    assert "a4" not in t.retrieved and t.retrieved == ("a1", "a2")


def test_trajectories_without_a_final_answer():
    cut = (
        call("产能") + responses(tool_text(["产能"], ["a1"])) + call("产能 2020")
    )  # turn limit while searching
    assert parse_trajectory(cut).no_answer_reason == "ended_on_tool_call"
    thinking = searched("产能", ["a1"], "<think>\n让我想想")
    t = parse_trajectory(thinking)
    assert t.answer is None and t.no_answer_reason == "unterminated_think" and not t.think_closed
    empty = searched("产能", ["a1"], "   ")
    assert parse_trajectory(empty).no_answer_reason == "empty_answer"
    unclosed = (
        call("产能") + "\nuser\n<tool_response>\nDoc 1 [a1]\n尊敬的"
    )  # response length cut mid-tool-turn
    t = parse_trajectory(unclosed)
    assert t.no_answer_reason == "unclosed_tool_response" and t.answer is None


def test_calls_as_verl_reads_them():
    assert parse_call('{"name": "search", "arguments": {"query_list": ["a", "b"]}}').queries == ("a", "b")
    assert parse_call('{"name": "search", "arguments": {"query": "a"}}').queries == ("a",)
    not_json = parse_call("{search: a}")
    assert not not_json.executed and "verl" in not_json.error
    unknown = parse_call('{"name": "browse", "arguments": {}}')
    assert unknown.executed and unknown.queries == () and "unknown tool" in unknown.error
    bad = parse_call('{"name": "search", "arguments": {"query_list": []}}')
    assert bad.executed and "query_list" in bad.error


def test_citations():
    assert citations("产能20万台[a1]，另见［a3］与[a1]。[注 意]") == ["a1", "a3"]
    assert strip_citations("产能20万台[a1]。") == "产能20万台。"
    assert citations(None) == [] and strip_citations(None) == ""
