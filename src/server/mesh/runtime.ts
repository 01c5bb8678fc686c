// The mesh side of `mooring serve`: the model, its source (--mesh-dir files in local mode, the
// apiserver in cluster mode), the push to the proxies, its metrics and debug views, and the
// `mesh` part of the configuration, which applies without a restart (applyConfig).

import type { Registry } from 'prom-client';
import type { MeshConfigDump, MeshSettings } from '../../api/mesh';
import type { Config } from '../../config/types';
import { MooringError } from '../../errors';
import { MeshModel, type ObjectProblem } from '../../mesh';
import { JwksFetcher, type JwksFetcherOptions, type JwksLogger } from './jwks';
import { createMeshMetrics } from './metrics';
import { MeshPush, type PushLogger, type PushObserver, type StreamView } from './push';

/** How long an undeclared port waits for the client's first bytes (Istio's former default). */
export const PROTOCOL_DETECTION_TIMEOUT_MS = 100;

export interface MeshSource {
  /** Loads every object once; the push accepts watches from then on. */
  start(): Promise<void>;
  stop(): Promise<void>;
  problems(): readonly ObjectProblem[];
  describe(): Record<string, unknown>;
}

export interface MeshSourceDeps {
  readonly model: MeshModel;
  readonly onChange: () => void;
  readonly log: PushLogger;
}

/** What a mode gives the mesh: where its objects come from. */
export interface MeshPlan {
  /** Mooring's namespace: PeerAuthentications there without selector are mesh-wide. */
  readonly rootNamespace: string;
  /** null: no objects (an empty mesh: every watch is refused, its Pod being unknown). */
  readonly source: ((deps: MeshSourceDeps) => MeshSource) | null;
  /** Wait for the first load before the server starts (files: a bad --mesh-dir stops it). */
  readonly waitForSource: boolean;
}

export interface MeshLogger extends PushLogger, JwksLogger {
  error(obj: object, msg: string): void;
}

export function meshSettingsOf(config: Config): MeshSettings {
  return {
    trustDomain: config.trustDomain,
    protocolDetectionTimeoutMs: PROTOCOL_DETECTION_TIMEOUT_MS,
    tracing: {
      otlpEndpoint: config.mesh.tracing.otlpEndpoint,
      samplingPercent: config.mesh.tracing.samplingPercent,
    },
    accessLog: config.mesh.accessLog,
    // Absent for ALLOW_ANY, the default: proxies and settings texts as before.
    ...(config.mesh.outboundTrafficPolicy.mode === 'REGISTRY_ONLY'
      ? { outboundTrafficPolicy: 'REGISTRY_ONLY' as const }
      : {}),
  };
}

export interface SynczView {
  readonly version: number;
  readonly synced: boolean;
  readonly proxies: readonly (StreamView & { readonly worker?: number })[];
}

export interface ConfigDumpView {
  readonly source: 'server';
  readonly pod: string;
  readonly mesh: MeshConfigDump;
  /** The streams of this Pod's proxy (none when it is not connected). */
  readonly streams: readonly (StreamView & { readonly worker?: number })[];
}

export interface ObjectsView {
  readonly source: Record<string, unknown>;
  readonly counts: Record<string, number>;
  readonly problems: readonly ObjectProblem[];
}

/** The debug views, answered by this process or, with --workers, by the workers. */
export interface MeshDebug {
  syncz(): Promise<SynczView>;
  configDump(podKey: string): Promise<ConfigDumpView | null>;
  objects(): Promise<ObjectsView>;
}

export class MeshRuntime implements MeshDebug {
  constructor(
    readonly model: MeshModel,
    readonly push: MeshPush,
    private readonly source: MeshSource | null,
    private readonly log: MeshLogger,
    private readonly jwks: JwksFetcher | null = null,
  ) {}

  /**
   * The `mesh` part of a re-read configuration file. The trust domain stays the running one
   * (identities are the CA's: a new one needs a restart).
   */
  applyConfig(config: Config): void {
    this.model.setDefaultMtlsMode(config.mesh.mtlsMode);
    this.model.setSettings({
      ...meshSettingsOf(config),
      trustDomain: this.model.settings.trustDomain,
    });
    if (this.model.dirty()) {
      this.log.info({ mesh: config.mesh }, 'mesh configuration changed: pushing it to the proxies');
      this.push.changed();
    }
  }

  problems(): readonly ObjectProblem[] {
    return this.source?.problems() ?? [];
  }

  syncz(): Promise<SynczView> {
    return Promise.resolve({
      version: this.model.version,
      synced: this.push.isSynced(),
      proxies: this.push.streamViews(),
    });
  }

  configDump(podKey: string): Promise<ConfigDumpView | null> {
    const mesh = this.push.configOf(podKey);
    return Promise.resolve(
      mesh === null
        ? null
        : { source: 'server', pod: podKey, mesh, streams: this.push.streamViews(podKey) },
    );
  }

  objects(): Promise<ObjectsView> {
    return Promise.resolve({
      source: this.source?.describe() ?? { source: 'none' },
      counts: this.model.counts(),
      problems: this.problems(),
    });
  }

  async close(): Promise<void> {
    this.jwks?.close();
    this.push.close();
    await this.source?.stop();
  }
}

export interface StartMeshOptions {
  readonly config: Config;
  readonly plan: MeshPlan;
  readonly log: MeshLogger;
  readonly registry?: Registry;
  /** The JWKS fetcher's timings (tests). */
  readonly jwks?: Pick<JwksFetcherOptions, 'refreshMs' | 'retryMs' | 'timeoutMs'>;
}

/** Builds the model and the push, and starts the source. */
export async function startMesh(options: StartMeshOptions): Promise<MeshRuntime> {
  const { config, plan, log } = options;
  const model = new MeshModel({
    trustDomain: config.trustDomain,
    rootNamespace: plan.rootNamespace,
    defaultMtlsMode: config.mesh.mtlsMode,
    settings: meshSettingsOf(config),
  });
  let runtime: MeshRuntime | null = null;
  let push: MeshPush | null = null;
  const observer: PushObserver | undefined =
    options.registry === undefined
      ? undefined
      : createMeshMetrics(options.registry, {
          proxies: () => push?.count() ?? 0,
          waiting: () => push?.waiting() ?? 0,
          objects: () => model.counts(),
          problems: () => runtime?.problems() ?? [],
        });
  const meshPush = new MeshPush({ model, log, ...(observer === undefined ? {} : { observer }) });
  push = meshPush;
  // RequestAuthentications' keys: fetched as the rules naming them come and go.
  const jwks = new JwksFetcher({
    model,
    onChange: () => meshPush.changed(),
    log,
    ...(options.jwks ?? {}),
  });
  const onChange = (): void => {
    jwks.sync();
    meshPush.changed();
  };
  const source = plan.source?.({ model, onChange, log }) ?? null;
  runtime = new MeshRuntime(model, meshPush, source, log, jwks);
  if (source === null) {
    meshPush.markSynced();
    return runtime;
  }
  const loading = source.start().then(() => {
    jwks.sync();
    meshPush.markSynced();
    log.info({ version: model.version, objects: model.counts() }, 'mesh loaded: accepting watches');
  });
  if (plan.waitForSource) {
    try {
      await loading;
    } catch (err) {
      meshPush.close();
      await source.stop().catch(() => undefined);
      throw err;
    }
  } else {
    loading.catch((err: unknown) => log.error({ err }, 'the mesh source failed to start'));
  }
  return runtime;
}

/**
 * The debug views of a runtime that may not exist yet (the admin port opens before the mesh is
 * built): 503 MESH_ERR_NOT_READY until it does.
 */
export function deferredMeshDebug(runtime: () => MeshDebug | null): MeshDebug {
  const current = (): MeshDebug => {
    const r = runtime();
    if (r === null) throw new MooringError('MESH_ERR_NOT_READY', 'the mesh is not loaded yet');
    return r;
  };
  return {
    syncz: async () => current().syncz(),
    configDump: async (podKey) => current().configDump(podKey),
    objects: async () => current().objects(),
  };
}
