"""The single sign-on settings: the role map's shape and names, the endpoints it needs, and
which `amr` claims count as a second factor."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.checks import sso_settings
from accounts.role_map import parse_role_map
from accounts.sso import claim_values, second_factor_used


def test_a_role_map_takes_one_role_or_a_list():
    assert parse_role_map('{"sre": ["Incident Commander", "On-call"], "cs": "Support Lead"}') == {
        "sre": ["Incident Commander", "On-call"],
        "cs": ["Support Lead"],
    }
    assert parse_role_map("  ") == {}
    assert parse_role_map('{"サポート": "Support Lead", "תמיכה": "Viewer"}')["サポート"] == [
        "Support Lead"
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not valid JSON"),
        ('["Incident Commander"]', "must be a JSON object"),
        ('{"sre": 3}', "OIDC_ROLE_MAP['sre'] must be a role"),
        ('{"sre": ["Viewer", null]}', "OIDC_ROLE_MAP['sre'] must be a role"),
    ],
)
def test_a_malformed_role_map_stops_the_settings_with_the_reason(text, says):
    with pytest.raises(ImproperlyConfigured, match=says.replace("[", r"\[")):
        parse_role_map(text)


def test_the_system_check_names_an_unknown_role_and_missing_endpoints(settings):
    settings.OIDC_ROLE_MAP = {"sre": ["Incident Comander"], "<b>x</b>": ["Viewer"]}
    settings.SSO_ENABLED = True
    settings.OIDC_RP_CLIENT_SECRET = ""
    settings.OIDC_OP_TOKEN_ENDPOINT = ""
    errors = {error.id: error.msg for error in sso_settings(None)}
    assert "Incident Comander" in errors["accounts.E001"]
    assert "OIDC_OP_TOKEN_ENDPOINT" in errors["accounts.E002"]
    assert "OIDC_RP_CLIENT_SECRET" in errors["accounts.E002"]


def test_nothing_to_say_when_sso_is_off_and_the_map_is_sound(settings):
    settings.SSO_ENABLED = False
    settings.OIDC_ROLE_MAP = {"sre": ["Incident Commander", "DBA"]}
    assert sso_settings(None) == []


@pytest.mark.parametrize(
    ("amr", "second"),
    [
        (["pwd", "mfa"], True),
        (["mfa"], True),
        (["pwd", "otp"], True),
        (["pwd", "hwk"], True),
        (["hwk", "fpt"], True),
        (["pwd"], False),
        (["otp"], False),  # one method is one factor
        ("mfa", True),  # some providers send a string
        ([], False),
        (None, False),
        ([1, {"x": 1}], False),
    ],
)
def test_which_authentication_methods_count_as_a_second_factor(settings, amr, second):
    settings.SSO_TRUSTS_PROVIDER_MFA = False
    assert second_factor_used({"amr": amr}) is second


def test_a_trusted_provider_counts_as_a_second_factor_whatever_amr_says(settings):
    settings.SSO_TRUSTS_PROVIDER_MFA = True
    assert second_factor_used({}) is True


def test_claim_values_read_lists_and_strings_only():
    assert claim_values({"groups": ["a", "b", 3]}, "groups") == {"a", "b"}
    assert claim_values({"groups": "a"}, "groups") == {"a"}
    assert claim_values({"groups": {"a": 1}}, "groups") == set()
