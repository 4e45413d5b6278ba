"""`python -m model_server.download REQUEST`: the child process that downloads an artifact.

Run by `storage.Download`, so the server process never imports the S3 and HTTP
clients. REQUEST is JSON: the URI, the target directory and what decides the served file
(`format`, `sha256`, `compiled`: the server's settings of those names). Exit 0 when the card
and the model file are in the target; DOWNLOAD_FAILED for an ArtifactError, with its "uri"
(the file it was about), "reason" and "message" as JSON on stdout; anything else is a crash,
its traceback on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mlmodel_artifact import ArtifactError, ModelCard, ModelFormat, fetch_artifact
from model_server.storage import DOWNLOAD_FAILED, choose_format


def main(argv: Sequence[str]) -> int:
    request = json.loads(argv[0])

    def served(card: ModelCard) -> list[ModelFormat]:
        return [choose_format(card, request["format"], request["sha256"], request["compiled"])]

    try:
        fetch_artifact(request["uri"], Path(request["target"]), served)
    except ArtifactError as exc:
        print(json.dumps({"uri": exc.uri, "reason": exc.reason, "message": exc.message}))
        return DOWNLOAD_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
