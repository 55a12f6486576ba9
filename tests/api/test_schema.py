"""The OpenAPI schema, checked by schemathesis against the live agent: no 500s, every
response (errors too) matches what the schema promises. Bounded examples, so it stays fast."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.api.live_agent import LiveAgent, write_locker

EXAMPLES = 20
"""Per operation and mode (valid and invalid input): about 30 x 2 x 20 requests."""


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAgent]:
    with LiveAgent(write_locker(tmp_path_factory.mktemp("schema"))) as live:
        live.deposit("p-1", "48291377")
        yield live


def test_every_operation_keeps_its_schema(live_api: LiveAgent) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {live_api.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), database=None)
        def keeps_its_schema(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, timeout=10)
            assert response.status_code < 500

        try:
            keeps_its_schema()
        except Unsatisfiable:
            # an operation without inputs has no invalid request to make
            assert mode is GenerationMode.NEGATIVE, operation.label
