#!/usr/bin/env python3
"""Entry point for the kernel harness CLI (see ipvs_vm/__main__.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ipvs_vm.__main__ import main  # noqa: E402

sys.exit(main())
