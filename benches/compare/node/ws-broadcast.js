// The seeds' chat server on Node `ws`: every message goes to every open client (the
// sender included, as wshub.v1 sends a publish to every member of its room).
//
//   PORT=9001 node ws-broadcast.js
//   DEFLATE=1     offer permessage-deflate (ws compresses every send on its own)
//   JWT_SECRET=s  refuse upgrades without ?token=<HS256 JWT signed with s> (401)
'use strict';
const { WebSocketServer, WebSocket } = require('ws');
const jwt = require('jsonwebtoken');

const port = Number(process.env.PORT || 9001);
const secret = process.env.JWT_SECRET;

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  // ws's own default is on with a 1 KiB threshold; off unless asked, as the other
  // peers, so the uncompressed scenarios compare like with like.
  perMessageDeflate: process.env.DEFLATE === '1',
  verifyClient: secret
    ? (info, done) => {
        const token = new URL(info.req.url, 'http://x').searchParams.get('token');
        jwt.verify(token || '', secret, { algorithms: ['HS256'] }, (err) => done(!err, 401));
      }
    : undefined,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
  ws.on('error', () => {});
});
wss.on('listening', () => console.log(`ws-broadcast listening on ${port}`));
