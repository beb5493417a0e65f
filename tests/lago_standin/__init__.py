"""A Lago stand-in for the migration tests: Lago's REST shapes from fixtures, on 127.0.0.1."""
from tests.lago_standin.server import LagoStandIn  # noqa: F401
