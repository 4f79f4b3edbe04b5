"""Shared paths and helpers of the pcap unit tests (no tests here)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data" / "pcap"
GOLDEN = json.loads((DATA / "golden.json").read_text())
PCAPSTAT = ROOT / "tools" / "pcapstat.py"
