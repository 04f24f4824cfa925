// Socket.IO 4.8: every `msg` event goes to every socket (io.emit, the sender
// included), websocket transport only.
//
//   PORT=9002 node socketio.js   (PORT=0: a free port, the one printed)
//   DEFLATE=1     offer permessage-deflate
//   JWT_SECRET=s  refuse connections without ?token=<HS256 JWT signed with s>
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const jwt = require('jsonwebtoken');

const port = Number(process.env.PORT || 9002);
const secret = process.env.JWT_SECRET;

const server = http.createServer();
const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: process.env.DEFLATE === '1',
});
if (secret) {
  io.use((socket, next) => {
    jwt.verify(socket.handshake.query.token || '', secret, { algorithms: ['HS256'] }, (err) =>
      next(err ? new Error('unauthorized') : undefined),
    );
  });
}
io.on('connection', (socket) => {
  socket.on('msg', (data) => io.emit('msg', data));
});
server.listen(port, '127.0.0.1', () =>
  console.log(`socketio listening on ${server.address().port}`),
);
