"""TLS 1.3 contexts for ISO 15118-20: the charger's V2G server and the simulated car.

ISO 15118-20 runs over mutual TLS 1.3 only ([V2G20-2356], [V2G20-1237],
[V2G20-1264]) with cipher suites TLS_AES_256_GCM_SHA384 and
TLS_CHACHA20_POLY1305_SHA256, key-exchange groups secp521r1 and x448 and
signature schemes ecdsa_secp521r1_sha512 and ed448 (FACTS.md "TLS").

What Python 3.11's ``ssl`` module (here linked against OpenSSL 3.0) can and
cannot restrict, and what these contexts therefore guarantee:

Protocol version -- enforced in the handshake.
    ``minimum_version = maximum_version = TLSv1_3``; a TLS 1.2 peer gets a
    protocol_version alert.

Cipher suites -- chosen in the handshake by preference, enforced after it.
    ``SSLContext.set_ciphers`` only configures TLS <= 1.2 suites and ``ssl``
    has no binding of ``SSL_CTX_set_ciphersuites``, so both contexts offer
    OpenSSL's default TLS 1.3 list: TLS_AES_256_GCM_SHA384,
    TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, in that order.  The
    server context keeps ``OP_CIPHER_SERVER_PREFERENCE`` (the ``ssl``
    default), so it picks TLS_AES_256_GCM_SHA384 whenever the car offers it.
    A peer that offers only TLS_AES_128_GCM_SHA256 completes the handshake:
    :func:`enforce_v2g20_policy`, which the SECC and the car must call on
    every new connection, raises :class:`V2gTlsPolicyError` so the caller
    closes the connection before any V2GTP byte is exchanged.

Key-exchange group -- enforced in the handshake, but only one group.
    ``SSLContext.set_ecdh_curve`` sets the supported_groups list to exactly
    one group (it takes one name).  Both contexts use secp521r1 by default
    (``group="X448"`` selects x448 instead); the other -20 group cannot be
    allowed at the same time, so a peer that supports only the other one
    fails the handshake (handshake_failure).  With secp521r1, the ClientHello
    lists only secp521r1 and carries a secp521r1 key share.  Python 3.11
    cannot report the negotiated group; the tests read it from the ServerHello
    on the wire.

Signature schemes -- not configurable; guaranteed for our own signatures.
    ``ssl`` has no binding of ``SSL_CTX_set1_sigalgs_list``: the ClientHello
    and the CertificateRequest advertise OpenSSL's default list (ECDSA P-256
    to P-521, Ed25519, Ed448, RSA-PSS, RSA PKCS#1).  In TLS 1.3 an ECDSA
    scheme names its curve (RFC 8446 4.2.3), so a P-521 certificate key (all
    keys of :mod:`chargepoint.adapters.v2g_pki`) signs CertificateVerify with
    ecdsa_secp521r1_sha512 and nothing else.  For the peer,
    :func:`enforce_v2g20_policy` checks that its certificate key is P-521 or
    Ed448, which implies that its CertificateVerify used
    ecdsa_secp521r1_sha512 or ed448.  The signatures inside the peer's
    certificate chain are checked by X.509 path validation against our trust
    anchor, not against this list.

Process-wide alternative.
    OpenSSL applies the ``system_default`` section of the file named by
    ``OPENSSL_CONF`` to every context of the process, which enforces all
    three lists during the handshake::

        openssl_conf = openssl_init
        [openssl_init]
        ssl_conf = ssl_sect
        [ssl_sect]
        system_default = system_default_sect
        [system_default_sect]
        Ciphersuites = TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
        Groups = secp521r1:X448
        SignatureAlgorithms = ecdsa_secp521r1_sha512:ed448

    It also applies to the OCPP connection to the CSMS (usually RSA or P-256),
    so it fits only a process that runs the V2G server alone.  The group set by
    these factories replaces ``Groups``.  Not used here; no ctypes calls into
    libssl.

Not done: certificate revocation (no CRL or OCSP checks, no OCSP stapling:
``ssl`` has no server-side stapling API), and no check of the SECC
certificate's CN against an SECC ID (see below).

Peer authentication.
    The car (:func:`evcc_client_context`) requires a certificate chain to the
    V2G root (``CERT_REQUIRED``) with ``check_hostname = False``: the car
    reaches the charger at an IPv6 link-local address found by SDP, and the
    SECC certificate names the SECC by its CN (the SECC id), not by DNS names
    or IP addresses, so RFC 6125 hostname matching cannot apply.
    :func:`peer_certificate_summary` gives the CN for a caller that wants to
    check it.  The charger (:func:`secc_server_context`) with
    ``require_client_cert=True`` requests the car's OEM provisioning
    certificate and requires a chain to ``client_ca`` (the OEM root);
    a car without a certificate gets certificate_required, one from another
    root unknown_ca.  With ``require_client_cert=False`` it requests no client
    certificate: server authentication only, e.g. with EIM.  FACTS.md reads
    [V2G20-2356], [V2G20-1237] and [V2G20-1264] as "-20 runs only over mutual
    TLS 1.3", so this is for lab setups; ``client_ca`` is then unused.

Memory.
    :func:`enforce_v2g20_policy` runs on every connection of the service; it
    reads the peer key's algorithm from the DER certificate with a few lines
    of ASN.1 walking (:func:`peer_key_algorithm`) instead of importing
    ``cryptography`` (some 12 MB resident), which only
    :func:`peer_certificate_summary` still needs.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from chargepoint.errors import RemoteProtocolError

if TYPE_CHECKING:
    from cryptography import x509

logger = logging.getLogger(__name__)

#: the cipher suites ISO 15118-20 allows (FACTS.md "TLS")
V2G20_CIPHER_SUITES = frozenset({"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})
#: the key-exchange groups ISO 15118-20 allows, as ``set_ecdh_curve`` names them
V2G20_GROUPS = ("secp521r1", "X448")
DEFAULT_GROUP = "secp521r1"

# DER contents of the object identifiers a -20 peer key may have (FACTS.md "TLS")
_ID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
_SECP521R1 = bytes.fromhex("2b81040023")  # 1.3.132.0.35
_ED448 = bytes.fromhex("2b6571")  # 1.3.101.113
_SEQUENCE, _OID, _EXPLICIT_0 = 0x30, 0x06, 0xA0


class V2gTlsPolicyError(RemoteProtocolError):
    """The peer negotiated a TLS connection outside the ISO 15118-20 profile."""


def _tls13_only(context: ssl.SSLContext, group: str) -> None:
    if group not in V2G20_GROUPS:
        raise ValueError(f"group must be one of {V2G20_GROUPS}, not {group!r}")
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ecdh_curve(group)


def secc_server_context(
    *,
    cert_chain: Path,
    key: Path,
    client_ca: Path | None,
    require_client_cert: bool,
    group: str = DEFAULT_GROUP,
) -> ssl.SSLContext:
    """The SECC's TLS 1.3 server context.

    ``cert_chain``: SECC certificate followed by its Sub-CAs (PEM); ``key``:
    its private key.  With ``require_client_cert`` the car must present a
    chain to ``client_ca`` (the OEM root, PEM; required then); without it no
    client certificate is requested (lab setups only, see the module doc).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _tls13_only(context, group)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE  # pick AES-256-GCM first
    context.load_cert_chain(cert_chain, key)
    if require_client_cert:  # [V2G20-2356] mutual authentication
        if client_ca is None:
            raise ValueError("require_client_cert needs client_ca (the OEM root)")
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
        logger.info("V2G TLS server does not request a client certificate (lab setting)")
    return context


def evcc_client_context(
    *,
    trust_root: Path,
    cert_chain: Path | None,
    key: Path | None,
    group: str = DEFAULT_GROUP,
) -> ssl.SSLContext:
    """The (simulated) car's TLS 1.3 client context.

    ``trust_root``: the V2G root (PEM) the SECC chain must lead to;
    ``cert_chain`` + ``key``: the car's OEM provisioning certificate with its
    Sub-CAs and its key, or both None for a car without a certificate.
    """
    if (cert_chain is None) != (key is None):
        raise ValueError("give both cert_chain and key, or neither")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _tls13_only(context, group)
    # The SECC is reached by link-local address and named by its certificate CN, not
    # by a DNS name: no hostname check, but the chain must verify (module doc).
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=trust_root)
    if cert_chain is not None and key is not None:
        context.load_cert_chain(cert_chain, key)
    return context


def _peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> x509.Certificate | None:
    from cryptography import x509  # noqa: PLC0415

    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None


def _tlv(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at ``pos`` (its contents are der[start:end])."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4 or pos + size > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + size], "big")
        pos += size
    if pos + length > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _oid_text(content: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return "?"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def peer_key_algorithm(der: bytes) -> tuple[bytes, bytes | None]:
    """(algorithm OID, parameter OID or None) of a DER X.509 certificate's public key.

    The OIDs are DER contents (no tag and length).  Walks Certificate ->
    tbsCertificate -> subjectPublicKeyInfo -> algorithm (RFC 5280 4.1);
    raises ``ValueError`` on anything else.
    """
    tag, start, end = _tlv(der, 0, len(der))  # Certificate
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, pos, tbs_end = _tlv(der, start, end)  # tbsCertificate
    if tag != _SEQUENCE:
        raise ValueError("no tbsCertificate")
    tag, _, after = _tlv(der, pos, tbs_end)
    if tag == _EXPLICIT_0:  # version
        pos = after
    for _ in range(5):  # serialNumber, signature, issuer, validity, subject
        pos = _tlv(der, pos, tbs_end)[2]
    tag, spki, spki_end = _tlv(der, pos, tbs_end)  # subjectPublicKeyInfo
    if tag != _SEQUENCE:
        raise ValueError("no subjectPublicKeyInfo")
    tag, pos, alg_end = _tlv(der, spki, spki_end)  # AlgorithmIdentifier
    if tag != _SEQUENCE:
        raise ValueError("no key algorithm")
    tag, start, end = _tlv(der, pos, alg_end)
    if tag != _OID:
        raise ValueError("no key algorithm OID")
    algorithm = der[start:end]
    if end == alg_end:
        return algorithm, None
    tag, start, param_end = _tlv(der, end, alg_end)
    return algorithm, der[start:param_end] if tag == _OID else None


def enforce_v2g20_policy(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> None:
    """Raise :class:`V2gTlsPolicyError` unless a finished handshake meets ISO 15118-20.

    Checks what the contexts cannot enforce in the handshake (module doc):
    TLS 1.3, one of the two -20 cipher suites, and a peer certificate key
    (if any) on P-521 or Ed448.  Call it on every new connection and close
    the connection when it raises.
    """
    version = ssl_object.version()
    if version != "TLSv1.3":
        raise V2gTlsPolicyError(f"TLS version {version} is not TLSv1.3")
    cipher = ssl_object.cipher()
    suite = cipher[0] if cipher else None
    if suite not in V2G20_CIPHER_SUITES:
        raise V2gTlsPolicyError(f"cipher suite {suite} is not allowed by ISO 15118-20")
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return
    try:
        algorithm, parameter = peer_key_algorithm(der)
    except ValueError as exc:
        raise V2gTlsPolicyError(f"peer certificate unreadable: {exc}") from None
    p521 = algorithm == _ID_EC_PUBLIC_KEY and parameter == _SECP521R1
    if not (p521 or algorithm == _ED448):
        kind = _oid_text(algorithm) + ("" if parameter is None else f" {_oid_text(parameter)}")
        raise V2gTlsPolicyError(f"peer certificate key {kind} is neither P-521 nor Ed448")


def _cn(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def peer_certificate_summary(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, str]:
    """Subject CN, issuer CN and not_after (ISO 8601, UTC) of the peer's certificate.

    Empty when the peer sent none (e.g. no client certificate requested).
    """
    cert = _peer_certificate(ssl_object)
    if cert is None:
        return {}
    return {
        "subject_cn": _cn(cert.subject),
        "issuer_cn": _cn(cert.issuer),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }
