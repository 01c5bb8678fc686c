// What one connected proxy is sent, and when: a snapshot first, then deltas that carry only what
// changed for it since the version it holds (its own scope, the settings, the Services it sees,
// the keys of those it no longer sees), and heartbeats. Lines are built from the canonical texts
// the model keeps, so that a change is serialized once for every proxy. A proxy that could not
// take a message (a slow reader) simply holds an older version: its next delta covers everything
// since, coalesced. A line is given as pieces (the services' texts as the model holds them), so
// that a snapshot of a large mesh is written piece by piece as the socket takes it, never copied
// whole. Pure: the push (src/server/mesh/push.ts) writes the lines.

import { MESH_API_VERSION } from '../api/mesh';
import { canonicalJson, utf8Length } from './canonical';
import type { MeshModel } from './model';
import { refKey, refOf } from './objects';

const ENVELOPE = `"apiVersion":${JSON.stringify(MESH_API_VERSION)}`;

export interface SyncLine {
  readonly type: 'snapshot' | 'delta' | 'heartbeat';
  readonly version: number;
  /** One NDJSON line, newline included, as pieces to write in order. */
  readonly pieces: readonly string[];
  /** Bytes of the line in UTF-8. */
  readonly bytes: number;
}

/** The line as one text (tests, small messages). */
export const lineText = (line: SyncLine): string => line.pieces.join('');

/** `head`, the services' texts separated by commas, `tail`: the pieces of one line. */
function piecesOf(
  head: string,
  services: readonly { readonly json: string; readonly bytes: number }[],
  tail: string,
): { pieces: string[]; bytes: number } {
  const pieces = [head];
  let bytes = utf8Length(head) + utf8Length(tail) + Math.max(0, services.length - 1);
  services.forEach((s, i) => {
    if (i > 0) pieces.push(',');
    pieces.push(s.json);
    bytes += s.bytes;
  });
  pieces.push(tail);
  return { pieces, bytes };
}

const single = (type: SyncLine['type'], version: number, text: string): SyncLine => ({
  type,
  version,
  pieces: [text],
  bytes: utf8Length(text),
});

export class ProxySync {
  /** The model version the proxy is up to date with (0 before the snapshot). */
  version = 0;
  /** The version of the last snapshot or delta it was sent. */
  sentVersion = 0;
  private scopeText: string | null = null;
  private settingsText: string | null = null;
  /** The Sidecar its Pod was under when last told (`Sidecar/ns/name`, or '' for none). */
  private sidecarKey = '';

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
    const sidecar = this.model.sidecarOfPod(this.podKey);
    this.sidecarKey = sidecar === undefined ? '' : refKey(refOf(sidecar));
    const { pieces, bytes } = piecesOf(
      `{${ENVELOPE},"proxy":${this.scopeText},"services":[`,
      this.model.visibleServices(this.namespace, sidecar),
      `],"settings":${this.settingsText},"type":"snapshot","version":${version}}\n`,
    );
    return { type: 'snapshot', version, pieces, bytes };
  }

  /**
   * The delta that brings the proxy to the model's version; null when it has nothing new.
   * `scopeMayHaveChanged` false (its Pod is not among a commit's pods) spares rebuilding its
   * scope, the costly part of a delta when a thousand proxies are told of one change.
   */
  delta(scopeMayHaveChanged = true): SyncLine | null {
    const version = this.model.version;
    if (version <= this.version) return null;
    const head: string[] = [];
    const scope = scopeMayHaveChanged ? this.model.proxyScope(this.podKey) : null;
    const scopeText = scope === null ? this.scopeText : canonicalJson(scope);
    if (scopeText !== null && scopeText !== this.scopeText) head.push(`"proxy":${scopeText}`);
    const sidecar = this.model.sidecarOfPod(this.podKey);
    const sidecarKey = sidecar === undefined ? '' : refKey(refOf(sidecar));
    const { services, removed } = this.model.changesSince(
      this.version,
      this.namespace,
      sidecar,
      sidecarKey !== this.sidecarKey,
    );
    this.sidecarKey = sidecarKey;
    if (removed.length > 0) head.push(`"removed":${JSON.stringify(removed)}`);
    const settingsText = this.model.settingsJson;
    if (settingsText !== this.settingsText) head.push(`"settings":${settingsText}`);
    // Up to date either way: what changed is nothing this proxy sees.
    this.version = version;
    if (head.length === 0 && services.length === 0) return null;
    this.sentVersion = version;
    this.scopeText = scopeText;
    this.settingsText = settingsText;
    const tail = `"type":"delta","version":${version}}\n`;
    const start = `{${ENVELOPE},${head.map((h) => `${h},`).join('')}`;
    if (services.length === 0) return single('delta', version, `${start}${tail}`);
    const { pieces, bytes } = piecesOf(`${start}"services":[`, services, `],${tail}`);
    return { type: 'delta', version, pieces, bytes };
  }

  heartbeat(): SyncLine {
    return single(
      'heartbeat',
      this.version,
      `{${ENVELOPE},"type":"heartbeat","version":${this.version}}\n`,
    );
  }
}
