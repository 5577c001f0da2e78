"""A throw-away ISO 15118-20 test PKI for the lab, the demo and the tests.

:func:`create_test_pki` writes three chains into one directory, each one
root -> Sub-CA 1 (pathLen 1) -> Sub-CA 2 (pathLen 0) -> leaf, like the
ISO 15118 PKI:

=========  ============================  ==============================  ===
chain      root                          leaf                            DC
=========  ============================  ==============================  ===
V2G / CPO  ``v2g_root``                  ``secc`` (CN = SECC id)         CPO
OEM        ``oem_root``                  ``oem_prov`` (CN = PCID)        OEM
MO         ``mo_root``                   ``contract`` (CN = EMAID)       MO
=========  ============================  ==============================  ===

Every key is ECDSA on secp521r1 and every certificate is an X.509 v3
certificate signed with ecdsa-with-SHA512 (ISO 15118-20 Annex, FACTS.md
"TLS").  Each certificate is written as ``<name>.pem`` and ``<name>.der``,
each private key as ``<name>.key`` (PKCS#8 PEM, unencrypted, mode 0600), and
each leaf once more as ``<name>_chain.pem`` = leaf + Sub-CA 2 + Sub-CA 1, the
bundle a TLS peer sends.  ``pki.json`` (written last) maps the
:class:`TestPki` field names to paths relative to the directory, and
``README.txt`` says the same for people.

The keys are unprotected: this is test material, never production
credentials.

Only :func:`create_test_pki` imports ``cryptography`` (some 12 MB resident):
a service that reads an existing PKI with :func:`load_test_pki` never loads it,
and one that has to create one calls :func:`create_test_pki_in_child`, which
runs ``chargepoint pki create-test`` in a child interpreter.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from chargepoint.errors import ChargepointError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

logger = logging.getLogger(__name__)

MANIFEST = "pki.json"
MANIFEST_FORMAT = "chargepoint-v2g-test-pki/1"
DEFAULT_SECC_ID = "DE*TST*E00001*1"
DEFAULT_PCID = "WMITSTEV0000000001"  # provisioning certificate id (18 characters)
DEFAULT_EMAID = "DETSTC00000001"
DEFAULT_VALIDITY_DAYS = 730
ORGANIZATION = "chargepoint test PKI"
COUNTRY = "DE"
_CLOCK_SKEW = timedelta(hours=1)  # not_before lies this far in the past

_CA_USAGE = frozenset({"key_cert_sign", "crl_sign"})
_TLS_LEAF_USAGE = frozenset({"digital_signature", "key_agreement"})
_CONTRACT_USAGE = frozenset({"digital_signature", "content_commitment", "key_agreement"})


class PkiError(ChargepointError):
    """A test PKI cannot be written or read (exists already, bad manifest)."""


@dataclass(frozen=True)
class TestPki:
    """Where each file of a test PKI lies.  ``*_chain`` = leaf + Sub-CA 2 + Sub-CA 1 (PEM)."""

    __test__ = False  # not a pytest test class despite the name

    v2g_root_cert: Path
    v2g_root_key: Path
    cpo_sub_ca1_cert: Path
    cpo_sub_ca1_key: Path
    cpo_sub_ca2_cert: Path
    cpo_sub_ca2_key: Path
    secc_cert: Path
    secc_key: Path
    secc_chain: Path
    oem_root_cert: Path
    oem_root_key: Path
    oem_sub_ca1_cert: Path
    oem_sub_ca1_key: Path
    oem_sub_ca2_cert: Path
    oem_sub_ca2_key: Path
    ev_cert: Path
    ev_key: Path
    ev_chain: Path
    mo_root_cert: Path
    mo_root_key: Path
    mo_sub_ca1_cert: Path
    mo_sub_ca1_key: Path
    mo_sub_ca2_cert: Path
    mo_sub_ca2_key: Path
    contract_cert: Path
    contract_key: Path
    contract_chain: Path


@dataclass(frozen=True)
class _Spec:
    field: str  # TestPki field prefix
    stem: str  # file name without extension
    common_name: str
    domain_component: str
    issuer: str | None  # field prefix of the issuer; None = self-signed root
    path_length: int | None  # only for CAs; None on a root = unlimited
    usage: frozenset[str]
    description: str

    @property
    def is_ca(self) -> bool:
        return self.usage == _CA_USAGE


def _specs(secc_id: str, pcid: str, emaid: str) -> list[_Spec]:
    """The 12 certificates, issuers before subjects."""
    return [
        _Spec("v2g_root", "v2g_root", "V2G Root CA", "V2G", None, None, _CA_USAGE,
              "V2G root CA (trust anchor of the car: verifies the SECC chain)"),
        _Spec("cpo_sub_ca1", "cpo_sub_ca1", "CPO Sub-CA 1", "V2G", "v2g_root", 1, _CA_USAGE,
              "CPO Sub-CA 1, issued by the V2G root"),
        _Spec("cpo_sub_ca2", "cpo_sub_ca2", "CPO Sub-CA 2", "V2G", "cpo_sub_ca1", 0, _CA_USAGE,
              "CPO Sub-CA 2, issued by CPO Sub-CA 1"),
        _Spec("secc", "secc", secc_id, "CPO", "cpo_sub_ca2", None, _TLS_LEAF_USAGE,
              "SECC certificate: the charger's TLS server certificate"),
        _Spec("oem_root", "oem_root", "OEM Root CA", "OEM", None, None, _CA_USAGE,
              "OEM root CA (trust anchor of the charger for mutual TLS)"),
        _Spec("oem_sub_ca1", "oem_sub_ca1", "OEM Sub-CA 1", "OEM", "oem_root", 1, _CA_USAGE,
              "OEM Sub-CA 1, issued by the OEM root"),
        _Spec("oem_sub_ca2", "oem_sub_ca2", "OEM Sub-CA 2", "OEM", "oem_sub_ca1", 0, _CA_USAGE,
              "OEM Sub-CA 2, issued by OEM Sub-CA 1"),
        _Spec("ev", "oem_prov", pcid, "OEM", "oem_sub_ca2", None, _TLS_LEAF_USAGE,
              "OEM provisioning (vehicle) certificate: the car's TLS client certificate"),
        _Spec("mo_root", "mo_root", "MO Root CA", "MO", None, None, _CA_USAGE,
              "MO (eMobility operator) root CA"),
        _Spec("mo_sub_ca1", "mo_sub_ca1", "MO Sub-CA 1", "MO", "mo_root", 1, _CA_USAGE,
              "MO Sub-CA 1, issued by the MO root"),
        _Spec("mo_sub_ca2", "mo_sub_ca2", "MO Sub-CA 2", "MO", "mo_sub_ca1", 0, _CA_USAGE,
              "MO Sub-CA 2, issued by MO Sub-CA 1"),
        _Spec("contract", "contract", emaid, "MO", "mo_sub_ca2", None, _CONTRACT_USAGE,
              "contract certificate (Plug & Charge; CN = EMAID)"),
    ]  # fmt: skip


def _name(spec: _Spec) -> x509.Name:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COUNTRY_NAME, COUNTRY),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, spec.domain_component),
        ]
    )


def _key_usage(usage: frozenset[str]) -> x509.KeyUsage:
    from cryptography import x509  # noqa: PLC0415

    flags = {
        name: name in usage
        for name in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        )
    }
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


def _issue(
    spec: _Spec,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    public = key.public_key()
    builder = (
        x509.CertificateBuilder()  # X.509 v3 is the builder's only version
        .subject_name(_name(spec))
        .issuer_name(issuer[0].subject if issuer else _name(spec))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=spec.is_ca, path_length=spec.path_length), critical=True
        )
        .add_extension(_key_usage(spec.usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer is not None:
        ski = issuer[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA512())  # ecdsa-with-SHA512


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary name so the final file never exists with a wider mode."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT honours the umask and ignores existing files
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return cert.public_bytes(serialization.Encoding.PEM)


def create_test_pki(
    directory: Path,
    *,
    secc_name: str = DEFAULT_SECC_ID,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    pcid: str = DEFAULT_PCID,
    emaid: str = DEFAULT_EMAID,
    force: bool = False,
    now: datetime | None = None,
    secc_validity: tuple[datetime, datetime] | None = None,
) -> TestPki:
    """Write a complete test PKI into ``directory`` (created, mode 0700) and return its paths.

    Refuses a non-empty ``directory`` unless ``force`` (then it overwrites its
    own files and leaves any others alone).  Certificates are valid from
    ``now`` (default: the current time) minus one hour for ``validity_days``;
    ``secc_validity`` = (not_before, not_after) overrides the window of the
    SECC certificate alone, e.g. to test an expired one.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    if validity_days <= 0:
        raise PkiError(f"validity_days must be positive, not {validity_days}")
    if directory.exists() and not directory.is_dir():
        raise PkiError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise PkiError(f"{directory} is not empty; refusing to overwrite it without --force")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    start = (now or datetime.now(UTC)) - _CLOCK_SKEW
    end = start + _CLOCK_SKEW + timedelta(days=validity_days)
    issued: dict[str, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = {}
    files: dict[str, str] = {}
    der: dict[str, str] = {}
    readme: list[str] = []
    specs = {spec.field: spec for spec in _specs(secc_name, pcid, emaid)}
    for spec in specs.values():
        key = ec.generate_private_key(ec.SECP521R1())
        window = secc_validity if spec.field == "secc" and secc_validity else (start, end)
        issuer = issued[spec.issuer] if spec.issuer else None
        cert = _issue(spec, key, issuer, *window)
        issued[spec.field] = (cert, key)

        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(directory / f"{spec.stem}.pem", _pem(cert), 0o644)
        _write(directory / f"{spec.stem}.der", cert.public_bytes(serialization.Encoding.DER), 0o644)
        _write(directory / f"{spec.stem}.key", key_pem, 0o600)
        files[f"{spec.field}_cert"] = f"{spec.stem}.pem"
        files[f"{spec.field}_key"] = f"{spec.stem}.key"
        der[f"{spec.field}_cert"] = f"{spec.stem}.der"
        readme.append(f"{spec.stem}.pem/.der/.key  {spec.description}; CN={spec.common_name}")
        if not spec.is_ca:
            bundle = _pem(cert)
            parent = spec.issuer
            while parent is not None and specs[parent].issuer is not None:  # stop at the root
                bundle += _pem(issued[parent][0])
                parent = specs[parent].issuer
            _write(directory / f"{spec.stem}_chain.pem", bundle, 0o644)
            files[f"{spec.field}_chain"] = f"{spec.stem}_chain.pem"
            readme.append(f"{spec.stem}_chain.pem  {spec.stem} + its Sub-CA 2 + Sub-CA 1 (PEM)")

    _write(directory / "README.txt", _readme(secc_name, readme).encode(), 0o644)
    manifest = {
        "format": MANIFEST_FORMAT,
        "secc_id": secc_name,
        "created": (start + _CLOCK_SKEW).isoformat(),
        "key": "ECDSA secp521r1",
        "signature": "ecdsa-with-SHA512",
        "files": files,
        "der": der,
    }
    _write(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), 0o644)
    logger.info("wrote an ISO 15118-20 test PKI for SECC %s to %s", secc_name, directory)
    return load_test_pki(directory)


def create_test_pki_in_child(
    directory: Path, *, secc_name: str = DEFAULT_SECC_ID, timeout_s: float = 120.0
) -> TestPki:
    """:func:`create_test_pki` in a child interpreter (``python -m chargepoint pki create-test``).

    For a long-running service: the key generation and ``cryptography`` stay
    out of its memory.  Raises :class:`PkiError` with the child's message.
    """
    argv = [sys.executable, "-m", "chargepoint", "pki", "create-test", str(directory),
            "--secc-id", secc_name]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PkiError(f"cannot run {' '.join(argv[:4])}: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.strip().removeprefix("error: ") or f"exit code {done.returncode}"
        raise PkiError(message)
    return load_test_pki(directory)


def _readme(secc_id: str, lines: list[str]) -> str:
    return "\n".join(
        [
            "ISO 15118-20 TEST PKI -- written by `chargepoint pki create-test`.",
            "FOR TESTS AND LABS ONLY: the private keys are not encrypted.",
            "",
            "Keys: ECDSA secp521r1 (PKCS#8 PEM, mode 0600); certificates: X.509 v3,",
            "ecdsa-with-SHA512, PEM (.pem) and DER (.der).  Chains: root -> Sub-CA 1",
            "(pathLen 1) -> Sub-CA 2 (pathLen 0) -> leaf.",
            f"SECC id (CN of secc.pem): {secc_id}",
            "",
            "Charger (SECC, TLS server): secc_chain.pem + secc.key; trusts oem_root.pem",
            "  for mutual TLS.",
            "Car (EVCC, TLS client): oem_prov_chain.pem + oem_prov.key; trusts v2g_root.pem.",
            "",
            *lines,
            "",
            f"{MANIFEST}: the same, machine-readable (paths relative to this directory).",
            "",
        ]
    )


def load_test_pki(directory: Path) -> TestPki:
    """Read ``pki.json`` of a directory written by :func:`create_test_pki`."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise PkiError(f"{path} not found: not a test PKI directory") from None
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise PkiError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    entries = manifest.get("files")
    wanted = {f.name for f in fields(TestPki)}
    if not isinstance(entries, dict) or set(entries) != wanted:
        raise PkiError(f"{path}: 'files' must name exactly {sorted(wanted)}")
    paths: dict[str, Path] = {}
    for name, relative in entries.items():
        if (
            not isinstance(relative, str)
            or Path(relative).is_absolute()
            or ".." in Path(relative).parts
        ):
            raise PkiError(f"{path}: {name} must be a path relative to {directory}")
        paths[name] = directory / relative
    return TestPki(**paths)
