"""Runs `python -m config check|render|smoke`."""

import sys

from .cli import main

sys.exit(main())
