// The core of `mooring inject`: YAML (multi-document) or JSON text in, YAML out, documents in
// their order. Injected documents are written anew; the others come out exactly as they went in
// (their source text, comments included). Pure: reading and writing files is src/cli/inject.ts's job.
//
// YAML 1.1, as kubectl reads manifests: `0644` is octal (a volume's defaultMode), `yes` is a
// boolean; timestamps stay strings. Output strings that a YAML 1.1 reader would take for something
// else ("yes", "0644", "on") are quoted.

import { parseAllDocuments, stringify, type Document } from 'yaml';
import { MooringError } from '../errors';
import { yamlErrorSummary } from '../json';
import type { InjectionSummary } from './inject';
import {
  injectWorkload,
  type WorkloadContext,
  type WorkloadReport,
  type WorkloadResult,
} from './workload';

const PARSE_OPTIONS = {
  version: '1.1',
  customTags: (tags: unknown[]) =>
    tags.filter((t) => (t as { tag?: string }).tag !== 'tag:yaml.org,2002:timestamp') as never,
} as const;
const STRINGIFY_OPTIONS = { version: '1.1', lineWidth: 0 } as const;

export interface DocumentResult {
  /** The parsed document. */
  readonly input: unknown;
  readonly result: WorkloadResult;
}

export interface ManifestsResult {
  readonly output: string;
  readonly documents: readonly DocumentResult[];
  /** Every Pod, workload and other object met, in order. */
  readonly reports: readonly WorkloadReport[];
}

interface ParsedDocument {
  readonly doc: Document.Parsed;
  readonly value: unknown;
}

/** The non-empty documents of `text`; INJ_ERR_INPUT for text that is not YAML. */
function parseDocuments(text: string): ParsedDocument[] {
  const docs = parseAllDocuments(text, PARSE_OPTIONS);
  if (!Array.isArray(docs)) return [];
  return docs
    .map((doc, index) => {
      const [error] = doc.errors;
      if (error !== undefined) {
        throw new MooringError(
          'INJ_ERR_INPUT',
          `document ${index + 1} is not valid YAML or JSON: ${yamlErrorSummary(error)}`,
        );
      }
      return { doc, value: doc.toJS({ maxAliasCount: 1000 }) as unknown };
    })
    .filter(({ value }) => value !== null && value !== undefined);
}

/** The documents of `text` as plain values, read as injectManifests reads them. */
export function parseManifests(text: string): unknown[] {
  return parseDocuments(text).map(({ value }) => value);
}

function injectedDescription(summary: InjectionSummary): string {
  const { settings, rewrittenProbes } = summary;
  const mode = settings.nativeSidecar
    ? 'native sidecar (init container, restartPolicy: Always)'
    : 'classic sidecar (regular container)';
  const hold = settings.holdApplication
    ? 'app containers wait for the proxy'
    : 'app containers do not wait for the proxy';
  const probes = !settings.rewriteProbes
    ? 'probes not rewritten (rewrite-probes "false")'
    : rewrittenProbes.length === 0
      ? 'no HTTP/TCP/gRPC probe to rewrite'
      : `probes via the agent: ${rewrittenProbes.join(', ')}`;
  return `${mode}, ${hold}, ${probes}`;
}

/**
 * What happened to each Pod or workload, one line each, then its warnings: what `mooring inject`
 * prints on stderr (and the golden files show as comments).
 */
export function describeReport(report: WorkloadReport): string[] {
  const what = `${report.kind} ${report.namespace}/${report.name}`;
  const { outcome } = report;
  const warnings = [...report.warnings, ...('warnings' in outcome ? outcome.warnings : [])].map(
    (w) => `warning: ${what}: ${w}`,
  );
  switch (outcome.action) {
    case 'injected':
      return [`injected ${what}: ${injectedDescription(outcome.summary)}`, ...warnings];
    case 'skipped':
      return [`skipped ${what}: ${outcome.reason}: ${outcome.message}`, ...warnings];
    default:
      // Kinds without a Pod template pass through silently.
      return warnings;
  }
}

/**
 * A document exactly as it came in: its source text without its `---` and `...` markers (the
 * output puts `---` between documents). The first document keeps the comments above it.
 */
function sourceOf(doc: Document.Parsed, text: string, first: boolean): string {
  const [start, , end] = doc.range;
  const prologue = first
    ? text
        .slice(0, start)
        .split('\n')
        .filter((line) => line.startsWith('#'))
        .map((line) => `${line}\n`)
        .join('')
    : '';
  let body = text.slice(start, end);
  body = body.replace(/^---[ \t]*(\r?\n)?/, '').replace(/(^|\n)\.\.\.[ \t]*(\r?\n)?$/, '$1');
  return `${prologue}${body}${body.endsWith('\n') ? '' : '\n'}`;
}

/**
 * Injects every Pod and Pod template of the documents in `text`. Throws INJ_ERR_INPUT for text
 * that is not YAML, and the errors of injectWorkload (naming the object).
 */
export function injectManifests(text: string, ctx: WorkloadContext): ManifestsResult {
  const parts: string[] = [];
  const documents: DocumentResult[] = [];
  const reports: WorkloadReport[] = [];
  parseDocuments(text).forEach(({ doc, value: input }, index) => {
    const result = injectWorkload(input, ctx);
    documents.push({ input, result });
    reports.push(...result.reports);
    parts.push(
      result.changed
        ? stringify(result.object, STRINGIFY_OPTIONS)
        : sourceOf(doc, text, index === 0),
    );
  });
  return { output: parts.join('---\n'), documents, reports };
}
