# aiosmtpd (PyPI) requiring AUTH; saves each message with its envelope and whether the
# session was TLS. Modes: `plain`; `starttls` (AUTH and mail only after STARTTLS);
# `implicit` (TLS from the first byte, port-465 style). The TLS modes take a certificate
# and key.
import json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, outdir, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Handler:
    async def handle_DATA(self, server, session, envelope):
        tls = server.transport.get_extra_info("ssl_object")
        n = len(os.listdir(outdir))
        with open(os.path.join(outdir, f"{n}.json"), "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "tls": tls.version() if tls else None,
                       "authenticated": session.authenticated,
                       "content": envelope.content.decode("utf-8", "replace")}, f)
        return "250 OK"
def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"backups" and auth_data.password == b"relay-pass-123"
    # handled=False: let aiosmtpd answer a failure with 535 (the default means "already answered").
    return AuthResult(success=ok, handled=False)
if mode == "plain":
    tls = dict(auth_require_tls=False)
else:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    # aiosmtpd only knows about TLS it started itself (STARTTLS): with implicit TLS its
    # auth_require_tls would hide AUTH on a connection that is encrypted from the start.
    tls = {"starttls": dict(tls_context=context, require_starttls=True, auth_require_tls=True),
           "implicit": dict(ssl_context=context, auth_require_tls=False)}[mode]
Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator,
           auth_required=True, **tls).start()
while True:
    time.sleep(3600)
