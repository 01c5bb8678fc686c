// A mirror's copy of a request, apart from any socket: what it keeps before its wire is open,
// the bounds past which it gives up (never slowing the client), and Envoy's shadow host.

import { Mirror, MIRROR_BUFFER_BYTES, shadowHost } from '../../../src/agent/proxy/l7/mirror';

class FakeWire {
  readonly written: string[] = [];
  writableLength = 0;
  destroyed = false;
  write(chunk: Buffer): boolean {
    this.written.push(chunk.toString());
    return true;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

/** A mirror whose wire the test opens itself. */
class TestMirror extends Mirror<FakeWire> {
  cancelled = false;
  finished = 0;
  constructor(timeoutMs = 60_000) {
    super(timeoutMs);
    this.start();
  }
  protected open(): () => void {
    return () => {
      this.cancelled = true;
    };
  }
  protected finishRequest(): void {
    this.finished++;
  }
  connect(wire: FakeWire): void {
    this.opened(wire);
  }
}

describe("a request's copy for a mirror", () => {
  it('keeps the body that comes before its connection (copies of it), and writes it in order', () => {
    const m = new TestMirror();
    const chunk = Buffer.from('abc');
    m.write(chunk);
    chunk.write('xyz');
    m.write(Buffer.from('def'));
    m.end();
    const wire = new FakeWire();
    m.connect(wire);
    expect(wire.written).toEqual(['abc', 'def']);
    expect(m.finished).toBe(1);
    m.write(Buffer.from('late'));
    expect(wire.written).toEqual(['abc', 'def', 'late']);
    m.drop();
  });

  it('is given up past 1 MiB waiting for its connection, which is then closed as it opens', () => {
    const m = new TestMirror();
    m.write(Buffer.alloc(MIRROR_BUFFER_BYTES));
    expect(m.cancelled).toBe(false);
    m.write(Buffer.alloc(1));
    expect(m.cancelled).toBe(true);
    const wire = new FakeWire();
    m.connect(wire);
    expect(wire.destroyed).toBe(true);
    expect(wire.written).toEqual([]);
  });

  it('is given up when its connection holds more than 1 MiB it has not taken', () => {
    const m = new TestMirror();
    const wire = new FakeWire();
    m.connect(wire);
    wire.writableLength = MIRROR_BUFFER_BYTES;
    m.write(Buffer.from('a'));
    expect(wire.destroyed).toBe(false);
    wire.writableLength = MIRROR_BUFFER_BYTES + 1;
    m.write(Buffer.from('b'));
    expect(wire.destroyed).toBe(true);
    m.write(Buffer.from('c'));
    expect(wire.written).toEqual(['a', 'b']);
  });

  it('is cut when its time is over', async () => {
    const m = new TestMirror(30);
    const wire = new FakeWire();
    m.connect(wire);
    await new Promise((r) => setTimeout(r, 60));
    expect(wire.destroyed).toBe(true);
  });

  it('is dropped when the request does not come whole, kept when it did', () => {
    const cut = new TestMirror();
    const cutWire = new FakeWire();
    cut.connect(cutWire);
    cut.requestOver();
    expect(cutWire.destroyed).toBe(true);
    const whole = new TestMirror();
    const wholeWire = new FakeWire();
    whole.connect(wholeWire);
    whole.end();
    whole.requestOver();
    expect(wholeWire.destroyed).toBe(false);
    whole.drop();
  });

  it("has Envoy's shadow host: -shadow after the host name, before a port", () => {
    expect(shadowHost('reviews:9080')).toBe('reviews-shadow:9080');
    expect(shadowHost('reviews.default.svc.cluster.local')).toBe(
      'reviews.default.svc.cluster.local-shadow',
    );
    expect(shadowHost('[fd00::1]:80')).toBe('[fd00::1]-shadow:80');
  });
});
