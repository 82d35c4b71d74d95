"""``python -m jaxbp`` is the ``jaxbp`` command."""

import sys

try:
    from .cli.main import main
except KeyboardInterrupt:  # Ctrl-C while JAX is still being imported: one line, not a traceback
    print("jaxbp: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
