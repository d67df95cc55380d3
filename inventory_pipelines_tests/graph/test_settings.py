"""Settings fail fast, naming the setting and the fix, and never show the secret."""

from __future__ import annotations

import pytest

from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.graph.settings import (
    DEFAULT_AUTHORITY_URL,
    DEFAULT_BASE_URL,
    GraphSettings,
)

SECRET = "Very~Secret.Value_42"
ENV = {"GRAPH_CLIENT_ID": "app-id", "GRAPH_CLIENT_SECRET": SECRET}


def test_from_env_uses_the_defaults() -> None:
    settings = GraphSettings.from_env(ENV)
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.authority_url == DEFAULT_AUTHORITY_URL
    assert (settings.client_id, settings.client_secret) == ("app-id", SECRET)


def test_from_env_reads_urls_and_strips_trailing_slashes() -> None:
    env = {
        **ENV,
        "GRAPH_BASE_URL": "http://127.0.0.1:8080/",
        "GRAPH_AUTHORITY_URL": "http://localhost:1/",
    }
    settings = GraphSettings.from_env(env)
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.authority_url == "http://localhost:1"


@pytest.mark.parametrize("missing", ["GRAPH_CLIENT_ID", "GRAPH_CLIENT_SECRET"])
def test_missing_credentials_name_the_setting(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(ConfigurationError, match=missing) as info:
        GraphSettings.from_env(env)
    assert "set it to" in str(info.value)


def test_blank_credentials_count_as_missing() -> None:
    with pytest.raises(ConfigurationError, match="GRAPH_CLIENT_ID"):
        GraphSettings.from_env({**ENV, "GRAPH_CLIENT_ID": "   "})


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("GRAPH_BASE_URL", "graph.microsoft.com"),
        ("GRAPH_BASE_URL", "ftp://graph.microsoft.com"),
        ("GRAPH_BASE_URL", "/relative/path"),
        ("GRAPH_AUTHORITY_URL", "login.microsoftonline.com"),
        ("GRAPH_AUTHORITY_URL", "https://"),
        ("GRAPH_BASE_URL", "https://graph.microsoft.com?x=1"),
    ],
)
def test_malformed_urls_name_the_setting_and_an_example(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=setting) as info:
        GraphSettings.from_env({**ENV, setting: value})
    assert "https://" in str(info.value)


def test_credentials_in_a_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError, match="GRAPH_BASE_URL") as info:
        GraphSettings.from_env({**ENV, "GRAPH_BASE_URL": "https://user:hunter2pass@graph.test"})
    assert "hunter2pass" not in str(info.value)


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="read_timeout"):
        GraphSettings(client_id="a", client_secret="b", read_timeout=0)


def test_repr_and_str_hide_the_secret() -> None:
    settings = GraphSettings.from_env(ENV)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert "app-id" in repr(settings)


def test_settings_are_frozen() -> None:
    settings = GraphSettings.from_env(ENV)
    with pytest.raises(AttributeError):
        settings.base_url = "https://evil.test"  # type: ignore[misc]
