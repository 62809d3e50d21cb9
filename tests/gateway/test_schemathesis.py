"""Property-based requests from the gateway's own OpenAPI document: never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.gateway.conftest import GatewayServer, auth, gateway_config
from tests.support.fake_server import FakeServer


@pytest.fixture(scope="module")
def live_gateway():
    srv = FakeServer(chunks=2).start()
    gw = GatewayServer(gateway_config([srv.url], rate_limit_rpm=0)).start()
    try:
        gw.wait_polled()
        yield gw
    finally:
        gw.stop()
        srv.stop()


def test_no_server_errors(live_gateway):
    schema = schemathesis.openapi.from_dict(live_gateway.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    seen: dict[str, set[int]] = {}
    for operation in operations:
        statuses = seen.setdefault(operation.label, set())

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(base_url=live_gateway.url, headers=auth(), timeout=30)
            statuses.add(response.status_code)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, response.text

        check()
    # The generator reached both outcomes of the v1 stream: accepted and refused. (Speech
    # requests mostly draw a random voice name, which is a 400 listing the valid ones.)
    assert {200, 400} <= seen["POST /v1/tts/stream"], seen
    assert 400 in seen["POST /v1/audio/speech"], seen
