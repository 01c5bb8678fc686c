// Reading raw objects field by field: every problem is collected with the path of its field
// (`spec.http[0].route[1].weight`) so that a report names exactly what is wrong. Shared by the
// validators of every kind the mesh reads (validate.ts, traffic-validate.ts). Pure.

import type { PortProtocol } from './objects';

export type Json = Record<string, unknown>;

export const isObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export const isPort = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;

export interface FieldProblem {
  /** Path of the field, e.g. `spec.ports[1].port`; `` for the object itself. */
  readonly field: string;
  readonly message: string;
}

/** Collects problems under a path. */
export class Fields {
  readonly problems: FieldProblem[] = [];
  readonly warnings: FieldProblem[] = [];

  problem(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  warn(field: string, message: string): void {
    this.warnings.push({ field, message });
  }

  /** An optional object; a value of another type is a problem. */
  object(value: unknown, field: string): Json | undefined {
    if (value === undefined || value === null) return undefined;
    if (!isObject(value)) {
      this.problem(field, 'must be an object');
      return undefined;
    }
    return value;
  }

  /** An optional array; a value of another type is a problem. */
  array(value: unknown, field: string): unknown[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) {
      this.problem(field, 'must be a list');
      return [];
    }
    return value;
  }

  string(value: unknown, field: string): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') {
      this.problem(field, 'must be a string');
      return undefined;
    }
    return value;
  }

  boolean(value: unknown, field: string): boolean | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') {
      this.problem(field, 'must be true or false');
      return undefined;
    }
    return value;
  }

  stringMap(value: unknown, field: string): Record<string, string> {
    const obj = this.object(value, field);
    const out: Record<string, string> = {};
    for (const [key, v] of Object.entries(obj ?? {})) {
      if (typeof v !== 'string') this.problem(`${field}.${key}`, 'must be a string');
      else out[key] = v;
    }
    return out;
  }

  /** An optional number within [min, max]; `integer` refuses fractions. */
  number(
    value: unknown,
    field: string,
    range: { readonly min?: number; readonly max?: number; readonly integer?: boolean } = {},
  ): number | undefined {
    if (value === undefined || value === null) return undefined;
    const { min = -Infinity, max = Infinity, integer = false } = range;
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      (integer && !Number.isInteger(value))
    ) {
      this.problem(field, `must be ${integer ? 'an integer' : 'a number'}`);
      return undefined;
    }
    if (value < min || value > max) {
      this.problem(
        field,
        max === Infinity
          ? `must be at least ${min}, not ${value}`
          : `must be from ${min} to ${max}, not ${value}`,
      );
      return undefined;
    }
    return value;
  }

  protocol(value: unknown, field: string): PortProtocol {
    if (value === undefined || value === null) return 'TCP';
    if (value === 'TCP' || value === 'UDP' || value === 'SCTP') return value;
    this.problem(field, `must be TCP, UDP or SCTP, not ${JSON.stringify(value)}`);
    return 'TCP';
  }
}
