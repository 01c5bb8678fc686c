// Files generated from the chart and from the server's schema must be fresh. REFRESH_GOLDEN=1
// (`make webhook-config`) writes them again.
import { readFileSync } from 'node:fs';
import { VALUES_SCHEMA_FILE, valuesSchemaText, writeValuesSchema } from './config-values';
import {
  MAIN_FILE,
  readWebhookConfigDir,
  renderWebhookConfig,
  VALIDATING_FILE,
  WEBHOOK_FILE,
  writeWebhookConfig,
} from './render-webhook-config';

const refresh = process.env.REFRESH_GOLDEN === '1';
const STALE = 'stale: run `make webhook-config` and commit the result';

describe('generated files', () => {
  beforeAll(async () => {
    if (refresh) {
      writeValuesSchema();
      await writeWebhookConfig();
    }
  }, 60_000);

  it('webhook-config/ holds exactly the manifests rendered from the chart', async () => {
    const want = await renderWebhookConfig();
    const have = readWebhookConfigDir();
    expect({ files: [...have.keys()], note: STALE }).toEqual({
      files: [MAIN_FILE, WEBHOOK_FILE, VALIDATING_FILE],
      note: STALE,
    });
    for (const [name, text] of want) {
      expect({ file: name, text: have.get(name), note: STALE }).toEqual({
        file: name,
        text,
        note: STALE,
      });
    }
  }, 60_000);

  it('the config part of values.schema.json is derived from the server schema', () => {
    const want = valuesSchemaText();
    expect({ text: readFileSync(VALUES_SCHEMA_FILE, 'utf8'), note: STALE }).toEqual({
      text: want,
      note: STALE,
    });
  });
});
