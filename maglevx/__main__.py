"""``python -m maglevx``."""

import sys

from maglevx.cli import main

sys.exit(main())
