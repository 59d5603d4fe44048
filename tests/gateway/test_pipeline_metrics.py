"""The Gateway counts every request in its Metrics: route, outcome and duration."""

from __future__ import annotations

import pytest

from bastion.audit.metrics import NO_ROUTE, Metrics
from bastion.demo.echo import EchoServer
from bastion.gateway.errors import RouteNotFoundError, UnauthenticatedError
from bastion.gateway.pipeline import Gateway
from gateway.gateway_support import call, route


def _counts(metrics: Metrics) -> dict[tuple[str, str], int]:
    return {
        (slot.label, outcome): count
        for slot in metrics._routes.values()
        for outcome, count in slot.counts().items()
    }


async def test_requests_are_counted_by_route_and_outcome(echo: EchoServer) -> None:
    metrics = Metrics(process=False)
    gateway = Gateway(
        [
            route("pub", "/pub", echo.url, public=True),
            route("priv", "/priv", echo.url, public=False, auth=["jwt"]),
        ],
        metrics=metrics,
    )
    assert (await call(gateway, "GET", "/pub/a")).status == 200
    assert (await call(gateway, "GET", "/pub/b")).status == 200
    with pytest.raises(UnauthenticatedError):
        await call(gateway, "GET", "/priv/x")
    with pytest.raises(RouteNotFoundError):
        await call(gateway, "GET", "/nowhere")
    await gateway.shutdown()
    assert _counts(metrics) == {
        ("pub", "allowed"): 2,
        ("priv", "unauthenticated"): 1,
        (NO_ROUTE, "route_not_found"): 1,
    }
    slot = metrics._routes["pub"]
    assert sum(slot.buckets) == 2
    assert slot.sum > 0


async def test_upstream_failure_is_an_upstream_error(echo: EchoServer) -> None:
    metrics = Metrics(process=False)
    gateway = Gateway([route("dead", "/dead", "http://127.0.0.1:9", public=True)], metrics=metrics)
    with pytest.raises(Exception) as caught:
        await call(gateway, "GET", "/dead")
    await gateway.shutdown()
    assert getattr(caught.value, "code", None) == "upstream_unavailable"
    assert _counts(metrics) == {("dead", "upstream_error"): 1}
    assert metrics._routes["dead"].upstream_errors == {"upstream_unavailable": 1}


async def test_without_metrics_nothing_is_counted(echo: EchoServer) -> None:
    gateway = Gateway([route("pub", "/pub", echo.url, public=True)])
    assert gateway.metrics is None
    assert (await call(gateway, "GET", "/pub")).status == 200
    await gateway.shutdown()
