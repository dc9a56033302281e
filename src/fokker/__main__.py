import sys

from fokker.cli import main

sys.exit(main())
