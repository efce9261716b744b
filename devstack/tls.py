"""The stack's private files. `write_private` writes a file only its owner can read (0600 from
its creation): the stack's secrets, env.json, the Redis processes' configuration and the keys
below. `make_tls_files` makes the TLS files its Redis servers and Sentinels serve: a CA (kept
across starts) and a server certificate for 127.0.0.1 and localhost that it signs, made again
when `expires_soon` says the old one is near its end (StackState.tls_files decides when).
"""

from __future__ import annotations

import os
from pathlib import Path

# The stack's certificates: made once, reused while they have this long left.
TLS_CA_DAYS = 3650
TLS_SERVER_DAYS = 825
TLS_RENEW_BEFORE_DAYS = 7


def write_private(path: Path, text: str) -> None:
    """Writes `path` as a file only its owner can read: a new file created 0600 then renamed over
    the old one, so it is never readable by others, even for a moment or if it was before."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def expires_soon(cert_file: Path) -> bool:
    import datetime as dt

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return left < dt.timedelta(days=TLS_RENEW_BEFORE_DAYS)


def make_tls_files(files: dict[str, Path]) -> None:
    """A CA (kept, with its key, if there is one) and a server certificate it signs for
    127.0.0.1 and localhost: P-256 keys, written 0600."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    if files["ca"].exists() and files["ca_key"].exists() and not expires_soon(files["ca"]):
        ca_key = serialization.load_pem_private_key(files["ca_key"].read_bytes(), None)
        ca = x509.load_pem_x509_certificate(files["ca"].read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stockpred devstack CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=TLS_CA_DAYS))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, key_cert_sign=True, crl_sign=True,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        write_private(files["ca_key"], pem_key(ca_key))
        files["ca"].write_text(pem(ca))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=TLS_SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # Replicas and Sentinels present it as clients too (tls-replication).
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(files["key"], pem_key(key))
    files["cert"].write_text(pem(cert))
