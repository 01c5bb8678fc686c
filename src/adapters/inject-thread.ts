// The script of an inject thread (src/adapters/inject-threads.ts): loads the injector with the
// configuration it is given, says it is ready, then answers each review it receives.

import { parentPort, workerData } from 'node:worker_threads';
import { answerReview, errorRecord } from '../admission/answer';
import type { Config } from '../config/types';
import { podInjector } from '../injector';
import type { ReviewMessage, ThreadMessage } from './inject-threads';

/** What serve hands each thread. */
export interface InjectThreadData {
  readonly config: Config;
  readonly version: string;
}

const port = parentPort;
if (port === null) throw new Error('inject-thread.js runs as a worker thread only');
const { config, version } = workerData as InjectThreadData;
const injectPod = podInjector(config, version);
const options = {
  failOpen: config.injector.failOpen,
  monotonicMs: () => performance.now(),
};

port.on('message', (message: ReviewMessage) => {
  let reply: ThreadMessage;
  try {
    reply = {
      type: 'answer',
      id: message.id,
      answer: answerReview(message.text, injectPod, options),
    };
  } catch (err) {
    reply = { type: 'failed', id: message.id, error: errorRecord(err) };
  }
  port.postMessage(reply);
});
const ready: ThreadMessage = { type: 'ready' };
port.postMessage(ready);
