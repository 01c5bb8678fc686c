// `mooring webhook-config`: prints the MutatingWebhookConfiguration that sends Pods to
// POST /inject. Two webhooks with disjoint selectors, so that a Pod is sent at most once and
// Pods outside the mesh never wait on Mooring:
//   namespace.*: namespace labelled enabled, Pod not labelled "false";
//   object.*:    Pod labelled "true", namespace labelled neither enabled nor disabled.
// System namespaces are excluded by selector in both.
// `mooring webhook-config --validating`: prints the ValidatingWebhookConfiguration that sends the
// traffic kinds the mesh reads (VirtualService, DestinationRule, ServiceEntry, Sidecar,
// WorkloadEntry, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry,
// HTTPRoute, GRPCRoute, TCPRoute, TLSRoute; CREATE and UPDATE, each kind in the API versions of
// src/mesh/objects.ts only) to POST /validate, failurePolicy Ignore unless told.

import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { stringify } from 'yaml';
import { VALIDATE_PATH } from '../admission/validate-mesh';
import {
  INJECT_LABEL,
  INJECT_PATH,
  NAMESPACE_DISABLED,
  NAMESPACE_ENABLED,
  SYSTEM_NAMESPACES,
  VALIDATING_WEBHOOK_NAME,
} from '../constants';
import { CONFIG_SCHEMA } from '../config/schema';
import { MESH_API_VERSIONS, type MeshKind } from '../mesh/objects';
import { UsageError, type CliIO } from './io';

export const WEBHOOK_NAMES = {
  namespace: 'namespace.sidecar-injector.mooring.dev',
  object: 'object.sidecar-injector.mooring.dev',
} as const;
const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
const SERVICE_PORT = 443;
const TIMEOUT_SECONDS = 10;
/** Validation is a pure check of one object: a short wait, then (Ignore) the object is admitted. */
const VALIDATE_TIMEOUT_SECONDS = 5;

/** The kinds POST /validate checks, with their resource names, in the order of the rules. */
const VALIDATED_KINDS: readonly (readonly [MeshKind, string])[] = [
  ['VirtualService', 'virtualservices'],
  ['DestinationRule', 'destinationrules'],
  ['ServiceEntry', 'serviceentries'],
  ['Sidecar', 'sidecars'],
  ['WorkloadEntry', 'workloadentries'],
  ['PeerAuthentication', 'peerauthentications'],
  ['AuthorizationPolicy', 'authorizationpolicies'],
  ['RequestAuthentication', 'requestauthentications'],
  ['Telemetry', 'telemetries'],
  ['HTTPRoute', 'httproutes'],
  ['GRPCRoute', 'grpcroutes'],
  ['TCPRoute', 'tcproutes'],
  ['TLSRoute', 'tlsroutes'],
];

export type FailurePolicy = 'Fail' | 'Ignore';

export type WebhookTarget =
  | { readonly url: string }
  | { readonly service: { readonly namespace: string; readonly name: string } };

export interface WebhookConfigOptions {
  readonly target: WebhookTarget;
  /** PEM of the CA that signs the webhook's serving certificate; omitted when absent. */
  readonly caBundlePem?: string;
  readonly failurePolicy: FailurePolicy;
  readonly name: string;
}

interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn';
  values: string[];
}

const notSystem: LabelSelectorRequirement = {
  key: NAMESPACE_NAME_LABEL,
  operator: 'NotIn',
  values: [...SYSTEM_NAMESPACES],
};

function clientConfig(options: WebhookConfigOptions, path: string): Record<string, unknown> {
  const target =
    'url' in options.target
      ? { url: options.target.url }
      : {
          service: {
            namespace: options.target.service.namespace,
            name: options.target.service.name,
            path,
            port: SERVICE_PORT,
          },
        };
  const caBundle =
    options.caBundlePem === undefined
      ? {}
      : { caBundle: Buffer.from(options.caBundlePem, 'utf8').toString('base64') };
  return { ...target, ...caBundle };
}

function webhook(
  name: string,
  options: WebhookConfigOptions,
  namespaceSelector: LabelSelectorRequirement[],
  objectSelector: LabelSelectorRequirement[],
): Record<string, unknown> {
  return {
    name,
    admissionReviewVersions: ['v1'],
    clientConfig: clientConfig(options, INJECT_PATH),
    rules: [
      {
        operations: ['CREATE'],
        apiGroups: [''],
        apiVersions: ['v1'],
        resources: ['pods'],
        scope: 'Namespaced',
      },
    ],
    namespaceSelector: { matchExpressions: namespaceSelector },
    objectSelector: { matchExpressions: objectSelector },
    failurePolicy: options.failurePolicy,
    matchPolicy: 'Equivalent',
    sideEffects: 'None',
    timeoutSeconds: TIMEOUT_SECONDS,
    reinvocationPolicy: 'IfNeeded',
  };
}

/** The MutatingWebhookConfiguration object. Pure. */
export function buildWebhookConfiguration(options: WebhookConfigOptions): Record<string, unknown> {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: {
      name: options.name,
      labels: {
        'app.kubernetes.io/name': 'mooring',
        'app.kubernetes.io/component': 'sidecar-injector',
      },
    },
    webhooks: [
      webhook(
        WEBHOOK_NAMES.namespace,
        options,
        [{ key: INJECT_LABEL, operator: 'In', values: [NAMESPACE_ENABLED] }, notSystem],
        [{ key: INJECT_LABEL, operator: 'NotIn', values: ['false'] }],
      ),
      webhook(
        WEBHOOK_NAMES.object,
        options,
        [
          { key: INJECT_LABEL, operator: 'NotIn', values: [NAMESPACE_ENABLED, NAMESPACE_DISABLED] },
          notSystem,
        ],
        [{ key: INJECT_LABEL, operator: 'In', values: ['true'] }],
      ),
    ],
  };
}

/**
 * CREATE and UPDATE of each kind in exactly the versions the mesh reads: one rule per API group
 * and list of versions (kinds that share both share a rule). A rule's resources and versions are
 * a cross product, so a kind never gets another kind's versions: an object made at a version the
 * mesh does not read for its kind would be sent as it is and refused; matchPolicy Equivalent sends
 * it converted to one the mesh reads where its CRD serves that, and not at all where it does not.
 */
function validationRules(): Record<string, unknown>[] {
  const rules = new Map<string, { group: string; versions: string[]; resources: string[] }>();
  for (const [kind, resource] of VALIDATED_KINDS) {
    const [group = ''] = (MESH_API_VERSIONS[kind][0] ?? '').split('/');
    const versions = MESH_API_VERSIONS[kind].map((apiVersion) => apiVersion.split('/')[1] ?? '');
    const key = `${group} ${versions.join(',')}`;
    const entry = rules.get(key) ?? { group, versions, resources: [] };
    entry.resources.push(resource);
    rules.set(key, entry);
  }
  return [...rules.values()].map(({ group, versions, resources }) => ({
    operations: ['CREATE', 'UPDATE'],
    apiGroups: [group],
    apiVersions: versions,
    resources,
    scope: 'Namespaced',
  }));
}

/** The ValidatingWebhookConfiguration of the traffic kinds (POST /validate). Pure. */
export function buildValidatingWebhookConfiguration(
  options: WebhookConfigOptions,
): Record<string, unknown> {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: {
      name: options.name,
      labels: {
        'app.kubernetes.io/name': 'mooring',
        'app.kubernetes.io/component': 'traffic-validator',
      },
    },
    webhooks: [
      {
        name: VALIDATING_WEBHOOK_NAME,
        admissionReviewVersions: ['v1'],
        clientConfig: clientConfig(options, VALIDATE_PATH),
        rules: validationRules(),
        failurePolicy: options.failurePolicy,
        matchPolicy: 'Equivalent',
        sideEffects: 'None',
        timeoutSeconds: VALIDATE_TIMEOUT_SECONDS,
      },
    ],
  };
}

/** The YAML document, with a header that says how to make it again. */
export function renderWebhookConfiguration(
  options: WebhookConfigOptions,
  commandLine: string,
  kind: 'mutating' | 'validating' = 'mutating',
): string {
  const object =
    kind === 'mutating'
      ? buildWebhookConfiguration(options)
      : buildValidatingWebhookConfiguration(options);
  const yaml = stringify(object, { aliasDuplicateObjects: false });
  return `# Generated by \`${commandLine}\`. Do not edit: run the command again.\n---\n${yaml}`;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** `--service NS/NAME`. */
export function parseServiceRef(value: string): { namespace: string; name: string } {
  const [namespace, name, ...rest] = value.split('/');
  if (
    namespace === undefined ||
    name === undefined ||
    rest.length > 0 ||
    !DNS_LABEL.test(namespace) ||
    !DNS_LABEL.test(name)
  ) {
    throw new UsageError(`--service must be NAMESPACE/NAME (DNS labels), got "${value}"`);
  }
  return { namespace, name };
}

/**
 * `--url URL`: https only (the API server calls webhooks over TLS); `defaultPath` (/inject, or
 * /validate with --validating) added when it has no path.
 */
export function parseWebhookUrl(value: string, defaultPath: string = INJECT_PATH): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--url must be an absolute URL, got "${value}"`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`--url must use https://, got "${value}"`);
  if (url.username !== '' || url.password !== '' || url.hash !== '' || url.search !== '') {
    throw new UsageError('--url must not carry user info, a query or a fragment');
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = defaultPath;
  return url.toString();
}

interface RawOptions {
  url?: string;
  service?: string;
  caBundle?: string;
  failurePolicy?: FailurePolicy;
  name?: string;
  validating?: boolean;
}

function readCaBundle(path: string): string {
  const pem = readFileSync(path, 'utf8');
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error(`${path} holds no PEM certificate`);
  }
  return pem;
}

export function registerWebhookConfig(program: Command, io: CliIO): void {
  // Read from the schema, not defaultConfig(): registering a command must not compile the schema.
  const cluster = CONFIG_SCHEMA.properties.cluster.properties;
  const defaults = {
    mutating: { name: cluster.webhookConfigName.default, failurePolicy: 'Fail' },
    validating: { name: cluster.validatingWebhookConfigName.default, failurePolicy: 'Ignore' },
  } as const;
  program
    .command('webhook-config')
    .description(
      'print the MutatingWebhookConfiguration that sends Pods to the injector, or with ' +
        '--validating the ValidatingWebhookConfiguration of the traffic kinds (YAML on stdout)',
    )
    .option(
      '--validating',
      'print the ValidatingWebhookConfiguration that sends VirtualServices, DestinationRules, ' +
        'ServiceEntries, Sidecars, WorkloadEntries, PeerAuthentications, AuthorizationPolicies, ' +
        'RequestAuthentications, Telemetries, HTTPRoutes, GRPCRoutes, TCPRoutes and TLSRoutes ' +
        '(CREATE, UPDATE) to /validate',
    )
    .option(
      '--url <url>',
      'the webhook URL, for a server outside the cluster (https; /inject, or /validate with ' +
        '--validating, added when no path)',
    )
    .option(
      '--service <ns/name>',
      'the Service in front of `mooring serve`, port 443, path /inject (or /validate)',
    )
    .option(
      '--ca-bundle <file>',
      'PEM file of the CA that signs the serving certificate (the trust bundle; needed with --url)',
    )
    .addOption(
      new Option(
        '--failure-policy <policy>',
        'what the API server does when the webhook fails (default: Fail, with --validating Ignore)',
      ).choices(['Fail', 'Ignore']),
    )
    .option(
      '--name <name>',
      `metadata.name of the configuration (default: "${defaults.mutating.name}", with ` +
        `--validating "${defaults.validating.name}")`,
    )
    .action((raw: RawOptions, command: Command) => {
      const kind = raw.validating === true ? 'validating' : 'mutating';
      const name = raw.name ?? defaults[kind].name;
      const failurePolicy = raw.failurePolicy ?? defaults[kind].failurePolicy;
      if ((raw.url === undefined) === (raw.service === undefined)) {
        throw new UsageError('give exactly one of --url URL and --service NS/NAME');
      }
      // The chart's rule (webhook.url needs webhook.caBundle): the API server must trust a server
      // outside the cluster from the first call, and no in-cluster Mooring would set it.
      if (raw.url !== undefined && raw.caBundle === undefined) {
        throw new UsageError(
          '--url needs --ca-bundle FILE: the API server must trust the server it calls ' +
            "(give that server's trust bundle: root-cert.pem of its --data-dir, or the " +
            'trustBundle of its GET /v1/trust-bundle; a server in cluster mode keeps it up to ' +
            'date from then on), as the chart refuses webhook.url without webhook.caBundle',
        );
      }
      if (!DNS_SUBDOMAIN.test(name))
        throw new UsageError(`--name must be a DNS subdomain, got "${name}"`);
      const target: WebhookTarget =
        raw.url !== undefined
          ? { url: parseWebhookUrl(raw.url, kind === 'mutating' ? INJECT_PATH : VALIDATE_PATH) }
          : { service: parseServiceRef(raw.service ?? '') };
      const options: WebhookConfigOptions = {
        target,
        failurePolicy,
        name,
        ...(raw.caBundle === undefined ? {} : { caBundlePem: readCaBundle(raw.caBundle) }),
      };
      const commandLine = [
        'mooring',
        'webhook-config',
        ...command.args,
        ...describeFlags(raw, defaults[kind]),
      ].join(' ');
      io.stdout.write(renderWebhookConfiguration(options, commandLine, kind));
    });
}

/** The flags as given (those that differ from the defaults), in a fixed order, for the header line. */
function describeFlags(
  raw: RawOptions,
  defaults: { readonly name: string; readonly failurePolicy: FailurePolicy },
): string[] {
  const flags: string[] = [];
  if (raw.validating === true) flags.push('--validating');
  if (raw.url !== undefined) flags.push('--url', raw.url);
  if (raw.service !== undefined) flags.push('--service', raw.service);
  if (raw.caBundle !== undefined) flags.push('--ca-bundle', raw.caBundle);
  if (raw.failurePolicy !== undefined && raw.failurePolicy !== defaults.failurePolicy)
    flags.push('--failure-policy', raw.failurePolicy);
  if (raw.name !== undefined && raw.name !== defaults.name) flags.push('--name', raw.name);
  return flags;
}
