"""The README documents every setting and every error reason with the code the server really sends."""

from __future__ import annotations

import re

from pydantic import AliasChoices

from service.faces.grpc.errors import STATUS_CODES
from service.settings import Settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    """Each environment variable the settings read appears in the README's configuration table."""
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = alias.choices if isinstance(alias, AliasChoices) else [f"TRANSCRIBE_{name.upper()}"]
        assert any(f"`{env}`" in README for env in names), f"{names} is not documented"


def test_every_error_reason_is_in_the_error_table_with_its_code() -> None:
    """Each domain error's reason appears in the README next to the status code the server maps it to."""
    documented = {reason: code for code, reason in re.findall(r"^\| `([A-Z_]+)` \| `([A-Z_]+)` \|", README, re.M)}
    for error_class, code in STATUS_CODES.items():
        assert documented.get(error_class.reason) == code.name, f"{error_class.reason} should be {code.name}"
