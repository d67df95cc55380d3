"""Settings fail fast, naming the setting and the fix, and never show the secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.graph.credentials import (
    CREDENTIAL_SETTINGS,
    ClientCertificate,
    FederatedTokenFile,
)
from inventory_pipelines.graph.settings import (
    DEFAULT_AUTHORITY_URL,
    DEFAULT_BASE_URL,
    GraphSettings,
)
from inventory_pipelines_tests.credential_files import new_key_pair, write_token_file

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


# -- credential kinds ---------------------------------------------------------------------


def test_a_plain_http_authority_is_refused_off_loopback() -> None:
    with pytest.raises(ConfigurationError, match="GRAPH_AUTHORITY_URL must use https"):
        GraphSettings.from_env({**ENV, "GRAPH_AUTHORITY_URL": "http://login.example.test"})


def test_no_credential_names_all_three_settings() -> None:
    with pytest.raises(ConfigurationError) as info:
        GraphSettings.from_env({"GRAPH_CLIENT_ID": "app-id"})
    for name in CREDENTIAL_SETTINGS:
        assert name in str(info.value)


def test_two_credentials_are_refused_naming_both(tmp_path: Path) -> None:
    token_file = write_token_file(tmp_path / "token", "eyJ.e30.sig")
    env = {**ENV, "GRAPH_FEDERATED_TOKEN_FILE": str(token_file)}
    with pytest.raises(ConfigurationError, match="GRAPH_CLIENT_SECRET and GRAPH_FEDERATED"):
        GraphSettings.from_env(env)


def test_a_certificate_file_gives_key_and_certificate(tmp_path: Path) -> None:
    keys = new_key_pair()
    path = keys.write(tmp_path / "app.pem")
    settings = GraphSettings.from_env(
        {"GRAPH_CLIENT_ID": "app-id", "GRAPH_CLIENT_CERTIFICATE_PATH": str(path)}
    )
    credential = settings.credential
    assert isinstance(credential, ClientCertificate)
    certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
    assert certificate == x509.load_pem_x509_certificate(keys.certificate_pem.encode())
    assert credential.secrets() == (credential.private_key_pem,)
    assert "PRIVATE KEY" not in repr(settings) + repr(credential)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("missing", "cannot be read"),
        ("key only", "holds no PEM certificate"),
        ("certificate only", "no readable unencrypted private key"),
        ("mismatched pair", "does not belong to the certificate"),
    ],
)
def test_bad_certificate_files_fail_at_start_naming_the_setting(
    tmp_path: Path, content: str, problem: str
) -> None:
    keys, other = new_key_pair(), new_key_pair()
    path = tmp_path / "app.pem"
    text = {
        "key only": keys.key_pem,
        "certificate only": keys.certificate_pem,
        "mismatched pair": keys.key_pem + other.certificate_pem,
    }.get(content)
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigurationError, match="GRAPH_CLIENT_CERTIFICATE_PATH") as info:
        GraphSettings(client_id="app", certificate_path=str(path))
    assert problem in str(info.value)
    assert "PRIVATE KEY" not in str(info.value)


def test_a_missing_token_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="GRAPH_FEDERATED_TOKEN_FILE"):
        GraphSettings(client_id="app", federated_token_file=str(tmp_path / "absent"))


def test_the_token_file_is_reread_only_when_it_changed(tmp_path: Path) -> None:
    path = write_token_file(tmp_path / "token", "first")
    settings = GraphSettings(client_id="app", federated_token_file=str(path))
    credential = settings.credential
    assert isinstance(credential, FederatedTokenFile)
    assert credential.assertion() == "first"
    assert credential.secrets() == ("first",)
    write_token_file(path, "second")
    assert credential.assertion() == "second"
