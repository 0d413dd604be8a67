"""`python -m llama_operator` is the console script."""

import sys

from llama_operator.cli import main

sys.exit(main())
