#!/bin/bash
# Interop with independent TLS clients: OpenSSL s_client, GnuTLS gnutls-cli, Python ssl and our
# own `tls-echo client` (project copy of the sectools runner, waits on the echo instead of sleeping).
# usage: run-interop.sh HOST PORT CAFILE
# env:   TLS_ECHO_BIN (tls-echo binary for the `client` check), ECHO_BYTES (default 65536)
# Checks: TLS 1.3 and 1.2 handshakes with chain + IP/host verification and a byte-exact echo per
# client; TLS 1.0/1.1 refused by the server with an alert (OpenSSL at SECLEVEL=0, GnuTLS); a large
# echo; TLS 1.3 resumption
# (informational).
# exit: 0 all passed, 1 a check failed, 2 target unreachable
set -u
HOST=${1:?HOST}; PORT=${2:?PORT}; CA=${3:?CAFILE}
(exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null || { echo "cannot connect to $HOST:$PORT"; exit 2; }
python3 - "$HOST" "$PORT" "$CA" "${ECHO_BYTES:-65536}" "${TLS_ECHO_BIN:-}" <<'PY'
import os, shutil, socket, ssl, subprocess, sys, tempfile, threading, time
T0 = time.monotonic()
host, port, ca, big, tls_echo = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
res = []
def rec(name, ok, detail=""):
    res.append(ok); print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}  [{time.monotonic()-T0:.1f}s]", flush=True)
def run(cmd, data=b"", expect=None, t=10):
    """Feeds `data`, keeps stdin open until `expect` shows up on stdout (or the client exits, or
    `t` seconds pass), then closes stdin so the client ends with close_notify."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, done = bytearray(), threading.Event()
    def pump():
        for chunk in iter(lambda: p.stdout.read1(65536), b""):
            out.extend(chunk)
            if expect is not None and expect in out: done.set()
        done.set()
    th = threading.Thread(target=pump, daemon=True); th.start()
    try:
        p.stdin.write(data); p.stdin.flush()
    except BrokenPipeError:
        pass
    done.wait(t)
    try:
        p.stdin.close()
    except BrokenPipeError:
        pass
    try:
        p.wait(timeout=t)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
    th.join(t)
    return p.returncode, bytes(out)
verify = ["-verify_return_error", "-CAfile", ca, "-verify_hostname" if not host[0].isdigit() else "-verify_ip", host]
for v, want in (("tls1_3", b"TLSv1.3"), ("tls1_2", b"TLSv1.2")):
    msg = f"openssl-{v}-echo\n".encode()
    rc, out = run(["openssl", "s_client", "-connect", f"{host}:{port}", f"-{v}", "-brief", *verify], msg, msg)
    ok = out.count(msg) >= 1 and b"Verification: OK" in out and want in out
    rec(f"openssl s_client -{v} verify+echo", ok, f"rc={rc}")
for v in ("tls1_1", "tls1"):
    rc, out = run(["openssl", "s_client", "-connect", f"{host}:{port}", f"-{v}", "-cipher", "DEFAULT@SECLEVEL=0"])
    # refused by the server: it answers the ClientHello with an alert, no session is made
    rec(f"openssl s_client -{v} refused", rc != 0 and b"Cipher is (NONE)" in out and b"alert" in out, f"rc={rc}")
sess = os.path.join(tempfile.mkdtemp(), "sess.pem")
run(["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_3", "-sess_out", sess, *verify], b"x\n", b"x\n")
rc, out = run(["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_3", "-sess_in", sess, *verify], b"y\n", b"y\n")
print(f"INFO  TLS1.3 resumption with a saved ticket: {'Reused' if b'Reused, TLSv1.3' in out else 'not resumed'}")
shutil.rmtree(os.path.dirname(sess), ignore_errors=True)
if shutil.which("gnutls-cli"):
    for v in ("1.3", "1.2"):
        msg = f"gnutls-{v}-echo\n".encode()
        rc, out = run(["gnutls-cli", "--x509cafile", ca, "--priority", f"NORMAL:-VERS-ALL:+VERS-TLS{v}",
                       "--port", str(port), host], msg, msg)
        # gnutls-cli prints "- Status: The certificate is trusted." after verifying, and fails otherwise
        rec(f"gnutls-cli TLS{v} verify+echo", out.count(msg) >= 1 and b"certificate is trusted" in out, f"rc={rc}")
    for v in ("1.1", "1.0"):
        rc, out = run(["gnutls-cli", "--x509cafile", ca, "--priority", f"NORMAL:-VERS-ALL:+VERS-TLS{v}",
                       "--port", str(port), host])
        rec(f"gnutls-cli TLS{v} refused", rc != 0 and b"Received alert" in out, f"rc={rc}")
else:
    rec("gnutls-cli installed (apt-get install gnutls-bin)", False)
for name, v in (("TLSv1.3", ssl.TLSVersion.TLSv1_3), ("TLSv1.2", ssl.TLSVersion.TLSv1_2)):
    try:
        ctx = ssl.create_default_context(cafile=ca); ctx.minimum_version = ctx.maximum_version = v
        with socket.create_connection((host, port), timeout=5) as s, ctx.wrap_socket(s, server_hostname=host) as t:
            t.sendall(b"python-echo\n"); got = b""
            while not got.endswith(b"\n"):
                d = t.recv(100)
                if not d: break
                got += d
            rec(f"python ssl {name} verify+echo", got == b"python-echo\n", f"{t.version()} {t.cipher()[0]}")
    except Exception as e:
        rec(f"python ssl {name} verify+echo", False, repr(e))
try:
    ctx = ssl.create_default_context(cafile=ca)
    payload = (b"0123456789abcdef" * 4 + b"\n") * (big // 65); got = b""
    with socket.create_connection((host, port), timeout=10) as s, ctx.wrap_socket(s, server_hostname=host) as t:
        t.sendall(payload)
        while len(got) < len(payload):
            d = t.recv(65536)
            if not d: break
            got += d
    rec(f"python ssl {len(payload)}-byte echo", got == payload, f"got {len(got)} bytes")
except Exception as e:
    rec(f"python ssl {big}-byte echo", False, repr(e))
if tls_echo:
    msg = b"tls-echo-client one\ntls-echo-client two\n"
    p = subprocess.run([tls_echo, "client", "--connect", f"{host}:{port}", "--ca", ca],
                       input=msg, capture_output=True, timeout=20)
    rec("tls-echo client verify+echo", p.returncode == 0 and p.stdout == msg,
        f"rc={p.returncode} {p.stderr.decode(errors='replace').strip()[-200:]}")
print(f"interop: {sum(res)} passed, {len(res)-sum(res)} failed")
sys.exit(0 if all(res) else 1)
PY
