"""Fixtures of the docker stand-in (devinfra.hosted), a plugin tests/conftest.py loads."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devinfra.hosted.docker_engine import DockerEngineStandin


@pytest.fixture
def docker_engine() -> Iterator[DockerEngineStandin]:
    """The Engine stand-in on a free port and on a Unix socket (in a short temporary folder:
    a socket's path must fit in 108 bytes), rollouts settling in 0.3 s; no services yet."""
    folder = tempfile.mkdtemp(prefix="dkr", dir="/tmp")
    standin = DockerEngineStandin(settle_seconds=0.3)
    standin.start()
    standin.start_unix(f"{folder}/docker.sock")
    yield standin
    standin.stop()
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class DockerTls:
    """A CA, the daemon's certificate for 127.0.0.1 and a client's, as PEM files."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    if ca:  # Python's strict verification wants a CA to say what its key signs
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def docker_tls(tmp_path: Path) -> DockerTls:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    pem = serialization.Encoding.PEM
    ca_key = _write_key(tmp_path / "ca-key.pem")
    ca = _certificate("backout test CA", ca_key, None, ca=True)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    for name, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = _write_key(tmp_path / f"{name}-key.pem")
        cert = _certificate(name, key, (ca.subject, ca_key), usage=usage)
        (tmp_path / f"{name}-cert.pem").write_bytes(cert.public_bytes(pem))
    return DockerTls(
        ca=str(tmp_path / "ca.pem"),
        server_cert=str(tmp_path / "server-cert.pem"),
        server_key=str(tmp_path / "server-key.pem"),
        client_cert=str(tmp_path / "client-cert.pem"),
        client_key=str(tmp_path / "client-key.pem"),
    )
