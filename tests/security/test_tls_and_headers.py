"""TLS served directly, and the security headers of every response."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.api.security import PAGE_POLICY
from server.app import create_app
from server.cli.serve import ServeError, tls_context
from server.config import ConfigError
from tests.conftest import make_settings
from tests.helpers import connect_ws


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made for this test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_is_served_directly_with_hsts(tmp_path, aiohttp_server):
    cert, key = self_signed(tmp_path)
    settings = make_settings(tmp_path, server={"tls_cert": str(cert), "tls_key": str(key)})
    server = await aiohttp_server(create_app(settings), ssl=tls_context(settings))  # what `serve` listens with
    url = f"https://127.0.0.1:{server.port}"
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz", ssl=trust) as r:
            assert r.status == 200
            assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"{url}/healthz"):  # an untrusted certificate is refused
                pass
        body = {"username": "alice", "password": "correct horse"}
        async with http.post(f"{url}/api/auth/register", json=body, ssl=trust) as r:
            assert r.status == 201
        async with http.post(f"{url}/api/auth/login", json=body, ssl=trust) as r:
            token = (await r.json())["token"]
    client = await connect_ws(f"wss://127.0.0.1:{server.port}/ws", ssl=trust)
    try:
        assert "result" in await client.call("connect", token=token)
    finally:
        await client.close()


def test_a_certificate_without_its_key_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="tls_cert and server.tls_key go together"):
        make_settings(tmp_path, server={"tls_cert": "cert.pem"})
    settings = make_settings(tmp_path, server={"tls_cert": "missing.pem", "tls_key": "missing.key"})
    with pytest.raises(ServeError, match="cannot load the TLS certificate"):
        tls_context(settings)


async def test_pages_forbid_inline_scripts_and_framing(make_stagewire, tmp_path):
    static = Path(__file__).resolve().parents[2] / "static"
    sw = await make_stagewire(make_settings(tmp_path, server={"static_dir": str(static)}))
    for path in ("/", "/dashboard"):
        async with sw.http.get(sw.url + path) as r:
            assert r.status == 200 and r.content_type == "text/html"
            policy = r.headers["Content-Security-Policy"]
            assert policy == PAGE_POLICY
            assert "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
            assert "script-src 'self'" in policy and "style-src 'self'" in policy
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "Strict-Transport-Security" not in r.headers, "plain HTTP: no HSTS"
            html = await r.text()
        # The policy would block them: the pages must have none.
        assert "<script>" not in html and "<style>" not in html and " style=" not in html
        assert "<script type=\"module\">" not in html


async def test_json_responses_carry_the_headers_too(stagewire):
    async with stagewire.http.get(stagewire.url + "/api/openapi.json") as r:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    async with stagewire.http.get(stagewire.url + "/api/nope") as r:
        assert r.status == 404 and r.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_revalidated_page_keeps_its_policy(make_stagewire, tmp_path):
    """A 304 must not replace the page's policy with another one (the browser merges its headers)."""
    static = Path(__file__).resolve().parents[2] / "static"
    sw = await make_stagewire(make_settings(tmp_path, server={"static_dir": str(static)}))
    async with sw.http.get(sw.url + "/") as r:
        modified = r.headers["Last-Modified"]
    async with sw.http.get(sw.url + "/", headers={"If-Modified-Since": modified}) as r:
        assert r.status == 304
        assert "Content-Security-Policy" not in r.headers
