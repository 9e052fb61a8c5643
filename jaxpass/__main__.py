"""``python -m jaxpass`` = the ``jaxpass`` command."""

import sys

from jaxpass.cli import main

sys.exit(main())
