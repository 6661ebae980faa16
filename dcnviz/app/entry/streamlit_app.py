"""The dcnviz app as installed with the package: `dcnviz app` runs this script (see dcnviz/app/router.py)."""

from dcnviz.app.router import run

run()
