"""The demo's single sign-on: the stand-in identity provider (devinfra.oidc_idp) with a few
people of "Example Corp", and the console settings that send the sign-in page's "Sign in
with SSO" button to it. Their passwords are made afresh at each start and printed in the
demo's summary (they are also in idp-directory.json beside the state file)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from devinfra.oidc_idp.launch import IdentityProvider, start_identity_provider

# The provider's groups, and what each is in the console.
ROLE_MAP = {
    "sre-oncall": ["Incident Commander", "On-call"],
    "platform-leads": ["Approver", "Engineering Lead"],
    "dba": ["Approver", "DBA"],
    "support": ["Support Lead"],
    "engineering": ["Responder"],
}
PEOPLE = (
    ("sso-commander", "Sam Okafor", ["sre-oncall", "engineering"], True),
    ("sso-approver", "Priya Raman", ["platform-leads", "engineering"], True),
    ("sso-support", "Lea Martin", ["support"], False),
    ("sso-engineer", "陈 明", ["engineering"], False),
)


def start_demo_sso(work_dir: Path, console_port: int, log_file: Path) -> IdentityProvider:
    people: list[dict[str, Any]] = [
        {
            "username": username,
            "password": secrets.token_urlsafe(9),
            "email": f"{username}@corp.example",
            "name": name,
            "groups": groups,
            "mfa": mfa,
        }
        for username, name, groups, mfa in PEOPLE
    ]
    return start_identity_provider(
        people=people,
        redirect_uris=[
            f"http://{host}:{console_port}/oidc/callback/" for host in ("127.0.0.1", "localhost")
        ],
        work_dir=work_dir,
        client_secret=secrets.token_urlsafe(24),
        log_file=log_file,
    )


def sso_env(provider: IdentityProvider) -> dict[str, str]:
    """What the console needs to sign people in through the demo's provider."""
    return {
        **provider.console_settings(),
        "OIDC_OP_ISSUER": provider.issuer,
        "OIDC_ROLE_MAP": json.dumps(ROLE_MAP),
        "SSO_BUTTON_LABEL": "Sign in with Example Corp SSO",
    }


def sso_summary(provider: IdentityProvider, work_dir: Path) -> list[str]:
    directory = json.loads((work_dir / "idp-directory.json").read_text())
    lines = [f'  SSO provider       {provider.issuer}  ("Sign in with Example Corp SSO")']
    for person in directory["people"]:
        mfa = ", second factor at the provider" if person.get("mfa") else ""
        lines.append(
            f"    {person['username']:<16} {person['password']:<14} "
            f"groups {', '.join(person['groups'])}{mfa}"
        )
    return lines
