"""`python -m llamaops_sandbox`: the same as the `llamaops-sandbox` command."""

import sys

from llamaops_sandbox.cli import main

sys.exit(main())
