"""The admin login: locked out after repeated wrong passwords (django-axes), passwords checked by Django's validators."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.utils import timezone

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"


def _login(client, password: str):
    return client.post(LOGIN, {"username": "ops", "password": password})


def _logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_wrong_passwords_lock_the_login_until_the_cool_off_ends(client, settings):
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            response = _login(client, "wrong")
            assert response.status_code == 200  # the form again, with its error
            assert not response.wsgi_request.user.is_authenticated
        assert _login(client, "wrong").status_code == 429  # the limit reached: locked out

        refused = _login(client, PASSWORD)
        assert refused.status_code == 429 and not _logged_in(refused)
        assert "_auth_user_id" not in client.session

        # Each attempt while locked starts the cool-off again (axes' default), so hammering never gets through.
        last = start + settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
        clock.move_to(last)
        assert _login(client, PASSWORD).status_code == 429  # still locked a second before the end

        clock.move_to(last + settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
        assert _login(client, "wrong").status_code == 429
        last = last + settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
        clock.move_to(last + settings.AXES_COOLOFF_TIME + timedelta(seconds=1))
        assert _logged_in(_login(client, PASSWORD))
        assert client.session["_auth_user_id"] == str(get_user_model().objects.get(username="ops").pk)


def test_another_username_from_the_same_address_is_not_locked(client, settings):
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    get_user_model().objects.create_superuser("desk", "desk@example.com", PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "wrong")
    assert _login(client, PASSWORD).status_code == 429
    assert _logged_in(client.post(LOGIN, {"username": "desk", "password": PASSWORD}))


def test_password_validators_refuse_short_common_and_numeric_passwords():
    user = get_user_model()(username="ops", email="ops@example.com")
    for weak in ("short-pw", "password1234", "123456789012", "ops@example.com"):
        with pytest.raises(ValidationError):
            password_validation.validate_password(weak, user)
    password_validation.validate_password(PASSWORD, user)
