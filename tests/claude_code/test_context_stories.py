"""The context after each scripted story (tests/stories.py): the names that matter are
there, nothing is misreported, and it stays small."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasette.app import Datasette
from stories import GOAL_RECALL, GOAL_TOKENS, STORIES, Player, Story

from datasette_claude_mem.claude_code.tokens import real_tokenizer


@pytest.mark.asyncio
@pytest.mark.parametrize("story", STORIES, ids=[s.name for s in STORIES])
async def test_the_next_context_after_a_story(
    ds: Datasette, token: str, memory_path: Path, tmp_path: Path, story: Story
) -> None:
    outcome = await Player(ds, token, memory_path, tmp_path).play(story)
    context = outcome.context
    assert context.startswith("# Memory of "), context
    assert outcome.recall >= GOAL_RECALL, (outcome.missed, context)
    assert outcome.noise == [], (outcome.noise, context)
    assert outcome.tokens <= GOAL_TOKENS and outcome.bytes < 10_000
    tokenizer = real_tokenizer()  # and by Claude's own count, with the tokenizer extra
    assert tokenizer is None or len(tokenizer.encode(context).ids) <= GOAL_TOKENS
    assert context.rstrip().split("\n")[-1].startswith("Ask the memory more")
    assert "search → timeline → get" in context
