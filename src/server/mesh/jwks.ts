// The keys of RequestAuthentication's JWT rules, fetched by the server as istiod does: from a
// rule's `jwksUri`, or from its issuer's OpenID configuration (`<issuer>/.well-known/
// openid-configuration`, its `jwks_uri`), then pushed inline to the proxies that need them. A
// source is fetched when a rule first names it, again every `refreshMs` (Istio's 20 minutes),
// and every `retryMs` while it fails. A failure keeps the keys fetched before; with none, the
// proxies get none and refuse every token of that issuer (fail closed, as Istio's stand-in key).

import type { MeshModel } from '../../mesh';
import { jwksProblem } from '../../mesh/request-authentication-validate';

export interface JwksLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface JwksFetcherOptions {
  readonly model: MeshModel;
  /** The model changed (keys arrived): push. */
  readonly onChange: () => void;
  readonly log: JwksLogger;
  readonly refreshMs?: number;
  readonly retryMs?: number;
  /** Each request's timeout, where a rule gives none. */
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
}

/** The largest JWKS (or OpenID configuration) read. */
const MAX_BYTES = 1 << 20;
export const JWKS_REFRESH_MS = 20 * 60_000;
export const JWKS_RETRY_MS = 60_000;
export const JWKS_TIMEOUT_MS = 5_000;

export class JwksFetcher {
  private readonly timers = new Map<string, NodeJS.Timeout | null>();
  private readonly timeouts = new Map<string, number | null>();
  private closed = false;

  constructor(private readonly options: JwksFetcherOptions) {}

  /** Starts fetching the sources the model's rules name now, and forgets the others. */
  sync(): void {
    if (this.closed) return;
    const wanted = this.options.model.jwksSources();
    for (const [source, timer] of this.timers) {
      if (wanted.has(source)) continue;
      if (timer !== null) clearTimeout(timer);
      this.timers.delete(source);
    }
    for (const [source, timeoutMs] of wanted) {
      this.timeouts.set(source, timeoutMs);
      if (this.timers.has(source)) continue;
      this.timers.set(source, null);
      void this.refresh(source);
    }
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers.values()) if (timer !== null) clearTimeout(timer);
    this.timers.clear();
  }

  private async refresh(source: string): Promise<void> {
    const { model, log } = this.options;
    let ok = false;
    try {
      const text = await this.keysOf(source);
      const problem = jwksProblem(text);
      if (problem !== null) throw new Error(`the JWKS ${problem}`);
      if (!this.timers.has(source)) return;
      model.setJwks(source, text);
      ok = true;
      log.info({ source }, 'JWKS fetched');
    } catch (err) {
      if (!this.timers.has(source)) return;
      const had = model.hasJwks(source);
      if (!had) model.setJwks(source, null);
      log.warn(
        { source, err: (err as Error).message, keeping: had },
        had
          ? 'JWKS fetch failed: the keys fetched before are kept'
          : 'JWKS fetch failed: tokens of its issuer are refused until it succeeds',
      );
    }
    if (model.dirty()) this.options.onChange();
    if (this.closed || !this.timers.has(source)) return;
    const delay = ok
      ? (this.options.refreshMs ?? JWKS_REFRESH_MS)
      : (this.options.retryMs ?? JWKS_RETRY_MS);
    const timer = setTimeout(() => void this.refresh(source), delay);
    timer.unref();
    this.timers.set(source, timer);
  }

  /** The JWKS text of a source: its URI's, or the issuer's OpenID configuration's `jwks_uri`. */
  private async keysOf(source: string): Promise<string> {
    const timeoutMs = this.timeouts.get(source) ?? this.options.timeoutMs ?? JWKS_TIMEOUT_MS;
    if (!source.startsWith('openid:')) return this.get(source, timeoutMs);
    const issuer = source.slice('openid:'.length).replace(/\/+$/, '');
    const config = await this.get(`${issuer}/.well-known/openid-configuration`, timeoutMs);
    let uri: unknown;
    try {
      uri = (JSON.parse(config) as { jwks_uri?: unknown }).jwks_uri;
    } catch {
      throw new Error(`${issuer}'s OpenID configuration is not JSON`);
    }
    if (typeof uri !== 'string' || uri === '') {
      throw new Error(`${issuer}'s OpenID configuration has no jwks_uri`);
    }
    return this.get(uri, timeoutMs);
  }

  private async get(url: string, timeoutMs: number): Promise<string> {
    const res = await (this.options.fetch ?? fetch)(url, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: { accept: 'application/json' },
      redirect: 'follow',
    });
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
    // A body announced too large is not read at all.
    if (Number(res.headers.get('content-length') ?? 0) > MAX_BYTES) {
      await res.body?.cancel();
      throw new Error(`GET ${url}: more than ${MAX_BYTES} bytes`);
    }
    const text = await res.text();
    if (text.length > MAX_BYTES) throw new Error(`GET ${url}: more than ${MAX_BYTES} bytes`);
    return text;
  }
}
