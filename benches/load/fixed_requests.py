"""Sends a fixed number of identical OFREP POSTs on one keep-alive connection.

Usage: fixed_requests.py HOST:PORT PATH COUNT (token in OFREP_TOKEN, context in
OFREP_CONTEXT). Exits non-zero on any answer other than 200, so a profile is never taken
of error paths by mistake. Used by callgrind.sh, where only the server's instructions
are counted and this client's speed does not matter.
"""

import http.client
import os
import sys

addr, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
host, port = addr.rsplit(":", 1)
body = '{"context":%s}' % os.environ["OFREP_CONTEXT"]
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["OFREP_TOKEN"]}
conn = http.client.HTTPConnection(host, int(port), timeout=60)
for _ in range(count):
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"fixed_requests.py: POST {path} answered {response.status}")
conn.close()
