// The Socket.IO peer of `scripts/bench`: a room-broadcast chat server with
// no persistence. A client joins the rooms named in its handshake query
// (`rooms=a,b`); a `send` event {room, body, id} is acknowledged with
// {id} and broadcast to the room (sender's sockets included) as `message`.
// That is the least a chat server does; chatflow also authenticates,
// validates, persists, orders by seq and indexes.
//
//   node socketio-server.mjs [port]     (prints "listening <port>")

import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 0);
const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 64 * 1024,
});

let seq = 0;
io.on("connection", (socket) => {
  const rooms = String(socket.handshake.query.rooms || "").split(",").filter(Boolean);
  for (const room of rooms) socket.join(room);
  socket.on("send", (msg, ack) => {
    if (!msg || typeof msg.room !== "string" || typeof msg.body !== "string") return;
    seq += 1;
    if (typeof ack === "function") ack({ id: msg.id, seq });
    io.to(msg.room).emit("message", { room: msg.room, body: msg.body, seq });
  });
});

http.listen(port, "127.0.0.1", () => {
  console.log(`listening ${http.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
