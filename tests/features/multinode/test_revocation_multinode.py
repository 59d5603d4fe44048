"""End to end, scale-out: three ``bastion serve`` processes sharing PostgreSQL and Redis.

DESIGN.md: "Scale-out is N identical stateless bastion processes behind any load
balancer, sharing PostgreSQL and Redis", and "revocation tests run 3 bastion
processes on one Redis + PostgreSQL". Each check here makes a change through
one node (or the CLI, a fourth process) and expects every node to honour it on
the very next request:

- an API key revoked with ``bastion keys revoke`` is refused by all three;
- an access token issued by node 1 works on nodes 2 and 3, and once revoked at
  node 2's ``/oauth2/revoke`` it is refused by all three;
- a client disabled with ``bastion clients disable`` can no longer get tokens
  from any node, and its outstanding tokens stop working;
- an unknown key is looked up once by each node (``bastion_native_lookups_total``) and
  refused natively; a key created with the CLI makes every node forget its refusals.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support import BastionProcess, EchoThread, run_cli
from _support.native import feed_changes, native_lookups, until_feed_past
from _support.nodes import Nodes as Cluster


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def cluster(
    tmp_path: Path, echo: EchoThread, postgres_url: str, redis_url: str, redis_prefix: str
) -> Iterator[Cluster]:
    (tmp_path / "bastion.yaml").write_text(
        # The nodes of one cluster share one issuer (each would derive its own from its port).
        "issuer: https://localhost:8443\n"
        f"storage: {postgres_url}\n"
        f"shared: {{url: '{redis_url}', key_prefix: '{redis_prefix}'}}\n"
        "routes:\n"
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [api_key, jwt]\n"
        "    scopes: [orders:read]\n"
    )
    cluster = Cluster(tmp_path)
    result = run_cli("migrate", "-c", "bastion.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    try:
        for index in range(3):
            # One after the other: the first creates the signing key, the others load it.
            node = BastionProcess(
                "-c", "bastion.yaml", env={"BASTION_NODE_ID": f"node-{index + 1}"}, cwd=tmp_path
            )
            cluster.nodes.append(node.start())
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.timeout(300)
def test_changes_through_one_node_reach_every_node(cluster: Cluster) -> None:
    # One cluster for every check: starting three servers is the slow part.
    api_key_revocation_reaches_every_node(cluster)
    refusals_are_forgotten_on_every_node_when_a_key_is_created(cluster)
    token_revoked_at_one_node_is_refused_by_all(cluster)
    disabled_client_is_refused_everywhere(cluster)


def refused_everywhere_within_a_second(cluster: Cluster, auth: dict[str, str]) -> None:
    """Every node refuses ``auth`` within a second of the change (the product's promise: pub/sub
    usually delivers before the next request, but a loaded machine may delay it)."""
    deadline = time.monotonic() + 1.0
    while (statuses := cluster.statuses("/api/orders", auth)) != [401, 401, 401]:
        assert time.monotonic() < deadline, f"still {statuses} a second after the change"
        time.sleep(0.05)


def api_key_revocation_reaches_every_node(cluster: Cluster) -> None:
    key = cluster.cli("keys", "create", "shared", "--scope", "orders:read")
    auth = {"Authorization": f"Bearer {key['key']}"}
    assert cluster.statuses("/api/orders", auth) == [200, 200, 200]

    followed = [feed_changes(node.url) for node in cluster.nodes]
    cluster.cli("keys", "revoke", key["id"])
    refused_everywhere_within_a_second(cluster, auth)
    # The feed's copy of the revocation may follow pub/sub's: wait for it on every node, or
    # it would drop the refusal cache the next check counts lookups of.
    for node, before in zip(cluster.nodes, followed, strict=True):
        until_feed_past(node.url, before)


def _planes(cluster: Cluster, headers: dict[str, str]) -> list[tuple[int, str]]:
    """(status, request-id prefix: which plane answered) of ``GET /api/orders`` at each node."""
    out = []
    for node in cluster.nodes:
        with httpx.Client(base_url=node.url, verify=False, timeout=10) as http:
            response = http.get("/api/orders", headers=headers)
        out.append((response.status_code, response.headers["x-request-id"].rsplit("-", 1)[0]))
    return out


def _refused_lookups(cluster: Cluster) -> list[int]:
    """Each node's ``bastion_native_lookups_total{kind="api_key", outcome="refused"}``."""
    out = []
    for node in cluster.nodes:
        with httpx.Client(base_url=node.url, verify=False, timeout=10) as http:
            out.append(native_lookups(http).get(("api_key", "refused"), 0))
    return out


def refusals_are_forgotten_on_every_node_when_a_key_is_created(cluster: Cluster) -> None:
    from bastion.crypto import generate_api_key

    auth = {"Authorization": f"Bearer {generate_api_key()}"}
    before = _refused_lookups(cluster)
    first = _planes(cluster, auth)  # each node's native plane looks it up (one lookup)
    again = _planes(cluster, auth)  # and refuses it from its cache
    assert [status for status, _ in first + again] == [401] * 6
    assert [prefix for _, prefix in first] == [prefix for _, prefix in again]
    looked_up = _refused_lookups(cluster)
    assert looked_up == [n + 1 for n in before]
    key = cluster.cli("keys", "create", "late", "--scope", "orders:read")
    # Looked up again on every node (each node's refusal forgotten): a node that forgot it
    # once is done (its lookup has just refused, and pushed, it again).
    forgot = [False] * len(cluster.nodes)
    deadline = time.monotonic() + 2.0
    while not all(forgot):
        assert time.monotonic() < deadline, "a refusal outlived a key creation"
        assert [status for status, _ in _planes(cluster, auth)] == [401] * 3
        now = _refused_lookups(cluster)
        for index, (count, was) in enumerate(zip(now, looked_up, strict=True)):
            forgot[index] = forgot[index] or count > was
    assert cluster.statuses("/api/orders", {"Authorization": f"Bearer {key['key']}"}) == [200] * 3


def token_revoked_at_one_node_is_refused_by_all(cluster: Cluster) -> None:
    client = cluster.cli(
        "clients", "create", "svc", "--grant", "client_credentials", "--scope", "orders:read"
    )
    credentials = (client["client_id"], client["client_secret"])
    first, second, _ = cluster.nodes
    with httpx.Client(base_url=first.url, verify=False, timeout=10) as http:
        response = http.post(
            "/oauth2/token", auth=credentials, data={"grant_type": "client_credentials"}
        )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert cluster.statuses("/api/orders", auth) == [200, 200, 200]

    with httpx.Client(base_url=second.url, verify=False, timeout=10) as http:
        revoked = http.post("/oauth2/revoke", auth=credentials, data={"token": token})
    assert revoked.status_code == 200, revoked.text
    refused_everywhere_within_a_second(cluster, auth)


def disabled_client_is_refused_everywhere(cluster: Cluster) -> None:
    client = cluster.cli(
        "clients", "create", "svc", "--grant", "client_credentials", "--scope", "orders:read"
    )
    credentials = (client["client_id"], client["client_secret"])
    with httpx.Client(base_url=cluster.nodes[2].url, verify=False, timeout=10) as http:
        token = http.post(
            "/oauth2/token", auth=credentials, data={"grant_type": "client_credentials"}
        ).json()["access_token"]
    assert cluster.statuses("/api/orders", {"Authorization": f"Bearer {token}"}) == [200] * 3

    cluster.cli("clients", "disable", client["client_id"])
    for node in cluster.nodes:
        with httpx.Client(base_url=node.url, verify=False, timeout=10) as http:
            refused = http.post(
                "/oauth2/token", auth=credentials, data={"grant_type": "client_credentials"}
            )
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_client"
