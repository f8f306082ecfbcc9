#!/usr/bin/python3
"""Independent DKIM verifier for the tests: Debian's python3-dkim (dkimpy; Ed25519 through
python3-nacl), not libopendkim, which signs. Verifies EVERY DKIM-Signature of each message
(dkim.verify() only checks the first; dual signing needs both).

  dkim_verify.py (--dns 127.0.0.1:PORT | --record NAME=TXT ...) FILE...

Keys come from a real resolver (--dns: dnspython asks it for NAME TXT, the strings of the first
record joined as RFC 6376 §3.6.2.2 says) or from --record pairs (unit tests without DNS).
Prints one JSON line per file: {"file", "signatures": [{"d", "s", "a", "ok"}]} and exits 0
when every file has at least one signature and all of them verify, 1 otherwise, 3 when
python3-dkim (or dnspython / nacl) is missing.
"""
import json
import sys

try:
    import dkim
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import nacl.signing  # noqa: F401  (dkimpy needs it for ed25519-sha256)
except ImportError as e:
    print("missing python module: %s" % e, file=sys.stderr)
    sys.exit(3)


def main(argv):
    records = {}
    server = None
    files = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--dns":
            host, port = argv[i + 1].rsplit(":", 1)
            server = (host, int(port))
            i += 2
        elif a == "--record":
            name, value = argv[i + 1].split("=", 1)
            records[name.rstrip(".").lower()] = value.encode()
            i += 2
        else:
            files.append(a)
            i += 1

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        key = name.rstrip(".").lower()
        if server is None:
            return records.get(key, b"")
        q = dns.message.make_query(name, dns.rdatatype.TXT)
        r = dns.query.udp(q, server[0], port=server[1], timeout=timeout)
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rd in rrset:
                    return b"".join(rd.strings)
        print("%s: no TXT answer (%s)" % (name, dns.rcode.to_text(r.rcode())), file=sys.stderr)
        return b""

    all_ok = True
    for path in files:
        with open(path, "rb") as f:
            msg = f.read()
        d = dkim.DKIM(msg)
        sigs = []
        count = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
        for idx in range(count):
            try:
                ok = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
            except Exception as e:  # a malformed signature is a failure, not a crash
                ok = False
                print("%s: signature %d: %s" % (path, idx, e), file=sys.stderr)
            tags = d.signature_fields if hasattr(d, "signature_fields") else {}
            sigs.append({"d": tags.get(b"d", b"").decode(), "s": tags.get(b"s", b"").decode(),
                         "a": tags.get(b"a", b"").decode(), "ok": ok})
        if not sigs or not all(s["ok"] for s in sigs):
            all_ok = False
        print(json.dumps({"file": path, "signatures": sigs}))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
