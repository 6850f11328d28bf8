from __future__ import annotations
import openai
import pytest
from conftest import StartServer

async def test_a(start_server: StartServer) -> None:
    url = await start_server(output_tokens_mean=5, output_tokens_stddev=0)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x") as client:
        stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        async with stream:
            async for chunk in stream:
                pass

@pytest.mark.filterwarnings(r"ignore:Async generator '(openai|httpx2|httpcore2)\.\S+' was garbage collected:ResourceWarning")
async def test_b(start_server: StartServer) -> None:
    url = await start_server(output_tokens_mean=5, output_tokens_stddev=0)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x") as client:
        stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        async with stream:
            async for chunk in stream:
                pass
