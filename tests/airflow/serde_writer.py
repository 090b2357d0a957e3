"""Runs in the Airflow 3.2.1 venv: the real task-sdk serde writer, as a pipe server.

Reads length-prefixed pickles of Python values from stdin and answers each with the JSON text
3.2 stores for it (``json.dumps(airflow.sdk.serde.serialize(value))``), or an error line.
"""

import json
import pickle
import struct
import sys

from airflow.sdk.serde import serialize


def main() -> None:
    read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
    while True:
        header = read(4)
        if len(header) < 4:
            return
        value = pickle.loads(read(struct.unpack(">I", header)[0]))
        try:
            out = json.dumps(serialize(value)).encode()
            status = b"O"
        except Exception as err:  # the writer refusing a value is an answer too
            out = f"{type(err).__name__}: {err}".encode()
            status = b"E"
        write(status + struct.pack(">I", len(out)) + out)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
