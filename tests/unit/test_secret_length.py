"""Secrets shorter than 32 bytes are refused, with a message that says how to make a
good one and never echoes the secret: in the settings, when the API is built, and when
a token is signed."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from tether import ConfigError, Tether, load_settings
from tether.api.app import create_app
from tether.auth import create_token
from tether.config import MIN_SECRET_BYTES, Settings

SHORT = "short-but-secret"
GOOD = "x" * MIN_SECRET_BYTES


def test_settings_refuse_a_short_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_JWT_SECRET", SHORT)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "jwt_secret" in message and "at least 32 bytes" in message
    assert f"is {len(SHORT)} bytes" in message
    assert SHORT not in message


def test_the_metrics_scrape_token_is_held_to_the_same_length() -> None:
    with pytest.raises(ConfigError, match="metrics_token is 16 bytes"):
        load_settings({"metrics_token": SHORT})
    assert load_settings({"metrics_token": GOOD}).metrics_token == SecretStr(GOOD)


def test_thirty_two_bytes_are_enough_and_bytes_not_characters_count() -> None:
    assert load_settings({"jwt_secret": GOOD}).jwt_secret == SecretStr(GOOD)
    # 16 characters of two bytes each: 32 bytes of UTF-8.
    assert load_settings({"jwt_secret": "é" * 16}).jwt_secret is not None
    with pytest.raises(ConfigError):
        load_settings({"jwt_secret": "x" * (MIN_SECRET_BYTES - 1)})


def test_a_direct_settings_object_does_not_show_the_secret_either() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(jwt_secret=SHORT)  # type: ignore[arg-type]
    assert SHORT not in str(caught.value)


def test_building_the_api_refuses_a_short_secret_set_without_validation() -> None:
    app = Tether("sqlite://:memory:")
    settings = load_settings({"database_url": "sqlite://:memory:", "jwt_secret": GOOD})
    unchecked = settings.model_copy(update={"jwt_secret": SecretStr(SHORT)})
    with pytest.raises(ConfigError, match="at least 32 bytes") as caught:
        create_app(app, unchecked)
    assert SHORT not in str(caught.value)
    create_app(app, settings)  # a good one builds


def test_a_token_is_never_signed_with_a_short_secret() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        create_token(SHORT, "t1", ["viewer"])
    assert create_token(GOOD, "t1", ["viewer"]).count(".") == 2
