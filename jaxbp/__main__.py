"""``python -m jaxbp`` is the ``jaxbp`` command."""

import sys

from .cli.main import main

sys.exit(main())
