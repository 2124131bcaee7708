#!/usr/bin/env python3
"""Run Knitfab from a checkout: ``python knitfab.py serve ...`` is ``knitfab serve ...``.

The ``knitfab/`` package beside this file wins on import, so this script stays a launcher.
"""

import sys

from knitfab.__main__ import main

sys.exit(main())
