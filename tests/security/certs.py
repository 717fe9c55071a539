"""Test certificates, generated with ``cryptography``: a CA, server and client certificates,
and the bad ones (another CA, an expired client certificate, a key that does not match)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class CA:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> CA:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, cert)

    def issue(
        self,
        cn: str,
        *,
        server: bool,
        hosts: tuple[str, ...] = (),
        expired: bool = False,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        start, end = (
            (now - dt.timedelta(days=3), now - dt.timedelta(days=2))
            if expired
            else (now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    if server
                    else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if hosts:
            sans: list[x509.GeneralName] = []
            for h in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


@dataclass
class Bundle:
    """Paths of every PEM file the tests use."""

    ca: Path  # the CA that signed the server and the good client certificate
    other_ca: Path  # a CA that signed nothing of ours
    server_cert: Path
    server_key: Path
    named_server_cert: Path  # valid only for the name etcd.test (not for 127.0.0.1)
    named_server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    stranger_cert: Path  # a client certificate from other_ca
    stranger_key: Path


def make_bundle(d: Path) -> Bundle:
    d.mkdir(parents=True, exist_ok=True)
    ca, other = CA.create("leaderjob test CA"), CA.create("some other CA")
    _write_cert(d / "ca.pem", ca.cert)
    _write_cert(d / "other-ca.pem", other.cert)

    def issue(stem: str, issuer: CA, cn: str, **kw: object) -> tuple[Path, Path]:
        cert, key = issuer.issue(cn, **kw)  # type: ignore[arg-type]
        _write_cert(d / f"{stem}.pem", cert)
        _write_key(d / f"{stem}-key.pem", key)
        return d / f"{stem}.pem", d / f"{stem}-key.pem"

    server = issue("server", ca, "etcd", server=True, hosts=("127.0.0.1", "localhost"))
    named = issue("named-server", ca, "etcd.test", server=True, hosts=("etcd.test",))
    client = issue("client", ca, "leaderjob", server=False)
    expired = issue("expired", ca, "leaderjob", server=False, expired=True)
    stranger = issue("stranger", other, "leaderjob", server=False)
    return Bundle(
        ca=d / "ca.pem",
        other_ca=d / "other-ca.pem",
        server_cert=server[0],
        server_key=server[1],
        named_server_cert=named[0],
        named_server_key=named[1],
        client_cert=client[0],
        client_key=client[1],
        expired_cert=expired[0],
        expired_key=expired[1],
        stranger_cert=stranger[0],
        stranger_key=stranger[1],
    )
