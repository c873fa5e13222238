"""What the model-call wrapper costs per call: `tether.agents.openai.chat` against a
plain `ctx.step` calling `client.chat.completions.create` itself, both against the
fake provider of the tests (tests/fake_models.py, on a thread of this process), one
task making N sequential calls, on SQLite.

    python -m bench.model_calls [N]

Prints the median and p90 per-call time of each and the difference: the wrapper's own
work (a client copy with `max_retries=0`, the raw response, the usage record, the
price lookup, the answer rebuilt as an SDK object) on top of the step and the HTTP call.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

from bench.common import HERE
from tether import Context, Tether
from tether.agents import openai as llm

HI = [{"role": "user", "content": "hi"}]


async def measure(n: int) -> dict[str, list[float]]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from fake_models import ModelServer  # tests/fake_models.py

    times: dict[str, list[float]] = {"plain": [], "wrapper": []}
    with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        app = Tether(f"sqlite:///{Path(tmp) / 'bench.db'}")
        client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="sk-bench", max_retries=0)

        async def plain_call() -> dict[str, object]:
            answer = await client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
            return answer.to_dict()

        @app.workflow("calls")
        async def calls(ctx: Context, n: int, kind: str) -> None:
            for i in range(n):
                started = time.perf_counter()
                if kind == "plain":
                    await ctx.step(f"plain{i}", plain_call)
                else:
                    await llm.chat(ctx, client, model="gpt-4o-mini", messages=HI, name=f"w{i}")
                times[kind].append(time.perf_counter() - started)

        async with client, app.worker():
            for kind in ("plain", "wrapper", "plain", "wrapper"):  # warm both, then measure
                times[kind].clear()
                handle = await app.submit("calls", {"n": n, "kind": kind})
                await handle.result(timeout=600)
        await app.close()
    return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    times = asyncio.run(measure(n))
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    p90 = {k: statistics.quantiles(v, n=10)[-1] * 1000 for k, v in times.items()}
    for kind in ("plain", "wrapper"):
        print(f"{kind:8} median {med[kind]:.3f} ms  p90 {p90[kind]:.3f} ms  ({n} calls)")
    print(f"wrapper overhead: {med['wrapper'] - med['plain']:+.3f} ms per call (median)")


if __name__ == "__main__":
    main()
