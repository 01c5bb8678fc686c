// A plugged-in intermediate CA, from Istio's four files (PLUGIN_CA_FILES): ca-cert.pem (the
// issuing certificate), ca-key.pem (its key), cert-chain.pem (ca-cert up to the root; may hold
// ca-cert itself and the root, as Istio's tooling writes it), root-cert.pem (trusted roots).
// Checked before use; each failed check is one CA_ERR_PLUGIN naming the file and the check.

import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { PLUGIN_CA_FILES } from '../constants';
import { MooringError } from '../errors';
import { compileIssuer, splitPemCertificates, type IssuingCA } from './issuer';

export interface PluginFiles {
  readonly caCertPem: string;
  readonly caKeyPem: string;
  readonly certChainPem: string;
  readonly rootCertPem: string;
}

export interface PluginCA {
  readonly issuer: IssuingCA;
  /** The trust bundle: every certificate of root-cert.pem. */
  readonly rootPems: readonly string[];
  readonly roots: readonly X509Certificate[];
}

const fail = (check: string, cause?: unknown): MooringError =>
  new MooringError(
    'CA_ERR_PLUGIN',
    `plugged-in CA: ${check}`,
    cause === undefined ? undefined : { cause },
  );

const selfSigned = (c: X509Certificate): boolean => c.checkIssued(c) && c.verify(c.publicKey);
const issuedBy = (child: X509Certificate, parent: X509Certificate): boolean =>
  child.checkIssued(parent) && child.verify(parent.publicKey);

function parseCerts(text: string, file: string): X509Certificate[] {
  const pems = splitPemCertificates(text);
  try {
    return pems.map((p) => new X509Certificate(p));
  } catch (err) {
    throw fail(`${file} holds a certificate that cannot be parsed`, err);
  }
}

/**
 * The path from `leaf` to a trusted root through `candidates`: the intermediates between them
 * (not `leaf`, not the root). Null if no root is reached.
 */
function pathToRoot(
  leaf: X509Certificate,
  candidates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
): X509Certificate[] | null {
  const path: X509Certificate[] = [];
  let current = leaf;
  for (let depth = 0; depth < 10; depth++) {
    if (roots.some((r) => r.raw.equals(current.raw) || issuedBy(current, r))) return path;
    const parent = candidates.find(
      (c) =>
        !c.raw.equals(current.raw) &&
        !path.some((p) => p.raw.equals(c.raw)) &&
        issuedBy(current, c),
    );
    if (parent === undefined) return null;
    path.push(parent);
    current = parent;
  }
  return null;
}

/** Checks the four files and compiles the issuer. `now` checks ca-cert's validity. */
export function loadPluginCA(files: PluginFiles, now: Date): PluginCA {
  const F = PLUGIN_CA_FILES;
  const caCerts = parseCerts(files.caCertPem, F.cert);
  if (caCerts.length !== 1) {
    throw fail(`${F.cert} must hold exactly one certificate, it holds ${caCerts.length}`);
  }
  const caCert = caCerts[0] as X509Certificate;
  let key: KeyObject;
  try {
    key = createPrivateKey(files.caKeyPem);
  } catch (err) {
    throw fail(`${F.key} is not a readable private key (PEM, unencrypted)`, err);
  }
  const roots = parseCerts(files.rootCertPem, F.root);
  if (roots.length === 0) throw fail(`${F.root} holds no certificate`);
  const chain = parseCerts(files.certChainPem, F.chain);

  if (!caCert.ca)
    throw fail(`${F.cert} is not a CA certificate (basicConstraints CA:TRUE is missing)`);
  if (!caCert.checkPrivateKey(key))
    throw fail(`${F.key} does not match the public key of ${F.cert}`);
  const t = now.getTime();
  if (t < Date.parse(caCert.validFrom) || t >= Date.parse(caCert.validTo)) {
    throw fail(`${F.cert} is not valid now (valid ${caCert.validFrom} to ${caCert.validTo})`);
  }
  const bad = roots.find((r) => !selfSigned(r));
  if (bad !== undefined)
    throw fail(`${F.root} holds a certificate that is not a self-signed root: ${bad.subject}`);

  const path = pathToRoot(caCert, chain, roots);
  if (path === null) {
    throw fail(
      `${F.cert} does not chain to a root of ${F.root} through ${F.chain} (issuer ${caCert.issuer.replace(/\n/g, ', ')})`,
    );
  }
  const isRoot = roots.some((r) => r.raw.equals(caCert.raw));
  const chainPems = isRoot ? [] : [caCert, ...path].map((c) => c.toString());
  const rootOfPath = roots.filter((r) => issuedBy(path[path.length - 1] ?? caCert, r));
  return {
    issuer: compileIssuer({
      certPem: caCert.toString(),
      privateKey: key,
      chainPems,
      windowCertificates: [...path, ...rootOfPath.slice(0, 1)],
    }),
    rootPems: roots.map((r) => r.toString()),
    roots,
  };
}
