"""tests/ on the path too, for the scripted origin (redirects, hostile playlists)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
