import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CATALOG, MooringError, type ErrorCode } from '../../src/errors';

const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
const codes = Object.keys(ERROR_CATALOG) as ErrorCode[];

/** Rows of the README's error table: | `CODE` | status | meaning |. */
function documentedCodes(): Map<string, number> {
  const rows = new Map<string, number>();
  for (const m of readme.matchAll(/^\| `([A-Z]+_ERR_[A-Z_]+)` *\| *(\d{3}) *\|/gm)) {
    rows.set(m[1] ?? '', Number(m[2]));
  }
  return rows;
}

describe('the error catalog', () => {
  it('documents every code in the README with its HTTP status', () => {
    const documented = documentedCodes();
    for (const code of codes) {
      expect({ code, status: documented.get(code) }).toEqual({
        code,
        status: ERROR_CATALOG[code].status,
      });
    }
  });

  it('documents no code that does not exist', () => {
    const unknown = [...documentedCodes().keys()].filter((c) => !(c in ERROR_CATALOG));
    expect(unknown).toEqual([]);
  });

  it('names every code with an area prefix in SCREAMING_SNAKE case', () => {
    for (const code of codes)
      expect(code).toMatch(/^(CFG|INJ|ADM|CA|IPT|MESH|SRV|HTTP|AGT|UI)_ERR_[A-Z_]+$/);
  });

  it('shows a client the detail of a 4xx and only the summary of a 5xx', () => {
    const badInput = new MooringError(
      'CA_ERR_TTL',
      'ttlSeconds 900000 is above the maximum 604800',
    );
    expect(badInput.toJSON()).toEqual({
      code: 'CA_ERR_TTL',
      message: 'ttlSeconds 900000 is above the maximum 604800',
    });
    const internal = new MooringError('CA_ERR_STORE', 'EACCES: /var/lib/mooring/ca-state.json');
    expect(internal.status).toBe(500);
    expect(JSON.stringify(internal.toJSON())).not.toContain('/var/lib/mooring');
  });

  it('adds to the summary of a 5xx the public detail it was given, never the message', () => {
    const refused = new MooringError(
      'CA_ERR_NOT_READY',
      '/var/lib/mooring/tokens.json holds secrets but its mode is 0644: run chmod 600 ...',
      { publicDetail: "every workload token is refused: the server's tokens.json is unsafe" },
    );
    expect(refused.toJSON()).toEqual({
      code: 'CA_ERR_NOT_READY',
      message:
        "the certificate authority is not ready: every workload token is refused: the server's tokens.json is unsafe",
    });
  });
});
