"""Keys and certificates for the signing tests, made at test time with python3-cryptography:
self-signed RSA certificates (Celery's cert store trusts certificates one by one, it checks no
chain), each with its own serial, so that every signer has its own Celery id."""
import datetime
import os
import random

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def make(directory, name, expired=False, bits=2048):
    """Write NAME.key (mode 600) and NAME.pem into directory; return (key_path, cert_path)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "taskd tests"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.utcnow()
    start, end = ((now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
                  if expired else (now - datetime.timedelta(minutes=5),
                                   now + datetime.timedelta(days=1)))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(random.randrange(1 << 60, 1 << 62))
            .not_valid_before(start).not_valid_after(end).sign(key, hashes.SHA256()))
    key_path = os.path.join(directory, f"{name}.key")
    cert_path = os.path.join(directory, f"{name}.pem")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def store(directory, *cert_paths):
    """A cert-store directory holding copies of cert_paths."""
    os.makedirs(directory, exist_ok=True)
    for p in cert_paths:
        with open(p, "rb") as src, open(os.path.join(directory, os.path.basename(p)), "wb") as d:
            d.write(src.read())
    return directory
