"""Operations docs/lago-deviations.yaml lists as deliberately absent answer Lago's 404 body (issue 21, step 8)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method,path", [
    ("get", "/api/v1/features"), ("post", "/api/v1/features"), ("put", "/api/v1/features/seats"),
    ("patch", "/api/v1/plans/pro/entitlements"), ("get", "/api/v1/subscriptions/sub-1/entitlements"),
    ("delete", "/api/v1/plans/pro/entitlements/seats/privileges/max"),
])
def test_entitlements_answer_lagos_not_found(cloud, method, path):
    response = getattr(cloud, method)(path, {"feature": {"code": "seats"}} if method in ("post", "put", "patch")
                                      else None, format="json")
    assert response.status_code == 404
    assert response.json()["status"] == 404 and response.json()["error"] == "Not Found"
