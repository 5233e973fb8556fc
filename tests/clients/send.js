// Send one message with nodemailer for tests/integration/test_clients_round2.py.
// Usage: node send.js '{"port":2587,"secure":false,"ca":"cert.pem","method":"PLAIN",
//                      "user":"...","pass":"..." | "token":"...","from":"...","to":"...","subject":"..."}'
// Prints one JSON line {"ok":true,"response":"250 ..."} or {"ok":false,"code":...,"response":"..."}
// and exits 0 / 1. Loopback only; the certificate is checked against the given CA file.
'use strict';
const fs = require('fs');
const nodemailer = require('nodemailer');

const a = JSON.parse(process.argv[2]);
const auth = a.method === 'XOAUTH2'
    ? { type: 'OAuth2', user: a.user, accessToken: a.token }
    : { user: a.user, pass: a.pass };
const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: a.port,
    secure: a.secure,
    requireTLS: !a.secure,
    authMethod: a.method,
    auth,
    tls: { ca: [fs.readFileSync(a.ca)] },
    connectionTimeout: 20000,
    greetingTimeout: 20000,
    socketTimeout: 20000,
});
transport.sendMail({ from: a.from, to: a.to, subject: a.subject, text: 'sent by nodemailer\n' })
    .then((info) => {
        console.log(JSON.stringify({ ok: true, response: info.response }));
        process.exit(0);
    })
    .catch((err) => {
        console.log(JSON.stringify({ ok: false, code: err.code || null, responseCode: err.responseCode || null,
                                     response: err.response || String(err.message) }));
        process.exit(1);
    });
