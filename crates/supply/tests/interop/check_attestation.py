#!/usr/bin/env python3
"""Checks a Gantry attestation with the reference implementations of its specs.

    check_attestation.py PACKAGE ENVELOPE TRUSTED_KEYS

- securesystemslib's DSSE Envelope verifies the signature with the trusted ed25519 keys;
- in-toto-attestation's protobuf Statement v1 parses the payload strictly (unknown fields are
  errors) and its validate() runs;
- in-toto-attestation's SLSA Provenance v1 protobuf parses the predicate strictly;
- the package's sha256 is a subject.

Needs `pip install in-toto-attestation securesystemslib cryptography`. Prints `ok` or fails.
"""
import base64
import hashlib
import json
import sys

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

package_path, envelope_path, trusted_path = sys.argv[1:4]
envelope = Envelope.from_dict(json.load(open(envelope_path)))
keys = [
    SSlibKey(key["keyid"], "ed25519", "ed25519", {"public": base64.b64decode(key["public_key"]).hex()})
    for key in json.load(open(trusted_path))["keys"]
    if key["status"] != "revoked"
]
envelope.verify(keys, 1)
assert envelope.payload_type == "application/vnd.in-toto+json", envelope.payload_type

statement_pb = json_format.Parse(envelope.payload, statement_pb2.Statement(), ignore_unknown_fields=False)
Statement.copy_from_pb(statement_pb).validate()
assert statement_pb.predicate_type == "https://slsa.dev/provenance/v1", statement_pb.predicate_type
statement = json.loads(envelope.payload)
json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance(), ignore_unknown_fields=False)

digest = hashlib.sha256(open(package_path, "rb").read()).hexdigest()
assert digest in [s["digest"].get("sha256") for s in statement["subject"]], digest
print("ok")
