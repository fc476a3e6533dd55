"""``python -m caduceus_plugin.cli``."""

from __future__ import annotations

import sys

from caduceus_plugin.cli.main import main

sys.exit(main())
