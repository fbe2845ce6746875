"""pytest's shared setup for tests/: the tests import their helpers as ``helpers`` (tests/helpers.py) whatever
pytest's import mode, and the markers (slow, network, cuda) are declared in pytest.ini with --strict-markers."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
