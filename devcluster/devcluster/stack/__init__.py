"""This project's own stack on devcluster: the demo and what the e2e tests share.

``mlstack`` (the images, the CRD, the operator, the artifact store, MLModels and predictions),
``demo`` (``python -m devcluster.stack.demo up|down``, what ``make demo`` runs) and
``prometheus`` (``python -m devcluster.stack.prometheus build``: the Prometheus the monitoring
tests run). It builds on ``devcluster.kube`` and ``devcluster.images``; neither, nor the
top-level modules, imports it.
"""
