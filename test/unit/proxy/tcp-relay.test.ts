// Opaque TCP's relay over real loopback sockets: when one side closes without ending (the proxy
// itself destroying it, as when a port turns STRICT or a lifetime is reached), the other side is
// sent what it was owed, then closed, and the connection is reported closed once.

import net from 'node:net';
import { relayTcp } from '../../../src/agent/proxy/l4/tcp';

/** A connected pair of sockets (what one side writes, the other reads), half-open allowed. */
async function socketPair(): Promise<{ near: net.Socket; far: net.Socket; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const near = net.connect({
    port: (server.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  const far = await accepted;
  server.close();
  return {
    near,
    far,
    close: () => {
      near.destroy();
      far.destroy();
    },
  };
}

/** Resolves once `ok()` holds, checked every 5 ms. */
const until = (ok: () => boolean): Promise<void> =>
  new Promise((resolve) => {
    const check = (): void => {
      if (ok()) resolve();
      else setTimeout(check, 5);
    };
    check();
  });

describe('the opaque TCP relay', () => {
  it("closes the client's side, after what the app sent, when the app's side is closed without ending", async () => {
    // client app <-> [proxy: clientSide | appSide] <-> app
    const downstream = await socketPair(); // near: the client app, far: the proxy's client side
    const upstream = await socketPair(); // near: the proxy's app side, far: the app
    const reports = { closed: 0, sent: 0 };
    relayTcp(
      downstream.far,
      upstream.near,
      null,
      { bytes: (sent) => (reports.sent += sent), closed: () => reports.closed++ },
      true,
      0,
    );
    const received: Buffer[] = [];
    downstream.near.on('data', (d: Buffer) => received.push(d));
    const ended = new Promise<void>((resolve) => downstream.near.once('end', resolve));
    // The app answers, and its bytes reach the proxy; then the proxy destroys its app side.
    upstream.far.write('the answer');
    await until(() => Buffer.concat(received).toString() === 'the answer');
    upstream.near.destroy();
    // Without the relay closing it, the client would wait for ever (the test's timeout).
    await ended;
    await until(() => reports.closed > 0);
    expect(downstream.far.destroyed).toBe(true);
    expect(reports).toEqual({ closed: 1, sent: 'the answer'.length });
    downstream.close();
    upstream.close();
  });
});
