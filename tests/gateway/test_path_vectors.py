"""Python's ``normalize_path`` against ``tests/vectors/normalize_path.json``.

The native normaliser (``native/src/paths.rs``) is tested against the same file, so the
two implementations agree on every vector; regenerate it with
``tests/vectors/make_path_vectors.py`` when the specification changes on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

from bastion.gateway.errors import BadRequestPathError
from bastion.gateway.paths import normalize_path

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "normalize_path.json").read_text())[
    "vectors"
]


def test_the_vectors_cover_every_answer() -> None:
    assert len(VECTORS) > 4000
    refusals = {v["refused"] for v in VECTORS if "refused" in v}
    assert len(refusals) == 10  # every detail normalize_path has
    rewritten = [v for v in VECTORS if "path" in v and v["path"] != v["raw"]]
    assert len(rewritten) > 1000


def test_python_gives_every_vectors_answer() -> None:
    for vector in VECTORS:
        raw = vector["raw"].encode("utf-8")
        if "path" in vector:
            assert normalize_path(raw) == vector["path"], vector
        else:
            try:
                normalize_path(raw)
            except BadRequestPathError as exc:
                assert exc.detail == vector["refused"], vector
            else:
                raise AssertionError(f"not refused: {vector}")
