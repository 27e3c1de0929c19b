"""Prompt templates: loading, rendering, hashing, and errors that name the template and slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from finrag_pipelines.llm.prompts import MissingSlotError, PromptTemplate, PromptTemplateError

_PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "base" / "prompts"

TEMPLATE: dict[str, Any] = {
    "name": "demo",
    "version": 1,
    "system": "你是金融助手。",
    "user": '文档：$passage\n候选人：\n${characters}\n只输出 JSON：{"character": 1, "difficulty": "phd"}',
}


def test_render_fills_slots_and_keeps_json_braces() -> None:
    prompt = PromptTemplate.from_mapping(TEMPLATE, source="demo.yml")
    messages = prompt.render(passage="沪深300", characters="1. 基金经理", unused="fine")
    assert messages == [
        {"role": "system", "content": "你是金融助手。"},
        {
            "role": "user",
            "content": (
                '文档：沪深300\n候选人：\n1. 基金经理\n只输出 JSON：{"character": 1, "difficulty": "phd"}'
            ),
        },
    ]
    assert prompt.version == "1"
    assert prompt.slots == ["passage", "characters"]


def test_no_system_message_when_absent() -> None:
    prompt = PromptTemplate.from_mapping({k: v for k, v in TEMPLATE.items() if k != "system"})
    assert [m["role"] for m in prompt.render(passage="p", characters="c")] == ["user"]


def test_missing_slot_names_template_and_slot() -> None:
    prompt = PromptTemplate.from_mapping(TEMPLATE)
    with pytest.raises(KeyError) as info:
        prompt.render(passage="p")
    assert isinstance(info.value, MissingSlotError)
    assert "'demo'" in str(info.value) and "'characters'" in str(info.value)


def test_hash_is_stable_and_tracks_every_field() -> None:
    base = PromptTemplate.from_mapping(TEMPLATE)
    again = PromptTemplate.from_mapping(dict(reversed(list(TEMPLATE.items()))))
    assert base.sha256 == again.sha256
    assert len(base.sha256) == 64
    for field, value in [("name", "other"), ("version", 2), ("system", "x"), ("user", "$passage!")]:
        assert PromptTemplate.from_mapping({**TEMPLATE, field: value}).sha256 != base.sha256
    # A documentation-only description does not change the hash.
    assert PromptTemplate.from_mapping({**TEMPLATE, "description": "notes"}).sha256 == base.sha256


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**TEMPLATE, "usr": "x"}, r"demo\.yml: unknown key\(s\) \['usr'\]"),
        ({k: v for k, v in TEMPLATE.items() if k != "user"}, r"demo\.yml: missing key\(s\) \['user'\]"),
        ({**TEMPLATE, "user": "价格 $100 元"}, r"demo\.yml: .*invalid placeholder at '\$100.*write \$\$"),
        ({**TEMPLATE, "system": ["x"]}, r"demo\.yml: .*system must be a string"),
    ],
)
def test_from_mapping_errors_name_the_source(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PromptTemplateError, match=message):
        PromptTemplate.from_mapping(data, source="demo.yml")


def test_literal_dollar_is_escaped_with_two() -> None:
    prompt = PromptTemplate.from_mapping({**TEMPLATE, "user": "价格 $$100 元，$passage"})
    assert prompt.render(passage="p")[-1]["content"] == "价格 $100 元，p"


def test_project_prompt_files_load() -> None:
    files = sorted(_PROMPTS.glob("*.yml"))
    if not files:
        pytest.skip(f"no prompt templates under {_PROMPTS}")
    for file in files:
        prompt = PromptTemplate.from_yaml(file)
        assert prompt.name == file.stem, f"{file}: name {prompt.name!r} should match the file name"
        prompt.render(**{slot: "x" for slot in prompt.slots})


def test_from_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PromptTemplateError, match="does not exist"):
        PromptTemplate.from_yaml(tmp_path / "nope.yml")


def test_literal_texts_are_the_fixed_text_between_slots() -> None:
    user = "价格 $$100 元。文档：$passage\n候选人：${characters}\n只输出 JSON"
    prompt = PromptTemplate.from_mapping({**TEMPLATE, "user": user})
    assert prompt.literal_texts == ["你是金融助手。", "价格 $100 元。文档：", "\n候选人：", "\n只输出 JSON"]
    rendered = "".join(m["content"] for m in prompt.render(passage="PASSAGE", characters="CHARS"))
    assert all(part in rendered for part in prompt.literal_texts)
