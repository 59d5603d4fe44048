"""Start one benchmark server: ``python bench/server/serve.py ENGINE STACK PORT [CERT KEY]``.

ENGINE is ``uvicorn`` or ``granian`` (both through ``bastion.http.server.run_server``,
i.e. exactly what bastion ships) or ``granian-cli`` (granian's own single-worker
runner, for reference). STACK is ``raw`` (the hello app alone) or ``bastion``
(``create_app`` around a stand-in runtime whose gateway is the hello app).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hello import app as hello


class _Ping:
    async def ping(self) -> None:
        return None


def _settings(engine: str, port: int) -> SimpleNamespace:
    return SimpleNamespace(
        server=SimpleNamespace(engine=engine, graceful_timeout=5, backlog=2048, access_log=False),
        listen=SimpleNamespace(host="127.0.0.1", port=port),
        tls=SimpleNamespace(min_version="1.2"),
        trusted_proxies=[],
        issuer_url="https://localhost",
    )


def main() -> None:
    engine, stack, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cert = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    key = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    settings = _settings(engine, port)
    if stack == "bastion":
        from bastion.http.app import create_app

        runtime = SimpleNamespace(
            settings=settings, db=_Ping(), shared=_Ping(), gateway=hello, node_id="bench"
        )
        target = create_app(runtime)
    else:
        target = hello
    if engine == "granian-cli":
        from granian import Granian
        from granian.constants import Interfaces, Loops

        assert stack == "raw", "granian-cli only serves the raw app"
        Granian(
            "hello:app",
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            workers=1,
            runtime_threads=1,
            loop=Loops.uvloop,
            websockets=False,
            log_access=False,
            ssl_cert=cert,
            ssl_key=key,
        ).serve()
        return
    from bastion.http.server import serve_forever

    serve_forever(target, settings=settings, certfile=cert, keyfile=key)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
