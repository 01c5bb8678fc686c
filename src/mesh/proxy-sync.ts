// What one connected proxy is sent, and when: a snapshot first, then deltas that carry only what
// changed for it since the version it holds (its own scope, the settings, the Services it sees,
// the keys of those it no longer sees), and heartbeats. Lines are built from the canonical texts
// the model keeps, so that a change is serialized once for every proxy. A proxy that could not
// take a message (a slow reader) simply holds an older version: its next delta covers everything
// since, coalesced. Pure: the push (src/server/mesh/push.ts) writes the lines.

import { MESH_API_VERSION } from '../api/mesh';
import { canonicalJson } from './canonical';
import type { MeshModel } from './model';

const ENVELOPE = `"apiVersion":${JSON.stringify(MESH_API_VERSION)}`;

export interface SyncLine {
  readonly type: 'snapshot' | 'delta' | 'heartbeat';
  readonly version: number;
  /** One NDJSON line, newline included. */
  readonly line: string;
}

export class ProxySync {
  /** The model version the proxy is up to date with (0 before the snapshot). */
  version = 0;
  /** The version of the last snapshot or delta it was sent. */
  sentVersion = 0;
  private scopeText: string | null = null;
  private settingsText: string | null = null;

  constructor(
    private readonly model: MeshModel,
    /** `namespace/name` of the proxy's Pod. */
    readonly podKey: string,
    /** The namespace it runs in (what Services it sees). */
    readonly namespace: string,
  ) {}

  /** The scope as last sent, for the debug view. */
  get scope(): string | null {
    return this.scopeText;
  }

  /** The first message; null when the model has no such Pod. */
  snapshot(): SyncLine | null {
    const scope = this.model.proxyScope(this.podKey);
    if (scope === null) return null;
    const version = this.model.version;
    this.scopeText = canonicalJson(scope);
    this.settingsText = this.model.settingsJson;
    this.version = version;
    this.sentVersion = version;
    const services = this.model.visibleServices(this.namespace).map((b) => b.json);
    return {
      type: 'snapshot',
      version,
      line: `{${ENVELOPE},"proxy":${this.scopeText},"services":[${services.join(',')}],"settings":${this.settingsText},"type":"snapshot","version":${version}}\n`,
    };
  }

  /** The delta that brings the proxy to the model's version; null when it has nothing new. */
  delta(): SyncLine | null {
    const version = this.model.version;
    if (version <= this.version) return null;
    const parts: string[] = [];
    const scope = this.model.proxyScope(this.podKey);
    const scopeText = scope === null ? this.scopeText : canonicalJson(scope);
    if (scopeText !== null && scopeText !== this.scopeText) parts.push(`"proxy":${scopeText}`);
    const { services, removed } = this.model.changesSince(this.version, this.namespace);
    if (removed.length > 0) parts.push(`"removed":${JSON.stringify(removed)}`);
    if (services.length > 0) parts.push(`"services":[${services.map((b) => b.json).join(',')}]`);
    const settingsText = this.model.settingsJson;
    if (settingsText !== this.settingsText) parts.push(`"settings":${settingsText}`);
    // Up to date either way: what changed is nothing this proxy sees.
    this.version = version;
    if (parts.length === 0) return null;
    this.sentVersion = version;
    this.scopeText = scopeText;
    this.settingsText = settingsText;
    return {
      type: 'delta',
      version,
      line: `{${ENVELOPE},${parts.join(',')},"type":"delta","version":${version}}\n`,
    };
  }

  heartbeat(): SyncLine {
    return {
      type: 'heartbeat',
      version: this.version,
      line: `{${ENVELOPE},"type":"heartbeat","version":${this.version}}\n`,
    };
  }
}
