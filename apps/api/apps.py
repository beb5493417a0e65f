from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "apps.api"
    label = "api"

    def ready(self) -> None:
        from . import openapi  # noqa: F401  registers the bearer scheme before any document is built
