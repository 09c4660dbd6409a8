"""Parses and validates a NACHA file with `achkit` (an independent ACH parser from PyPI).

Usage: python parse_nacha.py < file.ach

Prints one JSON line: {"ok": bool (achkit's reconciliation of counts, totals, entry hash,
blocking and routing checksums), "errors": [...], "file": achkit's parse (file header fields,
batches with their entries and control records, file control)}.
"""

import json
import sys

import achkit


def main():
    text = sys.stdin.read()
    report = achkit.validate(text)
    try:
        parsed = achkit.parse(text)
    except achkit.AchError as error:
        parsed = {"error": str(error)}
    print(json.dumps({"ok": report["ok"], "errors": report["errors"], "file": parsed}))


if __name__ == "__main__":
    main()
