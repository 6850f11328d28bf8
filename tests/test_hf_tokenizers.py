"""Hugging Face tokenizers per model (issue 19, part 1): ``--tokenizer-models``.

What this file proves, with a real ``tokenizers`` tokenizer trained here on a few
sentences (byte-level BPE, a BOS template; nothing downloaded):

- It loads from a ``tokenizer.json``, a model folder, and a hub id in a local Hugging Face
  cache laid out as the hub lays it out (``refs/main`` picks the snapshot); a missing one is
  refused naming the path looked for, at start-up by the CLI in one line, and at run time.
- Its ``pieces`` are one per token and join back to the text (hypothesis).
- Through the real server: a model with its own tokenizer counts prompts with it (chat,
  completions, responses, embeddings, OpenRouter's /api/v1), echoes token by token (each streamed chunk is one of
  its tokens and they join back to the prompt), cuts corpus replies into its tokens (the
  library re-counts ``completion_tokens`` exactly), and answers ``/tokenize`` (with BOS by
  default, as vLLM) and ``/detokenize`` as the library does; other models keep cl100k.
- With ``--no-any-model`` such models are accepted and listed, others are a 404.
- ``POST /configure {"tokenizer_models": [hub id]}`` (AIPerf) loads one from the cache.
- A long prompt is tokenized in a thread, a short one inline.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings as hypothesis_settings, strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from asgi import call, chat_content, token_times
from conftest import check_error, fast_settings
from helpers import on_schedule, post, tokens
from trio_mock import Settings, create_app
from trio_mock._app._cli import main
from trio_mock._config._knobs import SettingsError
from trio_mock._config._settings import describe
from trio_mock._config._tokenizer_models import tokenizer_sources
from trio_mock._openai._model import OWN_TOKENIZERS_KNOB
from trio_mock._serve._offload import INLINE_CHARS
from trio_mock._sim._corpus import WORDS
from trio_mock._sim._hf_tokens import HFTokenizer, hub_cache, load_hub_tokenizer
from trio_mock._sim._tokens import TokenizerError, load_tokenizer

if TYPE_CHECKING:
    from conftest import StartServer

TINY = "tiny-bpe"  # the served model with its own tokenizer
PROMPT = "Hello world, the naïve café ✓ 🎉 said 12345 things."
TIMEOUT_S = 10.0
# OpenAI's chat accounting, as the server counts it: 3 to prime the reply, and per
# message 3 of framing plus 1 for the role.
REPLY_PRIMING, PER_MESSAGE = 3, 4


@functools.cache  # trained once, when first needed
def train_tiny_tokenizer() -> Tokenizer:
    """Byte-level BPE (as Llama 3, Qwen and GPT-2 use) on a few sentences holding the
    corpus words in each form, with a BOS template as Llama's."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    lines = [f"{w.capitalize()} {w} {w.capitalize()}, {w}.\n" for w in WORDS] + [PROMPT]
    trainer = trainers.BpeTrainer(
        vocab_size=3000,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<s>"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines * 2, trainer)
    bos = ("<s>", tokenizer.token_to_id("<s>"))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[bos])
    return tokenizer


@pytest.fixture(scope="module")
def library() -> Tokenizer:
    """The library's own tokenizer: what every answer is checked against."""
    return train_tiny_tokenizer()


@pytest.fixture(scope="module")
def tokenizer_file(library: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tokenizer.json"
    library.save(str(path))
    return path


def fake_hub_cache(root: Path, hub_id: str, tokenizer_file: Path) -> Path:
    """``root`` laid out as the hub's cache: a stale snapshot and the one ``refs/main`` names."""
    repo = root / ("models--" + hub_id.replace("/", "--"))
    for commit in ("0" * 40, "1" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "tokenizer.json").write_text("{not a tokenizer")
    (repo / "snapshots" / ("1" * 40) / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    return root


@pytest.fixture
def hub_id(tmp_path: Path, tokenizer_file: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A hub id held by a local Hugging Face cache (``HF_HUB_CACHE``); one per test, since
    ``load_tokenizer`` remembers what a name loaded."""
    hub_id = f"trio-mock-tests/{tmp_path.name}"
    root = fake_hub_cache(tmp_path / "hub", hub_id, tokenizer_file)
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    return hub_id


def tiny_leaves(tokenizer_file: Path, **leaves: Any) -> dict[str, Any]:
    return {"tokenizer_models": [f"{TINY}={tokenizer_file}"], **leaves}


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def stream_deltas(response: httpx.Response) -> tuple[list[str], dict[str, Any]]:
    """A chat stream's content deltas and its usage."""
    deltas: list[str] = []
    usage: dict[str, Any] = {}
    for line in response.text.splitlines():
        if not line.startswith("data: {"):
            continue
        event = httpx.Response(200, content=line[6:]).json()
        deltas += [c["delta"]["content"] for c in event["choices"] if c["delta"].get("content")]
        usage = event.get("usage") or usage
    return deltas, usage


# --- loading ------------------------------------------------------------------------------


def test_loads_from_a_file_a_folder_and_the_hub_cache(
    library: Tokenizer, tokenizer_file: Path, hub_id: str
) -> None:
    for spec in (str(tokenizer_file), str(tokenizer_file.parent), hub_id):
        loaded = load_tokenizer(spec)
        assert isinstance(loaded, HFTokenizer)
        assert loaded.encode(PROMPT) == library.encode(PROMPT, add_special_tokens=False).ids
        assert loaded.encode_with_specials(PROMPT) == library.encode(PROMPT).ids
        assert loaded.vocab_size == library.get_vocab_size()
    assert "Hugging Face cache" in load_tokenizer(hub_id).description


def test_the_hub_cache_is_where_huggingface_hub_puts_it(tmp_path: Path) -> None:
    assert hub_cache({"HF_HUB_CACHE": str(tmp_path)}) == tmp_path
    assert hub_cache({"HF_HOME": str(tmp_path)}) == tmp_path / "hub"
    assert hub_cache({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"
    assert hub_cache({}) == Path("~/.cache/huggingface/hub").expanduser()


def test_a_missing_tokenizer_names_where_it_was_looked_for(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path)}
    with pytest.raises(TokenizerError, match="never downloads") as missing:
        load_hub_tokenizer("org/absent", env)
    assert str(tmp_path / "models--org--absent" / "snapshots" / "*") in str(missing.value)
    with pytest.raises(TokenizerError, match=r"no tokenizer\.json in folder"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(TokenizerError, match="no such file"):
        load_tokenizer(str(tmp_path / "absent.json"))
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(TokenizerError, match="cannot read tokenizer file"):
        load_tokenizer(str(tmp_path / "broken.json"))


def test_the_cli_refuses_a_missing_tokenizer_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        main(["--port", "0", "--tokenizer-models", "llama=meta-llama/Absent-1B"])
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("trio-mock: error: --tokenizer-models (TRIO_MOCK_TOKENIZER_MODELS)")
    assert str(tmp_path / "models--meta-llama--Absent-1B") in line


def test_the_knob_reads_from_every_surface(tmp_path: Path) -> None:
    toml = tmp_path / "mock.toml"
    toml.write_text('[models]\ntokenizer_models = ["llama=/models/llama", "Qwen/Qwen3-0.6B"]\n')
    env = {"TRIO_MOCK_TOKENIZER_MODELS": "a=/x/tokenizer.json, org/b"}
    from_env = Settings.load(env=env).models.tokenizer_models
    from_toml = Settings.load(env={}, config=toml).models.tokenizer_models
    from_cli = Settings.load(cli={"tokenizer_models": "c=cl100k_base"}, env=env)
    assert tokenizer_sources(from_env) == {"a": "/x/tokenizer.json", "org/b": "org/b"}
    assert tokenizer_sources(from_toml) == {
        "llama": "/models/llama",
        "Qwen/Qwen3-0.6B": "Qwen/Qwen3-0.6B",
    }
    assert tokenizer_sources(from_cli.models.tokenizer_models) == {"c": "cl100k_base"}


def test_bad_entries_are_refused_by_the_knob() -> None:
    for entry in ("=x", "a=b=c", "x" * 300):
        with pytest.raises(SettingsError, match="--tokenizer-models"):
            fast_settings(tokenizer_models=[entry])
    with pytest.raises(SettingsError, match="at most 64"):
        fast_settings(tokenizer_models=[f"m{i}=approx" for i in range(65)])


def test_a_tokenizer_with_no_whole_words_cannot_serve_the_corpus(tmp_path: Path) -> None:
    """Bytes only (no merges): corpus replies could not be cut into its tokens, so the model
    is refused by name rather than served with wrong counts; echo works."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet), initial_alphabet=alphabet)
    tokenizer.train_from_iterator(["x"], trainer)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    assert describe("tokenizer_models") == OWN_TOKENIZERS_KNOB  # spelled out in _model
    with pytest.raises(SettingsError, match=r"bytes: .* no corpus word is one token"):
        create_app(fast_settings(tokenizer_models=[f"bytes={path}"]))
    create_app(fast_settings(tokenizer_models=[f"bytes={path}"], output_mode="echo"))


@hypothesis_settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_pieces_are_one_per_token_and_join_back(text: str) -> None:
    tiny = HFTokenizer(train_tiny_tokenizer(), TINY, TINY)
    pieces = tiny.pieces(text)
    assert len(pieces) == len(tiny.encode(text))
    if pieces:
        assert "".join(pieces) == text


# --- through the real server ----------------------------------------------------------------


async def test_echo_counts_and_streams_whole_tokens_of_the_models_tokenizer(
    start_server: StartServer, library: Tokenizer, tokenizer_file: Path
) -> None:
    url = await start_server(**tiny_leaves(tokenizer_file, output_mode="echo"))
    ids = library.encode(PROMPT, add_special_tokens=False).ids
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        body = chat(TINY, PROMPT, stream=True, stream_options={"include_usage": True})
        deltas, usage = stream_deltas(await client.post("/v1/chat/completions", json=body))
        default = (await client.post("/v1/chat/completions", json=chat("m", PROMPT))).json()
    assert "".join(deltas) == PROMPT  # echoed whole
    assert len(deltas) == len(ids) == usage["completion_tokens"]  # one token a chunk
    assert all(len(library.encode(d, add_special_tokens=False).ids) == 1 for d in deltas)
    assert usage["prompt_tokens"] == REPLY_PRIMING + PER_MESSAGE + len(ids)
    # Any other model keeps the default tokenizer (cl100k), which counts otherwise.
    assert default["usage"]["prompt_tokens"] == REPLY_PRIMING + PER_MESSAGE + tokens(PROMPT)
    assert tokens(PROMPT) != len(ids)


async def test_corpus_replies_are_cut_into_the_models_tokens(
    start_server: StartServer, library: Tokenizer, tokenizer_file: Path
) -> None:
    url = await start_server(**tiny_leaves(tokenizer_file, output_tokens_mean=60))
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        for seed in range(3):
            body = chat(
                TINY, "Go on.", seed=seed, stream=True, stream_options={"include_usage": True}
            )
            deltas, usage = stream_deltas(await client.post("/v1/chat/completions", json=body))
            text = "".join(deltas)
            assert len(library.encode(text, add_special_tokens=False).ids) == len(deltas)
            assert usage["completion_tokens"] == len(deltas)
            assert all(len(library.encode(d, add_special_tokens=False).ids) == 1 for d in deltas)


async def test_every_api_counts_the_prompt_with_the_models_tokenizer(
    start_server: StartServer, library: Tokenizer, tokenizer_file: Path
) -> None:
    url = await start_server(**tiny_leaves(tokenizer_file, output_mode="echo"))
    count = len(library.encode(PROMPT, add_special_tokens=False).ids)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        completion = await client.post(
            "/v1/completions", json={"model": TINY, "prompt": PROMPT, "echo": True, "logprobs": 1}
        )
        responses = await client.post("/v1/responses", json={"model": TINY, "input": PROMPT})
        embeddings = await client.post("/v1/embeddings", json={"model": TINY, "input": PROMPT})
        ids = library.encode(PROMPT, add_special_tokens=False).ids
        as_ids = await client.post("/v1/embeddings", json={"model": TINY, "input": ids})
        openrouter = await client.post("/api/v1/chat/completions", json=chat(TINY, PROMPT))
    body = completion.json()
    assert body["usage"]["prompt_tokens"] == count
    assert body["choices"][0]["text"] == PROMPT + PROMPT  # echo, then the echoed reply
    assert len(body["choices"][0]["logprobs"]["tokens"]) == 2 * count
    assert responses.json()["usage"]["input_tokens"] == REPLY_PRIMING + PER_MESSAGE + count
    assert embeddings.json()["usage"]["prompt_tokens"] == count
    assert openrouter.json()["usage"]["prompt_tokens"] == REPLY_PRIMING + PER_MESSAGE + count
    assert as_ids.json()["data"][0]["embedding"] == embeddings.json()["data"][0]["embedding"]


async def test_tokenize_and_detokenize_answer_as_the_library(
    start_server: StartServer, library: Tokenizer, tokenizer_file: Path
) -> None:
    url = await start_server(**tiny_leaves(tokenizer_file, models=[TINY, "other"]))
    with_bos = library.encode(PROMPT).ids
    plain = library.encode(PROMPT, add_special_tokens=False).ids
    named = await post(url, "/tokenize", {"model": TINY, "prompt": PROMPT})
    first = await post(url, "/tokenize", {"prompt": PROMPT, "add_special_tokens": False})
    strs = await post(
        url, "/tokenize", {"model": TINY, "prompt": PROMPT, "return_token_strs": True}
    )
    other = await post(url, "/tokenize", {"model": "other", "prompt": PROMPT})
    back = await post(url, "/detokenize", {"model": TINY, "tokens": plain})
    bad = await post(url, "/detokenize", {"model": TINY, "tokens": [library.get_vocab_size()]})
    assert named.json()["tokens"] == with_bos  # vLLM adds the special tokens by default
    assert named.json()["count"] == len(with_bos)
    assert first.json()["tokens"] == plain  # no model named: the first listed one's
    assert strs.json()["token_strs"] == [
        library.decode([t], skip_special_tokens=False) for t in with_bos
    ]
    assert other.json()["count"] == tokens(PROMPT)  # cl100k for the others
    assert back.json()["prompt"] == library.decode(plain) == PROMPT
    check_error(bad, 400, "tokens[0]")


async def test_no_any_model_accepts_and_lists_the_tokenizer_models(
    start_server: StartServer, tokenizer_file: Path
) -> None:
    url = await start_server(**tiny_leaves(tokenizer_file, any_model=False))
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        listed = (await client.get("/v1/models")).json()["data"]
        served = await client.post("/v1/chat/completions", json=chat(TINY, "Hi."))
        unknown = await client.post("/v1/chat/completions", json=chat("llama-unknown", "Hi."))
        tokenize = await client.post("/tokenize", json={"model": "llama-unknown", "prompt": "x"})
        index = (await client.get("/")).json()
    assert [m["id"] for m in listed] == ["trio-mock", TINY]
    assert served.status_code == 200
    assert check_error(unknown, 404, "model")["code"] == "model_not_found"
    check_error(tokenize, 404, "model")
    assert str(tokenizer_file) in index["model_tokenizers"][TINY]


async def test_configure_loads_aiperfs_tokenizer_models_from_the_cache(
    start_server: StartServer, library: Tokenizer, hub_id: str
) -> None:
    url = await start_server(output_mode="echo", any_model=False)
    count = len(library.encode(PROMPT, add_special_tokens=False).ids)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        before = await client.post("/v1/chat/completions", json=chat(hub_id, PROMPT))
        configured = await client.post("/configure", json={"tokenizer_models": [hub_id]})
        again = await client.post("/configure", json={"tokenizer_models": [hub_id]})
        after = await client.post("/v1/chat/completions", json=chat(hub_id, PROMPT))
    check_error(before, 404, "model")
    assert configured.json()["changed"] == ["tokenizer_models"]
    assert configured.json()["settings"]["models"]["tokenizer_models"] == [hub_id]
    assert again.json()["changed"] == []  # already loaded: kept, not doubled
    assert after.json()["usage"]["prompt_tokens"] == REPLY_PRIMING + PER_MESSAGE + count


async def test_the_schedule_has_one_step_per_token_of_the_models_tokenizer(
    autojump_clock: trio.testing.MockClock, library: Tokenizer, tokenizer_file: Path
) -> None:
    leaves = tiny_leaves(tokenizer_file, output_mode="echo", ttft_ms=100, itl_ms=10)
    app = create_app(fast_settings(**leaves))
    answer = await call(app, "/v1/chat/completions", chat(TINY, PROMPT, stream=True))
    count = len(library.encode(PROMPT, add_special_tokens=False).ids)
    assert chat_content(answer.events()) == PROMPT
    assert token_times(answer.events()) == pytest.approx(on_schedule(count, 0.1, 0.01), abs=1e-9)


# --- off the event loop ---------------------------------------------------------------------


async def test_a_long_prompt_is_tokenized_in_a_thread(
    library: Tokenizer, tokenizer_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(fast_settings(**tiny_leaves(tokenizer_file, output_mode="fixed")))
    tiny = app.live.model.tokenizer_for(TINY)
    threads: list[int] = []

    def encode(text: str, inner: Any = tiny.encode) -> list[int]:
        threads.append(threading.get_ident())
        result: list[int] = inner(text)
        return result

    monkeypatch.setattr(tiny, "encode", encode)
    long = "the cat " * INLINE_CHARS
    for text in ("Hi.", long):
        answer = await call(app, "/v1/chat/completions", chat(TINY, text))
        assert answer.status == 200
        tokenized = await call(
            app, "/tokenize", {"model": TINY, "prompt": text, "add_special_tokens": False}
        )
        count = len(library.encode(text, add_special_tokens=False).ids)
        assert tokenized.json()["count"] == count
    loop = threading.get_ident()
    assert threads[:2] == [loop, loop]  # short: inline, no thread hop
    assert len(threads) == 4
    assert loop not in threads[2:]  # long: never on the event loop


async def test_tokenizing_in_threads_keeps_the_loop_responsive(tokenizer_file: Path) -> None:
    """While a huge prompt is tokenized, the loop keeps scheduling other tasks."""
    app = create_app(fast_settings(**tiny_leaves(tokenizer_file, output_mode="fixed")))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await trio.lowlevel.checkpoint()
        before = ticks
        answer = await call(app, "/tokenize", {"model": TINY, "prompt": "the cat " * 200_000})
        assert answer.status == 200
        assert ticks - before > 10
        nursery.cancel_scope.cancel()
