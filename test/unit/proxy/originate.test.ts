// TLS the proxy originates: the files of a DestinationRule's tls are read when first needed,
// kept for a minute, then read again (a certificate renewed on disk is picked up).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALPN } from '../../../src/agent/proxy/core/identity';
import { ORIGINATE_REREAD_MS, originateOptions } from '../../../src/agent/proxy/l4/originate';
import type { TlsPolicy } from '../../../src/api/mesh';
import { makeCa } from '../../fixtures/agent-pki';

describe('the files of TLS the proxy originates', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-originate-unit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps a context for a minute, then reads the files again', () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, makeCa('First').pem);
    const policy: TlsPolicy = { mode: 'SIMPLE', caCertificates: ca };
    const first = originateOptions(policy, ALPN.http1, 1_000).secureContext;
    writeFileSync(ca, makeCa('Second').pem);
    expect(
      originateOptions(policy, ALPN.http1, 1_000 + ORIGINATE_REREAD_MS - 1).secureContext,
    ).toBe(first);
    const later = originateOptions(policy, ALPN.http1, 1_000 + ORIGINATE_REREAD_MS).secureContext;
    expect(later).not.toBe(first);
    // A file gone by then is named, without its content.
    rmSync(ca);
    expect(() => originateOptions(policy, ALPN.http1, 1_000 + 3 * ORIGINATE_REREAD_MS)).toThrow(
      `cannot read caCertificates ${ca}: ENOENT`,
    );
  });

  it('offers the ALPN a server outside the mesh knows, none for opaque TCP', () => {
    const policy: TlsPolicy = { mode: 'SIMPLE', sni: 'db.example' };
    expect(originateOptions(policy, ALPN.http1).ALPNProtocols).toEqual(['http/1.1']);
    expect(originateOptions(policy, ALPN.h2).ALPNProtocols).toEqual(['h2']);
    expect(originateOptions(policy, ALPN.tcp).ALPNProtocols).toBeUndefined();
    expect(originateOptions(policy, ALPN.tcp).servername).toBe('db.example');
  });
});
