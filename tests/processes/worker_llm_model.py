"""Language models that answer deterministically from the prompt, registered with `llm`.

They go through llm's own plugin machinery (a pluggy plugin with a `register_models` hook on
`llm.plugins.pm`), so `llm.get_model(model_id)` finds them as it finds any installed model.
No network: each answer is a pure function of the prompt.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

import llm

PLUGIN_NAME = "claude-mem-test-models"
# Every prompt a model in this process was asked, in order.
PROMPTS: list[str] = []

_TOOL_RE = re.compile(r"^Tool: (.+)$", re.MULTILINE)
_DEF_RE = re.compile(r"def ([A-Za-z_]\w*)\(")


def answer_for(prompt: str, model_id: str) -> dict:
    """What the models answer: the tool, the prompt's size and fingerprint, the defs in it."""
    found = _TOOL_RE.search(prompt)
    tool = found.group(1) if found else "unknown"
    return {
        "title": f"{tool} compressed by {model_id}",
        "summary": f"The prompt had {len(prompt)} characters.",
        "detail": f"prompt sha1 {hashlib.sha1(prompt.encode()).hexdigest()[:16]}",
        "functions_changed": list(dict.fromkeys(_DEF_RE.findall(prompt)))[:5],
    }


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


class ScriptedModel(llm.Model):
    """style: plain JSON, JSON with a type, JSON fenced amid prose, garbage, or an error;
    usage on or off."""

    can_stream = False

    def __init__(
        self, model_id: str, *, style: str = "plain", usage: bool = True, delay: float = 0.0
    ) -> None:
        self.model_id = model_id
        self.style = style
        self.report_usage = usage
        self.delay = delay

    def execute(self, prompt, stream, response, conversation):
        text = prompt.prompt or ""
        PROMPTS.append(text)
        if self.delay:
            time.sleep(self.delay)
        if self.style == "error":
            raise RuntimeError("the model is unavailable")
        answer = answer_for(text, self.model_id)
        if self.style == "typed":
            answer["type"] = "Refactor"  # as a model may write it
        body = json.dumps(answer)
        if self.style == "fenced":
            body = f"Here is the record:\n```json\n{body}\n```\nAnything else?"
        elif self.style == "garbage":
            body = "Sorry, I would rather not answer in JSON."
        if self.report_usage:
            response.set_usage(input=tokens(text + (prompt.system or "")), output=tokens(body))
        yield body


MODELS = [
    ScriptedModel("cm-test-json"),
    ScriptedModel("cm-test-fenced", style="fenced"),
    ScriptedModel("cm-test-typed", style="typed"),
    ScriptedModel("cm-test-nousage", usage=False),
    ScriptedModel("cm-test-garbage", style="garbage"),
    ScriptedModel("cm-test-error", style="error"),
    ScriptedModel("cm-test-slow", delay=0.005),
]


class _Plugin:
    @llm.hookimpl
    def register_models(self, register):
        for model in MODELS:
            register(model)


def install() -> None:
    """Register the models with llm, once per process."""
    if llm.plugins.pm.get_plugin(PLUGIN_NAME) is None:
        llm.plugins.pm.register(_Plugin(), name=PLUGIN_NAME)
