import { protocolOf, type PortDeclaration } from '../../../src/mesh/protocol';

const port = (fields: Partial<PortDeclaration>): PortDeclaration => ({
  port: 8080,
  name: '',
  protocol: 'TCP',
  appProtocol: null,
  ...fields,
});

describe('the protocol of a Service port (Istio: appProtocol, then the name, then sniffing)', () => {
  it.each([
    ['a port named http is HTTP/1.1', { name: 'http' }, 'http'],
    [
      'a port named http-web is HTTP/1.1 (the part before the first dash)',
      { name: 'http-web' },
      'http',
    ],
    ['a name is read without regard to case', { name: 'HTTP2-Api' }, 'http2'],
    ['a port named http2-api is HTTP/2', { name: 'http2-api' }, 'http2'],
    ['a port named grpc-orders is gRPC', { name: 'grpc-orders' }, 'grpc'],
    [
      'a port named grpc-web is HTTP (grpc-web is read before the dash rule)',
      { name: 'grpc-web' },
      'http',
    ],
    ['a port named grpc-web-ui is HTTP too', { name: 'grpc-web-ui' }, 'http'],
    ['a port named tcp-db is opaque TCP', { name: 'tcp-db' }, 'tcp'],
    [
      'a port named https is opaque TCP (TLS from the app is not terminated)',
      { name: 'https' },
      'tcp',
    ],
    ['a port named tls-x is opaque TCP', { name: 'tls-x' }, 'tcp'],
    ['a port named mongo is opaque TCP', { name: 'mongo' }, 'tcp'],
    ['a port named mysql-main is opaque TCP', { name: 'mysql-main' }, 'tcp'],
    ['a port named redis is opaque TCP', { name: 'redis' }, 'tcp'],
    ['a port named http_proxy is HTTP', { name: 'http_proxy' }, 'http'],
    ['a port named web is sniffed', { name: 'web' }, 'unknown'],
    ['a port named httpx is sniffed (no dash, not a protocol)', { name: 'httpx' }, 'unknown'],
    ['an unnamed port is sniffed', { name: '' }, 'unknown'],
    ['an unnamed port 3306 is opaque TCP (Istio never sniffs MySQL)', { port: 3306 }, 'tcp'],
    ['an unnamed port 25 is opaque TCP (SMTP is server-first)', { port: 25 }, 'tcp'],
    ['an unnamed port 53 is opaque TCP', { port: 53 }, 'tcp'],
    ['an unnamed port 27017 is opaque TCP', { port: 27017 }, 'tcp'],
    ['a port named web on 3306 is opaque TCP', { port: 3306, name: 'web' }, 'tcp'],
    ['a port named http on 3306 is HTTP (the name wins)', { port: 3306, name: 'http' }, 'http'],
    ['appProtocol http beats the name tcp', { name: 'tcp', appProtocol: 'http' }, 'http'],
    ['appProtocol grpc is gRPC', { name: 'web', appProtocol: 'grpc' }, 'grpc'],
    [
      'appProtocol kubernetes.io/h2c is HTTP/2',
      { name: 'tcp', appProtocol: 'kubernetes.io/h2c' },
      'http2',
    ],
    ['appProtocol kubernetes.io/ws is HTTP', { appProtocol: 'kubernetes.io/ws' }, 'http'],
    ['appProtocol kubernetes.io/wss is opaque TCP', { appProtocol: 'kubernetes.io/wss' }, 'tcp'],
    [
      'an unknown appProtocol is sniffed even when the name says http',
      { name: 'http', appProtocol: 'example.com/custom' },
      'unknown',
    ],
    [
      'appProtocol tcp makes a server-first port work at once',
      { name: 'http', appProtocol: 'tcp' },
      'tcp',
    ],
  ] as const)('%s', (_sentence, fields, expected) => {
    expect(protocolOf(port(fields))).toBe(expected);
  });

  it.each([['UDP'], ['SCTP']] as const)('a %s port is not carried by the proxy', (protocol) => {
    expect(protocolOf(port({ name: 'http', protocol }))).toBeNull();
  });
});
