"""End to end: ``bastion serve`` as a user starts it, over real HTTPS.

Covers the foundation's acceptance: the demo route proxies to the echo
upstream, unmatched paths are never proxied, health and readiness work, and
start-up failures are one actionable line with a non-zero exit.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from _support import BastionProcess, free_port, run_cli, tcp_proxy


def _client(proc: BastionProcess) -> httpx.Client:
    return httpx.Client(base_url=proc.url, verify=False, timeout=10)


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    # start-up notices (development defaults) may precede it; the error is one line, last
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    return errors[0]


def test_demo_serves_https_health_and_proxies_demo_route(tmp_path: Path) -> None:
    with BastionProcess("--demo", cwd=tmp_path) as proc:
        assert proc.url.startswith("https://")
        notices = " ".join(e.get("message", "") for e in proc.events if e.get("event") == "notice")
        assert "SQLite" in notices and "self-signed" in notices
        with _client(proc) as client:
            health = client.get("/healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
            assert health.headers["strict-transport-security"].startswith("max-age=")
            assert health.headers["x-content-type-options"] == "nosniff"
            assert len(health.headers["x-request-id"]) >= 8

            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {
                "database": "ok",
                "shared_state": "ok",
                "change_feed": "ok",
            }

            echoed = client.post("/demo/hello?x=1", content=b"ping")
            assert echoed.status_code == 200
            body = echoed.json()
            assert body["path"] == "/demo/hello"
            assert body["query"] == "x=1"
            assert body["body"] == "ping"

            missing = client.get("/not-a-route")
            assert missing.status_code == 404
            assert missing.headers["content-type"].startswith("application/problem+json")
            assert missing.json()["reason"] == "route_not_found"
    # development defaults were created in ./.bastion with private permissions
    data = tmp_path / ".bastion"
    assert (data / "bastion.db").exists()
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
    assert proc.stop() == 0


def test_graceful_stop_exits_zero(tmp_path: Path) -> None:
    proc = BastionProcess("--demo", cwd=tmp_path).start()
    assert proc.stop() == 0
    assert "Traceback" not in proc.stderr


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("listen:\n  port: 70000\n")
    result = run_cli("serve", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "listen.port" in line and "70000" in line


def test_check_config_reports_errors_and_success(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(
        "routes:\n  - name: up\n    match: {path: /up}\n"
        "    upstream: http://127.0.0.1:9\n    public: true\n"
    )
    result = run_cli("check-config", "-c", str(config), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"valid": true' in result.stdout

    config.write_text("routes:\n  - name: up\n    match: {path: /up}\n    upstream: http://x\n")
    result = run_cli("check-config", "-c", str(config), cwd=tmp_path)
    line = _one_error_line(result)
    assert "routes[0]" in line and "public: true" in line


def test_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    result = run_cli(
        "serve", "--demo", env={"BASTION_DATA_DIR": str(blocker / "sub")}, cwd=tmp_path
    )
    line = _one_error_line(result)
    assert "data_dir" in line


def test_corrupt_master_key_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / ".bastion"
    data.mkdir(mode=0o700)
    key = data / "master.key"
    key.write_text("this is not a key\n")
    os.chmod(key, 0o600)
    line = _one_error_line(run_cli("serve", "--demo", cwd=tmp_path))
    assert "master key" in line and "corrupt" in line
    assert "this is not a key" not in line


def test_an_openssl_master_key_fails_check_config_as_serve_does(tmp_path: Path) -> None:
    # Issue 13: `openssl rand -hex 32 > master.key` passed check-config, then serve said "corrupt".
    key = tmp_path / "master.key"
    key.write_text("9f" * 32 + "\n")
    os.chmod(key, 0o600)
    env = {"BASTION_SECRETS__MASTER_KEY_FILE": str(key)}
    expected = (
        f"error: master key file {key} is corrupt (line 1 is not a bastion master key: it looks "
        "like hex, e.g. from `openssl rand -hex 32`); a new installation creates its key file "
        "with `bastion secrets init-master-key PATH` — if secrets were already sealed under "
        "this file, restore it from your backup instead"
    )
    checked = run_cli("check-config", env=env, cwd=tmp_path)
    assert checked.returncode == 2
    assert _one_error_line(checked) == expected
    assert _one_error_line(run_cli("serve", env=env, cwd=tmp_path)) == expected
    assert "9f9f" not in checked.stderr
    # The documented fix: a key file bastion made; check-config and serve accept it.
    made = tmp_path / "etc" / "master.key"
    created = run_cli("secrets", "init-master-key", str(made), "--json", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    env = {"BASTION_SECRETS__MASTER_KEY_FILE": str(made)}
    assert run_cli("check-config", env=env, cwd=tmp_path).returncode == 0
    with BastionProcess("--demo", env=env, cwd=tmp_path) as proc:
        assert httpx.get(proc.url + "/healthz", verify=False).status_code == 200


def test_database_down_at_startup_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/bastion"
    line = _one_error_line(run_cli("serve", env={"BASTION_STORAGE": url}, cwd=tmp_path))
    assert f"127.0.0.1:{port}" in line
    assert "hunter2" not in line


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        line = _one_error_line(run_cli("serve", "--port", str(port), cwd=tmp_path))
        assert str(port) in line


@pytest.mark.postgres
def test_database_outage_while_serving_fails_readyz_then_recovers(
    tmp_path: Path, postgres_url: str
) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_url)
    assert run_cli("migrate", env={"BASTION_STORAGE": postgres_url}, cwd=tmp_path).returncode == 0
    with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        via_proxy = postgres_url.replace(f":{parts.port}/", f":{proxy.port}/")
        proc = BastionProcess("--demo", env={"BASTION_STORAGE": via_proxy}, cwd=tmp_path)
        with proc, _client(proc) as client:
            assert client.get("/readyz").status_code == 200
            proxy.cut()
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.headers["content-type"].startswith("application/problem+json")
            problem = down.json()
            assert problem["reason"] == "not_ready"
            assert "database" in str(problem)
            assert client.get("/healthz").status_code == 200  # liveness unaffected
            proxy.restore()
            deadline = time.monotonic() + 15
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "did not recover"
                time.sleep(0.2)
