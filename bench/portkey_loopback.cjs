// bench/portkey_loopback.cjs - preloaded into the Portkey gateway by
// bench/portkey.sh (node --require). Its start script (build/start-server.js)
// calls @hono/node-server's serve({port}) with no hostname, which would listen
// on every interface; this forces every TCP listen() of the process onto
// 127.0.0.1 (the bench has no network but loopback, and nothing else should
// reach the gateway). Unix-socket and fd listens are left alone.
'use strict';
const net = require('net');
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  if (a0 !== null && typeof a0 === 'object' && !Array.isArray(a0)) {
    if (a0.path === undefined && a0.fd === undefined && a0.handle === undefined && a0._handle === undefined)
      args[0] = { ...a0, host: '127.0.0.1' };
  } else if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
    // listen(port[, host][, backlog][, cb]): replace or insert the host
    if (typeof args[1] === 'string' || args[1] === undefined || args[1] === null) args[1] = '127.0.0.1';
    else args.splice(1, 0, '127.0.0.1');
  } else if (a0 === undefined || typeof a0 === 'function') {
    args.unshift(0, '127.0.0.1');   // listen() / listen(cb): a random port, loopback
  }
  return orig.apply(this, args);
};
