# The SMTP server tests/email.rs mails to: aiosmtpd on loopback, plain, STARTTLS or implicit TLS, with optional AUTH (PLAIN and LOGIN, or LOGIN only), writing each accepted mail as JSON (envelope, headers, decoded parts, who logged in, whether TLS was on) into a directory.
"""Usage: smtp_server.py --port P --out DIR [--tls none|starttls|implicit --cert C --key K]
[--user U --password-file F] [--login-only]

Prints READY once it accepts connections, then serves until killed.
"""

import argparse
import email
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = [
            {"content_type": p.get_content_type(), "body": p.get_content()}
            for p in msg.walk()
            if not p.is_multipart()
        ]
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[k, str(v)] for k, v in msg.items()],
            "content_type": msg.get_content_type(),
            "parts": parts,
            "login": session.auth_data,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
        }
        self.count += 1
        path = os.path.join(self.out, "%04d.json" % self.count)
        # Written whole, then renamed: the test never reads half a mail.
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 OK"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--password-file")
    ap.add_argument("--login-only", action="store_true")
    args = ap.parse_args()

    kwargs = {}
    if args.tls != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        if args.tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=ctx)
    if args.user:
        with open(args.password_file) as f:
            password = f.read().strip()

        def authenticator(server, session, envelope, mechanism, auth_data):
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            if auth_data.login.decode() == args.user and auth_data.password.decode() == password:
                return AuthResult(success=True, auth_data=auth_data.login.decode())
            # handled=False: aiosmtpd answers 535 itself (handled=True would leave it silent).
            return AuthResult(success=False, handled=False)

        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # Over implicit TLS aiosmtpd does not know the connection is encrypted.
            auth_require_tls=args.tls == "starttls",
        )
        if args.login_only:
            kwargs.update(auth_exclude_mechanism=["PLAIN"])

    controller = Controller(Recorder(args.out), hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
