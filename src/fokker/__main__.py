"""`python -m fokker`: the `fokker` command."""

import sys

from fokker.cli import main

sys.exit(main())
