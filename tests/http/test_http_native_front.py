"""NativeFrontMiddleware: the front's headers become scope entries and leave the headers."""

from __future__ import annotations

from typing import Any

from bastion.http.middleware.native_front import NativeFrontMiddleware

PEM = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"
PEM_ENCODED = b"-----BEGIN%20CERTIFICATE-----%0AAQID%0A-----END%20CERTIFICATE-----%0A"


async def adopted(scope: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    async def receive() -> Any:
        return {}

    async def send(message: Any) -> None:
        return None

    await NativeFrontMiddleware(app, server=("127.0.0.1", 8443))(scope, receive, send)
    return seen


async def test_tls_peer_and_certificate() -> None:
    scope = await adopted(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "client": None,
            "headers": [
                (b"host", b"a"),
                (b"x-bastion-front-peer", b"[2001:db8::1]:5555"),
                (b"x-bastion-front-scheme", b"https"),
                (b"x-bastion-front-tls-version", b"0x0304"),
                (b"x-bastion-front-client-cert", PEM_ENCODED),
            ],
        }
    )
    assert scope["headers"] == [(b"host", b"a")]
    assert scope["client"] == ("2001:db8::1", 5555)
    assert scope["server"] == ("127.0.0.1", 8443)
    assert scope["scheme"] == "https"
    assert scope["method"] == "GET"
    assert scope["extensions"]["tls"] == {
        "server_cert": None,
        "client_cert_chain": [PEM],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": None,
    }


async def test_plain_http_method_and_websocket_scheme() -> None:
    scope = await adopted(
        {
            "type": "http",
            "method": "GET",
            "headers": [
                (b"x-bastion-front-peer", b"192.0.2.1:80"),
                (b"x-bastion-front-scheme", b"http"),
                (b"x-bastion-front-method", b"delete"),
            ],
            "extensions": {"tls": {"forged": True}},
        }
    )
    assert (scope["client"], scope["scheme"], scope["method"]) == (
        ("192.0.2.1", 80),
        "http",
        "delete",
    )
    assert scope["headers"] == []
    assert "tls" not in scope["extensions"]
    ws = await adopted({"type": "websocket", "headers": [(b"x-bastion-front-scheme", b"https")]})
    assert (ws["scheme"], ws["client"]) == ("wss", None)
