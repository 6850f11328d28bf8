"""Settings: one class, three surfaces (CLI, environment, TOML), one precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_mock._app._cli import build_parser, load_settings
from trio_mock._config._knobs import SettingsError
from trio_mock._config._settings import KNOBS, Settings


def test_defaults_are_valid_and_documented() -> None:
    settings = Settings()
    assert settings.server.port == 8000
    assert settings.output.tokenizer == "cl100k_base"
    for knob in KNOBS.values():
        assert knob.help, knob.name
        assert knob.env == "TRIO_MOCK_" + knob.name.upper()


def test_environment_strings_are_parsed_by_type() -> None:
    env = {
        "TRIO_MOCK_PORT": "9001",
        "TRIO_MOCK_TTFT_MS": "12.5",
        "TRIO_MOCK_ANY_MODEL": "false",
        "TRIO_MOCK_MODELS": "a, b,c",
        "TRIO_MOCK_CERTFILE": "",
        "UNRELATED": "x",
    }
    settings = Settings.load(env=env)
    assert settings.server.port == 9001
    assert settings.latency.ttft_ms == 12.5
    assert settings.models.any_model is False
    assert settings.models.models == ("a", "b", "c")
    assert settings.server.certfile is None


def test_toml_accepts_group_tables_and_top_level_keys(tmp_path: Path) -> None:
    config = tmp_path / "mock.toml"
    config.write_text('itl_ms = 3\n[server]\nport = 7000\n[models]\nmodels = ["x", "y"]\n')
    settings = Settings.load(env={}, config=config)
    assert settings.latency.itl_ms == 3.0
    assert settings.server.port == 7000
    assert settings.models.models == ("x", "y")


def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "mock.toml"
    config.write_text("ttft_ms = 1\nitl_ms = 1\noutput_tokens_mean = 1\n")
    env = {"TRIO_MOCK_TTFT_MS": "2", "TRIO_MOCK_ITL_MS": "2", "TRIO_MOCK_CONFIG": str(config)}
    settings = Settings.load(cli={"ttft_ms": "3"}, env=env)
    assert settings.latency.ttft_ms == 3.0  # CLI
    assert settings.latency.itl_ms == 2.0  # environment
    assert settings.output.output_tokens_mean == 1.0  # file
    assert settings.output.output_tokens_stddev == 32.0  # default


def test_cli_flags_cover_every_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(KNOBS):
        monkeypatch.delenv(KNOBS[name].env, raising=False)
    help_text = build_parser().format_help()
    for knob in KNOBS.values():
        assert knob.flag in help_text
        assert knob.env in help_text
    settings = load_settings(
        ["--port", "1234", "--no-any-model", "--models", "p,q", "--output-mode", "echo"]
    )
    assert settings.server.port == 1234
    assert settings.models.any_model is False
    assert settings.models.models == ("p", "q")
    assert settings.output.output_mode == "echo"


@pytest.mark.parametrize(
    ("leaves", "words"),
    [
        ({"ttft_ms": "-5"}, ["--ttft-ms", "TRIO_MOCK_TTFT_MS", ">= 0"]),
        ({"port": "abc"}, ["--port", "expected an integer"]),
        ({"port": 70000}, ["--port", "0-65535"]),
        ({"any_model": "maybe"}, ["--any-model", "true or false"]),
        ({"output_mode": "poetry"}, ["--output-mode", "corpus"]),
        (
            {"certfile": "/nonexistent.pem", "keyfile": "/nonexistent.pem"},
            ["--certfile", "cannot read"],
        ),
        ({"tokens_per_event_min": 3, "tokens_per_event_max": 2}, ["--tokens-per-event-min"]),
        ({"models": ""}, ["--models", "empty"]),
        ({"itl_ms": "nan"}, ["--itl-ms", "NaN"]),
        ({"nonsense": 1}, ["unknown setting 'nonsense'"]),
    ],
)
def test_bad_values_name_the_knob(leaves: dict[str, object], words: list[str]) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings().replace(**leaves)
    for word in words:
        assert word in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_config_files(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[server]\nttft_ms = 1\n")  # right knob, wrong table
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.load(env={}, config=unknown)
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.load(env={}, config=broken)
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.load(env={}, config=tmp_path / "missing.toml")


def test_json_round_trip_is_exact() -> None:
    settings = Settings().replace(models=("a", "b"), ttft_ms=7.5, certfile=None, access_log=True)
    assert Settings.from_json(settings.to_json()) == settings
