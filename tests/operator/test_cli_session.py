"""The one line a person reads when the API server refuses a `runctl` command's request."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from runctl.cli.session import Failed, Session


class _Refusing:
    """A CustomObjectsApi whose every call is answered with one HTTP status."""

    def __init__(self, status: int, body: str = "") -> None:
        self.status, self.body = status, body

    def __getattr__(self, name: str) -> Any:
        def call(*args: object, **kwargs: object) -> None:
            exc = ApiException(status=self.status, reason="Refused")
            exc.body = self.body
            raise exc
        return call


class _Session(Session):
    @property
    def custom(self) -> Any:
        return self.api


@pytest.mark.parametrize(("status", "body", "said"), [
    pytest.param(404, "", "this cluster does not serve runctl.dev/v1alpha1 StoryRuns: runctl's "
                 "CRDs are not installed (kubectl apply -f crds/, or helm install runctl "
                 "deploy/helm/runctl)", id="CRDs missing"),
    pytest.param(403, '{"message": "storyruns.runctl.dev \\"x\\" is forbidden"}',
                 'no permission for storyrun x in namespace data: storyruns.runctl.dev "x" is '
                 "forbidden", id="no permission"),
    pytest.param(401, "", "the API server refused the credentials: 401 Unauthorized",
                 id="credentials"),
    pytest.param(500, "", "the API server refused storyrun x in namespace data: 500 Refused",
                 id="anything else"),
])
def test_a_refusal_is_one_line_naming_the_run(status: int, body: str, said: str) -> None:
    session = _Session(_Refusing(status, body), "data")  # type: ignore[arg-type]
    with pytest.raises(Failed) as caught:
        session.get_run("x")
    assert str(caught.value) == said
