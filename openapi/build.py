"""Write the packaged JSON copy of openapi/openapi.yaml, which the gateway serves.

    .venv/bin/python openapi/build.py          # rewrite dicomweb_gw/http/openapi.json
    .venv/bin/python openapi/build.py --check  # exit 1 if the copy is stale

The YAML is the one source of truth (anchors keep /dicom-web and
/pacs/{pacs}/dicom-web identical); the JSON exists because the installed
gateway must not need a YAML parser. tests/test_openapi.py fails when they differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "openapi" / "openapi.yaml"
PACKAGED = ROOT / "dicomweb_gw" / "http" / "openapi.json"


def load_source() -> dict[str, Any]:
    with SOURCE.open(encoding="utf-8") as stream:
        document = yaml.safe_load(stream)
    assert isinstance(document, dict)
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(load_source())
    if "--check" in argv:
        current = PACKAGED.read_text(encoding="utf-8") if PACKAGED.exists() else ""
        if current != text:
            print(f"{PACKAGED} is stale: run python openapi/build.py", file=sys.stderr)
            return 1
        return 0
    PACKAGED.write_text(text, encoding="utf-8")
    print(f"wrote {PACKAGED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
