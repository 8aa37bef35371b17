"""`python -m runctl.devcluster up|down|env`: the local control plane for people."""

import sys

from runctl.devcluster.cluster import main

sys.exit(main())
