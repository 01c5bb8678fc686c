// The one configuration schema, with every default. `mooring serve`, `mooring inject` and the
// Helm chart's values (charts/mooring) all go through it. Every object is closed
// (additionalProperties: false) so that a misspelt key is an error, not a silent default.

import {
  MOORING_IMAGE,
  MUTATING_WEBHOOK_CONFIG_NAME,
  VALIDATING_WEBHOOK_CONFIG_NAME,
} from '../constants';

const quantity = {
  type: 'string',
  pattern: '^[0-9]+(\\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$',
} as const;
const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const uid = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;
const hostPort = {
  type: 'string',
  pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):[0-9]{1,5}$',
} as const;
const seconds = { type: 'integer', minimum: 1 } as const;

export const CONFIG_SCHEMA = {
  $id: 'https://mooring.dev/schemas/config.json',
  type: 'object',
  additionalProperties: false,
  properties: {
    trustDomain: {
      type: 'string',
      pattern: '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$',
      maxLength: 255,
      default: 'cluster.local',
      description: 'SPIFFE trust domain of every workload identity.',
    },
    injector: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // One image, three roles: the proxy and the init container run the server's image.
        proxyImage: { type: 'string', minLength: 1, default: MOORING_IMAGE },
        initImage: { type: 'string', minLength: 1, default: MOORING_IMAGE },
        imagePullPolicy: {
          type: 'string',
          enum: ['Always', 'IfNotPresent', 'Never'],
          default: 'IfNotPresent',
        },
        proxyUID: { ...uid, default: 1337 },
        proxyGID: { ...uid, default: 1337 },
        ports: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            outboundCapture: { ...port, default: 15001 },
            inboundCapture: { ...port, default: 15006 },
            agent: { ...port, default: 15020 },
            readiness: { ...port, default: 15021 },
            proxyMetrics: { ...port, default: 15090 },
          },
        },
        resources: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            cpuRequest: { ...quantity, default: '100m' },
            memoryRequest: { ...quantity, default: '128Mi' },
            cpuLimit: { anyOf: [quantity, { type: 'null' }], default: null },
            memoryLimit: { anyOf: [quantity, { type: 'null' }], default: '1Gi' },
          },
        },
        initResources: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            cpuRequest: { ...quantity, default: '10m' },
            memoryRequest: { ...quantity, default: '16Mi' },
            cpuLimit: { anyOf: [quantity, { type: 'null' }], default: '100m' },
            memoryLimit: { anyOf: [quantity, { type: 'null' }], default: '64Mi' },
          },
        },
        ignoredNamespaces: {
          type: 'array',
          items: { type: 'string', minLength: 1 },
          uniqueItems: true,
          default: ['kube-system', 'kube-public', 'kube-node-lease'],
        },
        nativeSidecar: { type: 'boolean', default: true },
        holdApplication: { type: 'boolean', default: true },
        rewriteProbes: { type: 'boolean', default: true },
        logLevel: {
          type: 'string',
          enum: ['trace', 'debug', 'info', 'warn', 'error', 'off'],
          default: 'info',
        },
        caAddress: {
          type: 'string',
          pattern: '^https://',
          default: 'https://mooring.mooring-system.svc:443',
          description: 'Base URL of the CA that the agent in every injected Pod calls.',
        },
        drainSeconds: { type: 'integer', minimum: 0, default: 5 },
        failOpen: {
          type: 'boolean',
          default: false,
          description: 'On an internal error, allow the Pod uninjected instead of denying it.',
        },
      },
    },
    ca: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        rootKeyType: {
          type: 'string',
          enum: ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'],
          default: 'ecdsa-p256',
        },
        rootLifetimeSeconds: { ...seconds, default: 315360000 },
        rootSubject: { type: 'string', minLength: 1, default: 'Mooring Root CA' },
        workloadDefaultTtlSeconds: { ...seconds, default: 86400 },
        workloadMaxTtlSeconds: { ...seconds, default: 604800 },
        backdateSeconds: { type: 'integer', minimum: 0, default: 60 },
        rotation: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            auto: { type: 'boolean', default: true },
            beforeExpirySeconds: {
              ...seconds,
              default: 63072000,
              description:
                'Start an automatic root rotation when the root has less left than this.',
            },
            propagationDelaySeconds: {
              type: 'integer',
              minimum: 0,
              default: 900,
              description: 'Time between adding the new root to the bundle and issuing from it.',
            },
            checkIntervalSeconds: { ...seconds, default: 60 },
          },
        },
        pluginDir: {
          anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }],
          default: null,
          description: 'Directory with ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem.',
        },
        servingCertLifetimeSeconds: { ...seconds, default: 2592000 },
        servingCertRenewFraction: {
          type: 'number',
          exclusiveMinimum: 0,
          exclusiveMaximum: 1,
          default: 0.66,
        },
      },
    },
    server: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        listen: { ...hostPort, default: '0.0.0.0:8443' },
        adminListen: { ...hostPort, default: '0.0.0.0:9090' },
        dataDir: { type: 'string', minLength: 1, default: '.data' },
        bodyLimitBytes: { type: 'integer', minimum: 10485760, default: 10485760 },
        logLevel: {
          type: 'string',
          enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
          default: 'info',
        },
        shutdownGraceSeconds: { type: 'integer', minimum: 0, default: 15 },
        workers: {
          anyOf: [{ type: 'integer', minimum: 1, maximum: 64 }, { const: 'auto' }],
          default: 1,
          description:
            'Processes serving the HTTPS port: 1 (one process), N, or auto (one per CPU).',
        },
        injectThreads: {
          anyOf: [{ type: 'integer', minimum: 0, maximum: 64 }, { const: 'auto' }],
          default: 'auto',
          description:
            'Worker threads answering admission reviews: 0 (on the event loop), N, or auto (1 when one process may use 2 CPUs or more, else 0).',
        },
        meshDir: {
          anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }],
          default: null,
          description:
            'Local mode: the directory of Kubernetes objects (*.yaml, *.yml, *.json) the mesh is read from.',
        },
      },
    },
    mesh: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        mtlsMode: {
          type: 'string',
          enum: ['PERMISSIVE', 'STRICT'],
          default: 'PERMISSIVE',
          description:
            'Mutual TLS of inbound traffic where no PeerAuthentication sets a mode: PERMISSIVE accepts plain text too.',
        },
        tracing: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            otlpEndpoint: {
              anyOf: [
                { type: 'string', pattern: '^https?://[^\\s/?#]+[^\\s?#]*$' },
                { type: 'null' },
              ],
              default: null,
              description:
                'OTLP/HTTP base URL of the trace collector (spans go to <base>/v1/traces); null: no export.',
            },
            samplingPercent: {
              type: 'number',
              minimum: 0,
              maximum: 100,
              default: 1,
              description: 'Share of new traces sampled, in percent.',
            },
          },
        },
        accessLog: {
          type: 'boolean',
          default: false,
          description: 'Every proxy writes one JSON line per request or connection on stdout.',
        },
        outboundTrafficPolicy: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            mode: {
              type: 'string',
              enum: ['ALLOW_ANY', 'REGISTRY_ONLY'],
              default: 'ALLOW_ANY',
              description:
                "Outbound connections to a destination the mesh does not know: ALLOW_ANY passes them through, REGISTRY_ONLY closes them (Istio's BlackHoleCluster).",
            },
          },
        },
      },
    },
    ui: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        prometheusUrl: {
          anyOf: [{ type: 'string', pattern: '^https?://[^\\s/?#]+[^\\s?#]*$' }, { type: 'null' }],
          default: null,
          description:
            'Prometheus (base URL) that scrapes the sidecars: the mesh graph on the admin port at /ui/graph reads it; null: no graph data.',
        },
      },
    },
    cluster: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        namespace: { type: 'string', minLength: 1, default: 'mooring-system' },
        serviceName: { type: 'string', minLength: 1, default: 'mooring' },
        webhookConfigName: { type: 'string', minLength: 1, default: MUTATING_WEBHOOK_CONFIG_NAME },
        validatingWebhookConfigName: {
          anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }],
          default: VALIDATING_WEBHOOK_CONFIG_NAME,
          description:
            'The ValidatingWebhookConfiguration of the traffic kinds whose caBundle the server patches too; null: none.',
        },
        patchCABundle: { type: 'boolean', default: true },
        tokenReviewCacheSeconds: { type: 'integer', minimum: 0, maximum: 60, default: 60 },
        tokenReviewCacheSize: { type: 'integer', minimum: 0, default: 10000 },
        csrSigner: { type: 'boolean', default: true },
        csrAutoApprove: { type: 'boolean', default: false },
      },
    },
  },
} as const;
