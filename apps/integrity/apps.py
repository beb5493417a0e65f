from django.apps import AppConfig


class IntegrityConfig(AppConfig):
    name = "apps.integrity"
    label = "integrity"
    verbose_name = "Billing integrity"
