"""Container images without a registry: a private Docker engine, a local base image, the builds.

`python -m devcluster.images up|base|build|down|status` — see `devcluster.images.cli`.
"""
