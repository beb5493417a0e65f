from tests.integration.payments.stripe_fixtures import localstripe, stripe_env, webhook_endpoint  # noqa: F401
