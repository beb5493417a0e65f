"""The contract's own tests need Lago's document, which this repository may not hold (README.md here): with it
(LAGO_OPENAPI, or shared/contracts/ beside the clone) they run with the rest of the suite; without it they are not
collected, and the pytest header says that responses are not checked."""
from tests.contract import lago

collect_ignore = [] if lago.document_path() is not None else ["test_contract.py", "test_coverage.py"]
