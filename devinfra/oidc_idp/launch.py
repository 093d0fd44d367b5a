"""Start the stand-in identity provider (devinfra.oidc_idp) as a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devinfra.processes import ServerProcess, free_port, wait_for_port


@dataclass
class IdentityProvider:
    server: ServerProcess
    client_id: str
    client_secret: str

    @property
    def issuer(self) -> str:
        return f"{self.server.url}/openid"

    def console_settings(self) -> dict[str, str]:
        """The console's OIDC_* settings for signing in through this provider."""
        return {
            "OIDC_RP_CLIENT_ID": self.client_id,
            "OIDC_RP_CLIENT_SECRET": self.client_secret,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.issuer}/authorize",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.issuer}/token",
            "OIDC_OP_USER_ENDPOINT": f"{self.issuer}/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.issuer}/jwks",
        }

    def stop(self) -> None:
        self.server.stop()


def start_identity_provider(
    *,
    people: Sequence[Mapping[str, Any]],
    redirect_uris: Sequence[str],
    work_dir: Path,
    client_id: str = "backout",
    client_secret: str = "stand-in-client-secret",
    port: int | None = None,
    log_file: Path | None = None,
) -> IdentityProvider:
    """Write the directory file into `work_dir`, start the provider and wait until it answers."""
    port = port or free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    directory = work_dir / "idp-directory.json"
    directory.write_text(json.dumps({"people": list(people)}, indent=2))
    command = [sys.executable, "-m", "devinfra.oidc_idp", "--port", str(port)]
    command += ["--directory", str(directory), "--database", str(work_dir / "idp.sqlite3")]
    command += ["--client-id", client_id, "--client-secret", client_secret]
    for uri in redirect_uris:
        command += ["--redirect-uri", uri]
    output = log_file.open("ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(
        command,
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_for_port(port, timeout=60, process=process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    server = ServerProcess(url=f"http://127.0.0.1:{port}", port=port, process=process)
    return IdentityProvider(server=server, client_id=client_id, client_secret=client_secret)
