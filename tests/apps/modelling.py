"""Test app for the model-call crash test: two model calls (OpenAI Chat Completions,
then Anthropic Messages) with a step between them that is slow on the task's first
claim (the worker is SIGKILLed in it). The fake provider's URL comes from
MODEL_TEST_URL (the test's tests/fake_models.py server)."""

from __future__ import annotations

import os

import anthropic
import openai

from apps.crashy import long_then_quick
from tether import Context, Tether
from tether.agents import anthropic as claude
from tether.agents import openai as llm

app = Tether()
HI = [{"role": "user", "content": "hi"}]


@app.workflow("two_turns")
async def two_turns(ctx: Context, log: str) -> list[str]:
    """Ask, think slowly (killed here on the first claim), ask again."""
    url = os.environ["MODEL_TEST_URL"]
    async with (
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-test-crash") as oai,
        anthropic.AsyncAnthropic(base_url=url, api_key="sk-test-crash") as ant,
    ):
        first = await llm.chat(ctx, oai, model="gpt-4o-mini", messages=HI)
        await ctx.step("think", long_then_quick, log, 60.0, ctx.attempt)
        second = await claude.messages(ctx, ant, model="claude-sonnet-4", max_tokens=9, messages=HI)
    return [first.choices[0].message.content or "", second.content[0].text]  # type: ignore[union-attr]
