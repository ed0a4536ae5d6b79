#!/usr/bin/env python3
"""Entry point for the kernel harness CLI (see ipvs_vm/__main__.py).

Python puts this script's directory (tests/kernel) first on ``sys.path``, which is
where the ``ipvs_vm`` package lives.
"""

import sys

from ipvs_vm.__main__ import main

sys.exit(main())
