// How the proxy carries a Service port, with Istio's rules (pkg/config/kube/conversion.go,
// ConvertProtocol, and pkg/config/protocol): the port's `appProtocol` when set (Kubernetes'
// `kubernetes.io/h2c`, `kubernetes.io/ws`, `kubernetes.io/wss`, or a protocol name), else the
// port's name; either is read up to its first "-" (`http-web` is `http`), case-insensitively,
// `grpc-web` first. Istio's protocols map onto the proxy's:
//
//   http, http_proxy, grpc-web   -> http      (HTTP/1.1, upgrades such as WebSocket)
//   http2                        -> http2
//   grpc                         -> grpc
//   tcp, https, tls, mongo, mysql, redis -> tcp (opaque: TLS from the app is not terminated)
//   anything else                -> unknown   (sniffed), except Istio's well-known server-first
//                                               ports 25, 53, 3306, 27017, which are tcp
//
// UDP and SCTP ports are not carried by the proxy (the redirect captures TCP only): null.
// Pure.

import type { Protocol } from '../api/mesh';
import type { PortProtocol } from './objects';

/** Ports Istio never sniffs: SMTP, DNS, MySQL, MongoDB (server-first or not HTTP). */
export const WELL_KNOWN_TCP_PORTS: readonly number[] = [25, 53, 3306, 27017];

const BY_NAME: Readonly<Record<string, Protocol>> = {
  http: 'http',
  http_proxy: 'http',
  http2: 'http2',
  grpc: 'grpc',
  tcp: 'tcp',
  https: 'tcp',
  tls: 'tcp',
  mongo: 'tcp',
  mysql: 'tcp',
  redis: 'tcp',
};

export interface PortDeclaration {
  readonly port: number;
  /** The Service port's name ('' when unnamed). */
  readonly name: string;
  readonly protocol: PortProtocol;
  readonly appProtocol: string | null;
}

/** The proxy's protocol for a Service port, or null for a port it does not carry (UDP, SCTP). */
export function protocolOf(declaration: PortDeclaration): Protocol | null {
  if (declaration.protocol !== 'TCP') return null;
  let name = declaration.name;
  if (declaration.appProtocol !== null) {
    name = declaration.appProtocol;
    switch (name) {
      case 'kubernetes.io/h2c':
        return 'http2';
      case 'kubernetes.io/ws':
        return 'http';
      case 'kubernetes.io/wss':
        return 'tcp';
    }
  }
  const lower = name.toLowerCase();
  if (lower.startsWith('grpc-web')) return 'http';
  const dash = lower.indexOf('-');
  const prefix = dash === -1 ? lower : lower.slice(0, dash);
  const known = BY_NAME[prefix];
  if (known !== undefined) return known;
  return WELL_KNOWN_TCP_PORTS.includes(declaration.port) ? 'tcp' : 'unknown';
}
