// A Node `tls` echo, as a peer for benches/compare.sh: pipe each socket into itself.
//
//   node echo.js CERT KEY 4446
"use strict";
const fs = require("fs");
const tls = require("tls");

const [cert, key, port] = process.argv.slice(2);
const server = tls.createServer(
  { cert: fs.readFileSync(cert), key: fs.readFileSync(key) },
  (socket) => {
    socket.setNoDelay(true);
    socket.on("error", () => socket.destroy());
    socket.pipe(socket);
  },
);
server.on("tlsClientError", () => {});
server.listen(Number(port), "127.0.0.1");
